-- Removes the batch's request_ids whose rows are past retention (not yet
-- pruned), so that such a request is processed anew. $1: request ids,
-- $2: retention in seconds.
DELETE FROM request_log
WHERE request_id = ANY($1::text[])
  AND created_at <= now() - make_interval(secs => $2::float8)
