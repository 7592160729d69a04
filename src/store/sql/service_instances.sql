-- The service instances the batch's requests name. $1: ids.
SELECT id, bk_biz_id, bk_supplier_account, service_template_id, bk_host_id
FROM service_instance
WHERE id = ANY($1::int8[])
