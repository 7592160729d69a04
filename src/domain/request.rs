//! The validated request: what the store writes, with nothing left to check.

use serde::Serialize;
use serde_json::{Value, value::RawValue};

use super::Rejection;

/// A request that passed checks (3) and (4). Its processes carry the outcome
/// of checks (6) and (7, within the request) separately, because the contract
/// puts the service instance check (5), which needs the database, between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub request_id: String,
    pub bk_biz_id: i64,
    /// `"0"` when absent or null, as in bk-cmdb.
    pub bk_supplier_account: String,
    pub service_instance_id: i64,
    /// The creator recorded on the rows; `""` when absent or null.
    pub bk_username: String,
    pub processes: Result<Vec<Process>, Rejection>,
}

/// One valid process_info: strings trimmed, ints in range, bind_info normalised.
/// Serialises to the process_info fields, for the audit log's detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    pub bk_process_name: String,
    pub bk_func_name: String,
    pub bk_start_param_regex: String,
    pub description: String,
    pub user: String,
    pub work_path: String,
    pub pid_file: String,
    pub start_cmd: String,
    pub stop_cmd: String,
    pub restart_cmd: String,
    pub reload_cmd: String,
    pub face_stop_cmd: String,
    pub proc_num: Option<i32>,
    pub priority: Option<i32>,
    pub timeout: Option<i32>,
    pub bk_start_check_secs: Option<i32>,
    pub auto_start: bool,
    /// None when absent or null; else the rows as sent, `row_id` renamed `template_row_id`.
    pub bind_info: Option<BindInfo>,
}

/// A valid bind_info as JSON text: the rows as sent, `row_id` renamed
/// `template_row_id`, each row's keys in alphabetical order. Written once
/// when the request is validated, then stored and audited as it is: it
/// serialises verbatim, with no `serde_json::Value` in between.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct BindInfo(Box<RawValue>);

impl BindInfo {
    /// `json` must be valid JSON; the validator writes it.
    pub(super) fn new(json: String) -> Self {
        Self(RawValue::from_string(json).expect("the validator writes valid bind_info JSON"))
    }

    pub fn as_json(&self) -> &RawValue {
        &self.0
    }

    /// The rows as a JSON tree, for tests and diagnostics.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for BindInfo {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Process {
    /// Its 12 strings, in field (and `process` column) order.
    pub fn strings(&self) -> [&str; 12] {
        [
            &self.bk_process_name,
            &self.bk_func_name,
            &self.bk_start_param_regex,
            &self.description,
            &self.user,
            &self.work_path,
            &self.pid_file,
            &self.start_cmd,
            &self.stop_cmd,
            &self.restart_cmd,
            &self.reload_cmd,
            &self.face_stop_cmd,
        ]
    }

    /// Bytes of its strings and bind_info, for sizing what it is written into.
    pub fn text_len(&self) -> usize {
        let bind_info = self
            .bind_info
            .as_ref()
            .map_or(0, |b| b.as_json().get().len());
        self.strings().iter().map(|s| s.len()).sum::<usize>() + bind_info
    }

    /// Every field as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
