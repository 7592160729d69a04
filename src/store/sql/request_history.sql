-- What procinst stored of one request: its request_log row (reply bytes,
-- when written, when it leaves retention, the lane it came through) and, for the process ids its
-- reply names, the process rows with their relation rows. Timestamps are
-- formatted here as RFC 3339 UTC, so the caller needs no time types.
-- $1: request id, $2: retention in seconds.
SELECT reply,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS written,
       to_char((created_at + make_interval(secs => $2::float8)) AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS expires,
       created_at + make_interval(secs => $2::float8) <= now() AS expired,
       lane
FROM request_log
WHERE request_id = $1
