-- The processes with the given ids and their instance relations, for
-- `procinst request show`. A primary-key probe per id.
-- $1: process ids.
SELECT p.bk_process_id, p.bk_process_name, p.bk_func_name, p.service_instance_id,
       p.bk_biz_id, p.bk_created_by,
       to_char(p.create_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created,
       r.bk_host_id, r.process_template_id
FROM process p
LEFT JOIN process_instance_relation r ON r.bk_process_id = p.bk_process_id
WHERE p.bk_process_id = ANY($1::int8[])
ORDER BY p.bk_process_id
