-- Inserts the batch's processes and their instance relations in one
-- statement. Ids were allocated beforehand from process_id_seq, so the
-- replies could be built (and stored) in the same transaction.
-- Parallel arrays, one element per process.
WITH input AS (
    SELECT * FROM UNNEST(
        $1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
        $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
        $16::text[], $17::text[], $18::int4[], $19::int4[], $20::int4[],
        $21::int4[], $22::bool[], $23::jsonb[], $24::text[]
    ) AS t(id, biz, supplier, si, host,
           name, func, regex, description, usr,
           work_path, pid_file, start_cmd, stop_cmd, restart_cmd,
           reload_cmd, face_stop_cmd, proc_num, priority, timeout,
           start_check_secs, auto_start, bind_info, created_by)
), inserted AS (
    INSERT INTO process (
        bk_process_id, bk_biz_id, bk_supplier_account, service_instance_id,
        bk_process_name, bk_func_name, bk_start_param_regex, description, "user",
        work_path, pid_file, start_cmd, stop_cmd, restart_cmd,
        reload_cmd, face_stop_cmd, proc_num, priority, timeout,
        bk_start_check_secs, auto_start, bind_info, bk_created_by)
    SELECT id, biz, supplier, si,
           name, func, regex, description, usr,
           work_path, pid_file, start_cmd, stop_cmd, restart_cmd,
           reload_cmd, face_stop_cmd, proc_num, priority, timeout,
           start_check_secs, auto_start, bind_info, created_by
    FROM input
)
INSERT INTO process_instance_relation (
    bk_process_id, service_instance_id, process_template_id, bk_host_id, bk_biz_id, bk_supplier_account)
SELECT id, si, 0, host, biz, supplier FROM input
