-- Stored replies of the batch's request_ids, each with whether it is past
-- retention (then it only waits for pruning: the request is processed anew,
-- and its write first deletes the old row). A primary-key probe per id.
-- $1: request ids, $2: retention in seconds.
SELECT request_id, meaning, reply,
       created_at <= now() - make_interval(secs => $2::float8) AS expired
FROM request_log
WHERE request_id = ANY($1::text[])
