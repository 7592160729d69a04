-- Fewer index entries per request. Every index entry of an inserted row is
-- one more WAL record and one more index page to dirty. Measured with
-- `procinst loadtest` (its "PostgreSQL per request" line): a 4-process
-- request wrote 10 rows, 24 index entries and 5.5 KB of WAL before this
-- migration.

-- No query reads relations by service instance: `request show` and every
-- procinst statement reach a relation through its process id (the primary
-- key). 4 entries per 4-process request.
DROP INDEX IF EXISTS process_instance_relation_si;

-- Pruning is the only reader of request_log by age, and rows arrive in
-- created_at order, which is what BRIN summarises: one tiny index that is
-- updated once per 128 pages instead of one B-tree entry per request.
DROP INDEX IF EXISTS request_log_created_at;
CREATE INDEX request_log_created_at_brin ON request_log USING brin (created_at);

-- The audit detail is compressed (lz4) only when a row exceeds the default
-- 2 kB target; a request of one or two processes stays below it. A lower
-- target compresses those too.
ALTER TABLE audit_log SET (toast_tuple_target = 256);
