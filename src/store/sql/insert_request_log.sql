-- Claims the batch's request_ids. A live row for the same id means another
-- worker answered it first: the unique violation aborts the transaction and
-- the batch is decided again, this time meeting the stored reply.
-- $1: request ids, $2: meaning hashes, $3: replies (the published bytes).
INSERT INTO request_log (request_id, meaning, reply)
SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bytea[])
