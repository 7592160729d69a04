-- The batch's rows besides its processes, in one statement: the instance
-- relations and the audit rows (data-modifying CTEs, which always run to
-- completion), then the request log. Only the request log can conflict:
-- a live row for the same request_id means another worker answered it
-- first, and the unique violation aborts the transaction, so the batch is
-- decided again, this time meeting the stored reply.
-- $1-$3: request ids, meaning hashes, replies (the published bytes), one
-- element per request; $4-$8: one instance relation per process (the
-- service instance's host, no process template); $9-$13: one audit row
-- per request (service instance, business, supplier, operator, detail as
-- JSON text), whose request ids are $1; $14: the lane each request came
-- through, for the request log.
WITH relations AS (
    INSERT INTO process_instance_relation (
        bk_process_id, service_instance_id, process_template_id, bk_host_id, bk_biz_id, bk_supplier_account)
    SELECT id, si, 0, host, biz, supplier
    FROM UNNEST($4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::text[]) AS t(id, si, host, biz, supplier)
), audit AS (
    INSERT INTO audit_log (
        request_id, resource_type, action, resource_id, bk_biz_id, bk_supplier_account, operator, detail)
    SELECT r, 'service_instance', 'update', si, biz, supplier, operator, detail::json
    FROM UNNEST($1::text[], $9::int8[], $10::int8[], $11::text[], $12::text[], $13::text[])
        AS t(r, si, biz, supplier, operator, detail)
)
INSERT INTO request_log (request_id, meaning, reply, lane)
SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bytea[], $14::text[])
