-- The batch's processes, as a binary COPY stream written by
-- `write::process_rows` in this column order. Ids were allocated beforehand
-- from process_id_seq, so the replies could be built (and stored) in the
-- same transaction; create_time and last_time take their defaults.
COPY process (
    bk_process_id, bk_biz_id, bk_supplier_account, service_instance_id,
    bk_process_name, bk_func_name, bk_start_param_regex, description, "user",
    work_path, pid_file, start_cmd, stop_cmd, restart_cmd,
    reload_cmd, face_stop_cmd, proc_num, priority, timeout,
    bk_start_check_secs, auto_start, bind_info, bk_created_by)
FROM STDIN (FORMAT binary)
