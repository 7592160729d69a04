//! Hot pure code of the worker: reading a request and building its reply.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use procinst::domain::{decode, reply};
use serde_json::json;

/// A 4-process request with bind_info, about 1.9 KB, like a typical backfill line.
fn body() -> Vec<u8> {
    let processes: Vec<_> = (0..4)
        .map(|i| {
            json!({"process_info": {
                "bk_process_name": format!("gamesvr_{i}"), "bk_func_name": "gamesvr",
                "bk_start_param_regex": format!("--zone={i}"), "description": "game server",
                "user": "app", "work_path": "/data/app/gamesvr", "pid_file": "/data/app/gamesvr/run.pid",
                "start_cmd": "./start.sh", "stop_cmd": "./stop.sh", "restart_cmd": "./restart.sh",
                "reload_cmd": "./reload.sh", "face_stop_cmd": "kill -9 $(cat run.pid)",
                "proc_num": 1, "priority": 10, "timeout": 30, "bk_start_check_secs": 5,
                "auto_start": true,
                "bind_info": [
                    {"enable": true, "ip": "10.0.0.1", "port": format!("{}", 8000 + i), "protocol": "1", "row_id": 1},
                    {"enable": false, "ip": "::1", "port": "9000-9010", "protocol": "2", "template_row_id": 2}
                ]
            }})
        })
        .collect();
    let request = json!({
        "request_id": "bench-0001", "bk_app_code": "esb_test", "bk_app_secret": "xxx",
        "bk_username": "admin", "bk_token": "xxx", "bk_biz_id": 2, "bk_supplier_account": "0",
        "service_instance_id": 48, "processes": processes,
    });
    serde_json::to_vec(&request).unwrap_or_default()
}

fn decode_and_validate(c: &mut Criterion) {
    let body = body();
    c.bench_function(
        &format!("decode+validate 4 processes ({} B)", body.len()),
        |b| {
            b.iter(|| {
                let decoded = decode(black_box(&body), None, 1 << 20).ok()?;
                decoded.validate().ok()
            })
        },
    );
}

fn reply_success(c: &mut Criterion) {
    let ids = [64_i64, 65, 66, 67];
    c.bench_function("reply::success 4 ids", |b| {
        b.iter(|| reply::success(black_box("bench-0001"), black_box(&ids)))
    });
}

criterion_group!(benches, decode_and_validate, reply_success);
criterion_main!(benches);
