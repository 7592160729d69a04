-- Inserts or updates service instances from parallel arrays. A later line
-- for the same id wins (DISTINCT ON keeps the last by ordinality).
INSERT INTO service_instance AS s
    (id, bk_biz_id, bk_supplier_account, name, service_template_id, bk_host_id)
SELECT DISTINCT ON (id) id, biz, supplier, name, template, host
FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[])
    WITH ORDINALITY AS t(id, biz, supplier, name, template, host, n)
ORDER BY id, n DESC
ON CONFLICT (id) DO UPDATE SET
    bk_biz_id = EXCLUDED.bk_biz_id,
    bk_supplier_account = EXCLUDED.bk_supplier_account,
    name = EXCLUDED.name,
    service_template_id = EXCLUDED.service_template_id,
    bk_host_id = EXCLUDED.bk_host_id,
    last_time = now()
