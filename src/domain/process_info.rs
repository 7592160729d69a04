//! Check (6) for one process: its process_info fields, in the contract's
//! table order, required keys first. Every problem here is 1199011 (invalid
//! value) except an absent required key (1199010), as in bk-cmdb 3.14.

use std::ops::RangeInclusive;

use super::prepared::{Prepared, ProcessSpans, Span};
use super::wire::{Entries, Json};
use super::{Rejection, bind_info};

/// Limit for names and short texts, in bytes after trimming.
const SHORT: usize = 256;
/// Limit for paths, commands and the start parameter regex, in bytes after trimming.
const LONG: usize = 2000;

/// The process_info keys of the contract's table, as sent (the last of
/// duplicates); other keys are left out.
#[derive(Default)]
struct Fields<'j, 'a> {
    bk_process_name: Option<&'j Json<'a>>,
    bk_func_name: Option<&'j Json<'a>>,
    bk_start_param_regex: Option<&'j Json<'a>>,
    description: Option<&'j Json<'a>>,
    user: Option<&'j Json<'a>>,
    work_path: Option<&'j Json<'a>>,
    pid_file: Option<&'j Json<'a>>,
    start_cmd: Option<&'j Json<'a>>,
    stop_cmd: Option<&'j Json<'a>>,
    restart_cmd: Option<&'j Json<'a>>,
    reload_cmd: Option<&'j Json<'a>>,
    face_stop_cmd: Option<&'j Json<'a>>,
    proc_num: Option<&'j Json<'a>>,
    priority: Option<&'j Json<'a>>,
    timeout: Option<&'j Json<'a>>,
    bk_start_check_secs: Option<&'j Json<'a>>,
    auto_start: Option<&'j Json<'a>>,
    bind_info: Option<&'j Json<'a>>,
}

impl<'j, 'a> From<Entries<'j, 'a>> for Fields<'j, 'a> {
    fn from(entries: Entries<'j, 'a>) -> Self {
        let mut f = Fields::default();
        for (key, value) in entries {
            let slot = match key.as_ref() {
                "bk_process_name" => &mut f.bk_process_name,
                "bk_func_name" => &mut f.bk_func_name,
                "bk_start_param_regex" => &mut f.bk_start_param_regex,
                "description" => &mut f.description,
                "user" => &mut f.user,
                "work_path" => &mut f.work_path,
                "pid_file" => &mut f.pid_file,
                "start_cmd" => &mut f.start_cmd,
                "stop_cmd" => &mut f.stop_cmd,
                "restart_cmd" => &mut f.restart_cmd,
                "reload_cmd" => &mut f.reload_cmd,
                "face_stop_cmd" => &mut f.face_stop_cmd,
                "proc_num" => &mut f.proc_num,
                "priority" => &mut f.priority,
                "timeout" => &mut f.timeout,
                "bk_start_check_secs" => &mut f.bk_start_check_secs,
                "auto_start" => &mut f.auto_start,
                "bind_info" => &mut f.bind_info,
                _ => continue,
            };
            *slot = Some(value);
        }
        f
    }
}

/// Parses `processes[index].process_info`, keeping its strings in `out`.
pub(super) fn parse(
    index: usize,
    entries: Entries<'_, '_>,
    out: &mut Prepared,
) -> Result<ProcessSpans, Rejection> {
    let f = Fields::from(entries);
    let info = Info { index };
    if f.bk_process_name.is_none() {
        return Err(Rejection::missing(info.at("bk_process_name")));
    }
    if f.bk_func_name.is_none() {
        return Err(Rejection::missing(info.at("bk_func_name")));
    }
    let (required, optional) = (Need::Required, Need::Optional);
    // In the contract's table order, which is also Process's field order.
    let strings = [
        ("bk_process_name", f.bk_process_name, SHORT, required),
        ("bk_func_name", f.bk_func_name, SHORT, required),
        (
            "bk_start_param_regex",
            f.bk_start_param_regex,
            LONG,
            optional,
        ),
        ("description", f.description, SHORT, optional),
        ("user", f.user, SHORT, optional),
        ("work_path", f.work_path, LONG, optional),
        ("pid_file", f.pid_file, LONG, optional),
        ("start_cmd", f.start_cmd, LONG, optional),
        ("stop_cmd", f.stop_cmd, LONG, optional),
        ("restart_cmd", f.restart_cmd, LONG, optional),
        ("reload_cmd", f.reload_cmd, LONG, optional),
        ("face_stop_cmd", f.face_stop_cmd, LONG, optional),
    ];
    let mut spans: [Span; 12] = std::array::from_fn(|_| 0..0);
    for (span, (key, value, limit, need)) in spans.iter_mut().zip(strings) {
        *span = out.keep(info.string(key, value, limit, need)?);
    }
    Ok(ProcessSpans {
        strings: spans,
        ints: [
            info.int("proc_num", f.proc_num, 1..=10_000)?,
            info.int("priority", f.priority, -100..=10_000)?,
            info.int("timeout", f.timeout, 0..=10_000)?,
            info.int("bk_start_check_secs", f.bk_start_check_secs, 0..=600)?,
        ],
        auto_start: info.flag("auto_start", f.auto_start)?,
        bind_info: bind_info::parse(|| info.at("bind_info"), f.bind_info, out)?,
    })
}

/// Whether a string field may be left out (and then is `""`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
}

/// Where a process_info sits, for messages; the path is only built for one.
struct Info {
    index: usize,
}

impl Info {
    fn at(&self, key: &str) -> String {
        format!("processes[{}].process_info.{key}", self.index)
    }

    /// A string, trimmed and stored trimmed; null means `""` when optional.
    fn string<'j>(
        &self,
        key: &str,
        value: Option<&'j Json<'_>>,
        limit: usize,
        need: Need,
    ) -> Result<&'j str, Rejection> {
        let text = match (value, need) {
            (None | Some(Json::Null), Need::Optional) => return Ok(""),
            (Some(Json::Null), Need::Required) => {
                return Err(Rejection::invalid(self.at(key), "must not be null"));
            }
            (Some(Json::Str(s)), _) => s.trim(),
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
        Ok(text)
    }

    /// A JSON integer (not a float, not a string) in `range`, or null.
    fn int(
        &self,
        key: &str,
        value: Option<&Json<'_>>,
        range: RangeInclusive<i32>,
    ) -> Result<Option<i32>, Rejection> {
        let n = match value {
            None | Some(Json::Null) => return Ok(None),
            Some(Json::Number(n)) if n.is_i64() || n.is_u64() => n,
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
    fn flag(&self, key: &str, value: Option<&Json<'_>>) -> Result<bool, Rejection> {
        match value {
            None | Some(Json::Null) => Ok(false),
            Some(Json::Bool(b)) => Ok(*b),
            Some(_) => Err(Rejection::invalid(self.at(key), "must be a bool")),
        }
    }
}
