-- Existing processes that collide with a candidate of the batch, by name or
-- by (func name, start param regex) within the same service instance. Both
-- joins are served by the unique indexes, so the cost follows the batch,
-- not the size of the service instance.
-- $1: service instance ids, $2: names, $3: func names, $4: regexes (parallel arrays).
WITH c AS (
    SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[])
        AS c(service_instance_id, name, func_name, regex)
)
SELECT p.service_instance_id, p.bk_process_name, p.bk_func_name, p.bk_start_param_regex
FROM process p JOIN c
  ON p.service_instance_id = c.service_instance_id AND p.bk_process_name = c.name
UNION
SELECT p.service_instance_id, p.bk_process_name, p.bk_func_name, p.bk_start_param_regex
FROM process p JOIN c
  ON p.service_instance_id = c.service_instance_id
 AND p.bk_func_name = c.func_name AND p.bk_start_param_regex = c.regex
