-- Stored replies of the batch's request_ids that are still within retention.
-- $1: request ids, $2: retention in seconds.
SELECT request_id, meaning, reply
FROM request_log
WHERE request_id = ANY($1::text[])
  AND created_at > now() - make_interval(secs => $2::float8)
