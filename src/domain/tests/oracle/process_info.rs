use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use super::{Process, Rejection, bind_info};
use crate::domain::BindInfo;

/// Limit for names and short texts, in bytes after trimming.
const SHORT: usize = 256;
/// Limit for paths, commands and the start parameter regex, in bytes after trimming.
const LONG: usize = 2000;

/// Parses `processes[index].process_info`.
pub fn parse(index: usize, map: &Map<String, Value>) -> Result<Process, Rejection> {
    let info = Info {
        map,
        path: format!("processes[{index}].process_info"),
    };
    for key in ["bk_process_name", "bk_func_name"] {
        if !map.contains_key(key) {
            return Err(Rejection::missing(info.at(key)));
        }
    }
    Ok(Process {
        bk_process_name: info.string("bk_process_name", SHORT, Need::Required)?,
        bk_func_name: info.string("bk_func_name", SHORT, Need::Required)?,
        bk_start_param_regex: info.string("bk_start_param_regex", LONG, Need::Optional)?,
        description: info.string("description", SHORT, Need::Optional)?,
        user: info.string("user", SHORT, Need::Optional)?,
        work_path: info.string("work_path", LONG, Need::Optional)?,
        pid_file: info.string("pid_file", LONG, Need::Optional)?,
        start_cmd: info.string("start_cmd", LONG, Need::Optional)?,
        stop_cmd: info.string("stop_cmd", LONG, Need::Optional)?,
        restart_cmd: info.string("restart_cmd", LONG, Need::Optional)?,
        reload_cmd: info.string("reload_cmd", LONG, Need::Optional)?,
        face_stop_cmd: info.string("face_stop_cmd", LONG, Need::Optional)?,
        proc_num: info.int("proc_num", 1..=10_000)?,
        priority: info.int("priority", -100..=10_000)?,
        timeout: info.int("timeout", 0..=10_000)?,
        bk_start_check_secs: info.int("bk_start_check_secs", 0..=600)?,
        auto_start: info.flag("auto_start")?,
        bind_info: bind_info::parse(&info.at("bind_info"), map.get("bind_info"))?
            .map(|rows| BindInfo::new(rows.to_string())),
    })
}

/// Whether a string field may be left out (and then is `""`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
}

/// One process_info object and its path for messages.
struct Info<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl Info<'_> {
    fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// A string, trimmed and stored trimmed; null means `""` when optional.
    fn string(&self, key: &str, limit: usize, need: Need) -> Result<String, Rejection> {
        let text = match (self.map.get(key), need) {
            (None | Some(Value::Null), Need::Optional) => return Ok(String::new()),
            (Some(Value::Null), Need::Required) => {
                return Err(Rejection::invalid(self.at(key), "must not be null"));
            }
            (Some(Value::String(s)), _) => s.trim(),
            (Some(_), _) => return Err(Rejection::invalid(self.at(key), "must be a string")),
            (None, Need::Required) => return Err(Rejection::missing(self.at(key))),
        };
        if need == Need::Required && text.is_empty() {
            return Err(Rejection::invalid(self.at(key), "must not be blank"));
        }
        if text.contains('\0') {
            return Err(Rejection::invalid(self.at(key), "contains NUL"));
        }
        if text.len() > limit {
            let what = format!("is {} bytes after trimming, limit {limit}", text.len());
            return Err(Rejection::invalid(self.at(key), what));
        }
        Ok(text.to_owned())
    }

    /// A JSON integer (not a float, not a string) in `range`, or null.
    fn int(&self, key: &str, range: RangeInclusive<i32>) -> Result<Option<i32>, Rejection> {
        let n = match self.map.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n,
            Some(_) => return Err(Rejection::invalid(self.at(key), "must be an integer")),
        };
        let within = n
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .filter(|v| range.contains(v));
        match within {
            Some(v) => Ok(Some(v)),
            None => Err(Rejection::invalid(
                self.at(key),
                format!("{n} is out of range {}..={}", range.start(), range.end()),
            )),
        }
    }

    /// A bool; missing or null is false.
    fn flag(&self, key: &str) -> Result<bool, Rejection> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(Rejection::invalid(self.at(key), "must be a bool")),
        }
    }
}
