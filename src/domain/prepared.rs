//! The outcome of checks (3), (4) and (6), kept between [`super::decode`]
//! (which has the borrowed body) and [`super::Decoded::validate`] (which
//! hands out an owned [`Request`]): the accepted strings back to back in one
//! buffer, the rest as plain values, so the owned request is built once.

use std::ops::Range;

use serde_json::{Map, Value};

use super::{Process, Rejection, Request, uniqueness};

/// Where an accepted string sits in [`Prepared::text`].
pub(super) type Span = Range<usize>;

/// A validated request, compact.
#[derive(Debug)]
pub(super) struct Prepared {
    /// Every accepted string of the request, back to back.
    pub text: String,
    pub bk_biz_id: i64,
    pub bk_supplier_account: Option<Span>,
    pub service_instance_id: i64,
    pub bk_username: Option<Span>,
    /// Check (6); (7a) runs on the owned processes.
    pub processes: Result<Vec<ProcessSpans>, Rejection>,
    /// bind_info rows of all processes, in order.
    pub rows: Vec<Row>,
}

/// One valid process_info: its 12 strings (trimmed) in [`Process`] field
/// order, its 4 ints, auto_start, and its rows in [`Prepared::rows`].
#[derive(Debug)]
pub(super) struct ProcessSpans {
    pub strings: [Span; 12],
    pub ints: [Option<i32>; 4],
    pub auto_start: bool,
    pub bind_info: Option<Range<usize>>,
}

/// A valid bind_info row: each key as sent (None when absent), `row_id`
/// already folded into `template_row_id`.
#[derive(Debug, Default)]
pub(super) struct Row {
    pub enable: Option<bool>,
    /// Some(None) when sent as null.
    pub ip: Option<Option<Span>>,
    pub port: Option<Span>,
    pub protocol: Option<Span>,
    /// Some(None) when sent as null.
    pub template_row_id: Option<Option<i64>>,
}

impl Prepared {
    /// Appends an accepted string, returning where it sits.
    pub fn keep(&mut self, s: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }

    fn owned(&self, span: &Span) -> String {
        self.text[span.clone()].to_owned()
    }

    /// The owned request, with check (7a) on its processes.
    pub fn request(&self, request_id: &str) -> Request {
        let processes = self
            .processes
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|spans| {
                let processes: Vec<Process> = spans.iter().map(|p| self.process(p)).collect();
                uniqueness::within_request(&processes).map(|()| processes)
            });
        Request {
            request_id: request_id.to_owned(),
            bk_biz_id: self.bk_biz_id,
            bk_supplier_account: self
                .bk_supplier_account
                .as_ref()
                .map_or_else(|| "0".to_owned(), |s| self.owned(s)),
            service_instance_id: self.service_instance_id,
            bk_username: self
                .bk_username
                .as_ref()
                .map(|s| self.owned(s))
                .unwrap_or_default(),
            processes,
        }
    }

    fn process(&self, p: &ProcessSpans) -> Process {
        let [
            bk_process_name,
            bk_func_name,
            bk_start_param_regex,
            description,
            user,
            work_path,
            pid_file,
            start_cmd,
            stop_cmd,
            restart_cmd,
            reload_cmd,
            face_stop_cmd,
        ] = p.strings.each_ref().map(|s| self.owned(s));
        let [proc_num, priority, timeout, bk_start_check_secs] = p.ints;
        Process {
            bk_process_name,
            bk_func_name,
            bk_start_param_regex,
            description,
            user,
            work_path,
            pid_file,
            start_cmd,
            stop_cmd,
            restart_cmd,
            reload_cmd,
            face_stop_cmd,
            proc_num,
            priority,
            timeout,
            bk_start_check_secs,
            auto_start: p.auto_start,
            bind_info: p
                .bind_info
                .clone()
                .map(|rows| Value::Array(self.rows[rows].iter().map(|r| self.row(r)).collect())),
        }
    }

    /// The row as sent, with `row_id` renamed `template_row_id`.
    fn row(&self, row: &Row) -> Value {
        let text = |span: &Span| Value::String(self.owned(span));
        let mut out = Map::new();
        if let Some(enable) = row.enable {
            out.insert("enable".to_owned(), Value::Bool(enable));
        }
        if let Some(ip) = &row.ip {
            out.insert("ip".to_owned(), ip.as_ref().map_or(Value::Null, text));
        }
        if let Some(port) = &row.port {
            out.insert("port".to_owned(), text(port));
        }
        if let Some(protocol) = &row.protocol {
            out.insert("protocol".to_owned(), text(protocol));
        }
        if let Some(id) = row.template_row_id {
            out.insert(
                "template_row_id".to_owned(),
                id.map_or(Value::Null, Value::from),
            );
        }
        Value::Object(out)
    }
}
