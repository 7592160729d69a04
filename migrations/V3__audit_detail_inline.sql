-- Audit details compressed in the row, not moved out of it. Migration 2's
-- toast_tuple_target of 256 bytes did compress small details, but a row
-- still above 256 bytes after compression (a 4-process detail is 2.3 kB,
-- 0.6 kB compressed) was then moved out of line: one more heap row and
-- one more index entry in audit_log's TOAST table per request, and their
-- WAL. With the default target (about 2 kB) a detail above it is
-- compressed and stays in the row; a smaller one is stored as it is.
ALTER TABLE audit_log RESET (toast_tuple_target);
