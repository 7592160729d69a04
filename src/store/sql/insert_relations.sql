-- One instance relation per process of the batch: the host is the service
-- instance's, and no process template (processes created one by one).
-- Parallel arrays, one element per process.
INSERT INTO process_instance_relation (
    bk_process_id, service_instance_id, process_template_id, bk_host_id, bk_biz_id, bk_supplier_account)
SELECT id, si, 0, host, biz, supplier
FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::text[]) AS t(id, si, host, biz, supplier)
