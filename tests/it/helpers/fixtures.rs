//! What tests send and load: requests built from the contract's example or
//! from a few numbers, and service instances written straight to the
//! database.

use serde_json::Value;

use super::env::Env;

/// The seed's request example, verbatim, with a request_id.
pub fn seed_request(request_id: &str) -> Value {
    let mut v: Value =
        serde_json::from_str(include_str!("../seed_request.json")).expect("seed json");
    v["request_id"] = Value::from(request_id);
    v
}

/// A small valid request with `n` processes named `{prefix}-{i}`.
pub fn request(request_id: &str, si: i64, biz: i64, prefix: &str, n: usize) -> Value {
    let processes: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({"process_info": {
                "bk_process_name": format!("{prefix}-{i}"),
                "bk_func_name": format!("{prefix}-func-{i}"),
                "proc_num": 1,
                "bind_info": [{"enable": true, "ip": "127.0.0.1", "port": "8080", "protocol": "1", "template_row_id": 1}]
            }})
        })
        .collect();
    serde_json::json!({
        "request_id": request_id, "bk_biz_id": biz, "service_instance_id": si,
        "bk_username": "admin", "processes": processes
    })
}

impl Env {
    /// Loads service instances directly (the import command has its own test).
    pub async fn service_instance(
        &self,
        id: i64,
        biz: i64,
        supplier: &str,
        template: i64,
        host: i64,
    ) {
        self.db()
            .await
            .execute(
                "INSERT INTO service_instance (id, bk_biz_id, bk_supplier_account, name, service_template_id, bk_host_id) \
                 VALUES ($1, $2, $3, 'si', $4, $5)",
                &[&id, &biz, &supplier, &template, &host],
            )
            .await
            .expect("insert service instance");
    }
}
