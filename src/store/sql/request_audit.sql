-- The audit rows one request wrote. Found through the (resource_type,
-- resource_id) index by the service instances its processes belong to,
-- then filtered by request_id, so no index on request_id is kept for a
-- command an operator runs now and then.
-- $1: request id, $2: service instance ids.
SELECT id, action, resource_type, resource_id, operator,
       to_char(operation_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at
FROM audit_log
WHERE resource_type = 'service_instance'
  AND resource_id = ANY($2::int8[])
  AND request_id = $1
ORDER BY id
