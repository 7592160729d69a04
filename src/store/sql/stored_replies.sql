-- Stored replies of the batch's request_ids that are still within retention.
-- The retention test is on an expression (`+ interval '0'`) so that the
-- planner probes the primary key for the ids instead of walking the
-- created_at index, which holds every live row (4 ms against 0.3 ms for
-- 150 ids at 10,000 rows, and growing with the table).
-- $1: request ids, $2: retention in seconds.
SELECT request_id, meaning, reply
FROM request_log
WHERE request_id = ANY($1::text[])
  AND created_at + interval '0' > now() - make_interval(secs => $2::float8)
