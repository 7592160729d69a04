-- Claims the batch's request_ids. A live row for the same id means another
-- worker answered it first: no row comes back for it, and the caller rolls
-- the transaction back. An expired row (past retention, not yet pruned) is
-- taken over, so that the request is processed anew.
-- $1: request ids, $2: meaning hashes, $3: replies, $4: retention in seconds.
INSERT INTO request_log (request_id, meaning, reply)
SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bytea[])
ON CONFLICT (request_id) DO UPDATE
    SET meaning = EXCLUDED.meaning, reply = EXCLUDED.reply, created_at = now()
    WHERE request_log.created_at <= now() - make_interval(secs => $4::float8)
RETURNING request_id
