//! procinst: BlueKing CMDB `create_process_instance` as a RabbitMQ worker.

pub mod domain;
