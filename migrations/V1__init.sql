-- procinst schema: service instances (owned by CMDB, loaded by
-- `procinst service-instance import`), the processes this worker creates,
-- their instance relations, an audit trail, and the idempotency log.

CREATE TABLE service_instance (
    id                  bigint PRIMARY KEY CHECK (id > 0),
    bk_biz_id           bigint NOT NULL CHECK (bk_biz_id > 0),
    bk_supplier_account text   NOT NULL DEFAULT '0',
    name                text   NOT NULL DEFAULT '',
    service_template_id bigint NOT NULL DEFAULT 0,
    bk_host_id          bigint NOT NULL DEFAULT 0,
    create_time         timestamptz NOT NULL DEFAULT now(),
    last_time           timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE process_id_seq AS bigint;

CREATE TABLE process (
    bk_process_id        bigint PRIMARY KEY DEFAULT nextval('process_id_seq'),
    bk_biz_id            bigint NOT NULL,
    bk_supplier_account  text   NOT NULL,
    service_instance_id  bigint NOT NULL,
    bk_process_name      text   NOT NULL,
    bk_func_name         text   NOT NULL,
    bk_start_param_regex text   NOT NULL DEFAULT '',
    description          text   NOT NULL DEFAULT '',
    "user"               text   NOT NULL DEFAULT '',
    work_path            text   NOT NULL DEFAULT '',
    pid_file             text   NOT NULL DEFAULT '',
    start_cmd            text   NOT NULL DEFAULT '',
    stop_cmd             text   NOT NULL DEFAULT '',
    restart_cmd          text   NOT NULL DEFAULT '',
    reload_cmd           text   NOT NULL DEFAULT '',
    face_stop_cmd        text   NOT NULL DEFAULT '',
    proc_num             integer,
    priority             integer,
    timeout              integer,
    bk_start_check_secs  integer,
    auto_start           boolean NOT NULL DEFAULT false,
    bind_info            jsonb,
    bk_created_by        text   NOT NULL DEFAULT '',
    create_time          timestamptz NOT NULL DEFAULT now(),
    last_time            timestamptz NOT NULL DEFAULT now(),
    -- bk-cmdb's uniqueness rules, enforced here so that concurrent workers
    -- cannot race past the check made in code.
    CONSTRAINT process_name_unique UNIQUE (service_instance_id, bk_process_name),
    CONSTRAINT process_func_unique UNIQUE (service_instance_id, bk_func_name, bk_start_param_regex)
);
ALTER SEQUENCE process_id_seq OWNED BY process.bk_process_id;

-- No foreign key to process: both rows are written by one statement, so
-- a per-row referential check on the batch path would guard nothing.
CREATE TABLE process_instance_relation (
    bk_process_id        bigint PRIMARY KEY,
    service_instance_id  bigint NOT NULL,
    process_template_id  bigint NOT NULL DEFAULT 0,
    bk_host_id           bigint NOT NULL,
    bk_biz_id            bigint NOT NULL,
    bk_supplier_account  text   NOT NULL
);
CREATE INDEX process_instance_relation_si ON process_instance_relation (service_instance_id);

CREATE TABLE audit_log (
    id                  bigserial PRIMARY KEY,
    request_id          text   NOT NULL,
    resource_type       text   NOT NULL,
    action              text   NOT NULL,
    resource_id         bigint NOT NULL,
    bk_biz_id           bigint NOT NULL,
    bk_supplier_account text   NOT NULL,
    operator            text   NOT NULL,
    -- json, not jsonb: written once per request and rarely read, so it is
    -- kept as text (lz4-compressed when large) rather than parsed to binary.
    detail              json   COMPRESSION lz4 NOT NULL,
    operation_time      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_resource ON audit_log (resource_type, resource_id);

-- One row per successful request: the idempotency key, a hash of what the
-- request meant, and the reply exactly as published (bytea, not jsonb, so
-- a re-sent reply is byte for byte the first one).
CREATE TABLE request_log (
    request_id  text PRIMARY KEY,
    meaning     bytea NOT NULL,
    reply       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX request_log_created_at ON request_log (created_at);
