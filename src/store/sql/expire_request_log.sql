-- Removes the rows past retention (not yet pruned) of request_ids the
-- batch processes anew, so that their new rows can be written. Only sent
-- when the lookup found such a row; the retention test keeps a row that
-- another worker wrote meanwhile. $1: request ids, $2: retention in seconds.
DELETE FROM request_log
WHERE request_id = ANY($1::text[])
  AND created_at <= now() - make_interval(secs => $2::float8)
