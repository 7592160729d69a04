-- One audit row per request: the service instance was updated with the
-- created processes. Parallel arrays, one element per request; the detail
-- comes as JSON text.
INSERT INTO audit_log (
    request_id, resource_type, action, resource_id, bk_biz_id, bk_supplier_account, operator, detail)
SELECT r, 'service_instance', 'update', si, biz, supplier, operator, detail::json
FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[])
    AS t(r, si, biz, supplier, operator, detail)
