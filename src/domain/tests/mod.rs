//! Unit tests of the domain, one file per concern, one test per rule.

#![allow(clippy::unwrap_used)]

mod bind_info;
mod decoding;
mod meaning;
mod oracle;
mod process;
mod props;
mod reply;
mod top_level;
mod uniqueness;

use serde_json::{Value, json};

use super::{BindInfo, Code, Process, Rejection, Request, decode};

/// The request example of the seed API doc, verbatim.
const SEED: &str = r#"{
  "bk_app_code": "esb_test",
  "bk_app_secret": "xxx",
  "bk_username": "xxx",
  "bk_token": "xxx",
  "bk_biz_id": 1,
  "service_instance_id": 48,
  "processes": [
    {
      "process_info": {
        "bk_supplier_account": "0",
        "description": "",
        "start_cmd": "",
        "restart_cmd": "",
        "pid_file": "",
        "auto_start": false,
        "timeout": 30,
        "reload_cmd": "",
        "bk_func_name": "java",
        "work_path": "/data/bkee",
        "stop_cmd": "",
        "face_stop_cmd": "",
        "bk_process_name": "job_java",
        "user": "",
        "proc_num": 1,
        "priority": 1,
        "bk_biz_id": 2,
        "bk_start_param_regex": "",
        "bk_process_id": 1,
        "bind_info": [
          {
              "enable": false,
              "ip": "127.0.0.1",
              "port": "80",
              "protocol": "1",
              "template_row_id": 1234
          }
        ]
      }
    }
  ]
}"#;

const LIMIT: usize = 1 << 20;

/// A minimal valid request around the given process_info objects.
fn request_with(infos: &[Value]) -> Value {
    let processes: Vec<Value> = infos.iter().map(|i| json!({"process_info": i})).collect();
    json!({"request_id": "r-1", "bk_biz_id": 1, "service_instance_id": 48, "processes": processes})
}

fn info(name: &str, func: &str) -> Value {
    json!({"bk_process_name": name, "bk_func_name": func})
}

/// Decodes and validates a JSON value; panics if it is unreadable.
fn validate(request: &Value) -> Result<Request, Rejection> {
    let body = serde_json::to_vec(request).unwrap();
    decode(&body, None, LIMIT).unwrap().validate()
}

/// The top-level rejection of a request.
fn top_error(request: &Value) -> Rejection {
    validate(request).unwrap_err()
}

/// The outcome of checks (6) and (7a) for these process_info objects.
fn processes(infos: &[Value]) -> Result<Vec<Process>, Rejection> {
    validate(&request_with(infos)).unwrap().processes
}

/// The one process parsed from a process_info object.
fn process(info: Value) -> Process {
    processes(&[info]).unwrap().remove(0)
}

/// The rejection for a single process_info object.
fn process_error(info: Value) -> Rejection {
    processes(&[info]).unwrap_err()
}

/// Asserts code and message.
#[track_caller]
fn assert_rejected(rejection: Rejection, code: Code, message: &str) {
    assert_eq!(rejection, Rejection::new(code, message));
}

/// A process_info with one extra field.
fn with(key: &str, value: Value) -> Value {
    let mut base = info("p", "f");
    base[key] = value;
    base
}
