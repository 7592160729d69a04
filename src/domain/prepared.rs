//! The outcome of checks (3), (4) and (6), kept between [`super::decode`]
//! (which has the borrowed body) and [`super::Decoded::validate`] (which
//! hands out an owned [`Request`]): the accepted strings back to back in one
//! buffer, the rest as plain values, so the owned request is built once.

use std::{io::Write, ops::Range};

use super::{Process, Rejection, Request, request::BindInfo, uniqueness};

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
                .map(|rows| self.bind_info(&self.rows[rows])),
        }
    }

    /// The rows as sent, with `row_id` renamed `template_row_id`, as the
    /// JSON text a `serde_json::Value` of them serialises to (compact, keys
    /// sorted).
    fn bind_info(&self, rows: &[Row]) -> BindInfo {
        let mut out = Vec::with_capacity(2 + rows.len() * 96);
        out.push(b'[');
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.write_row(row, &mut out);
        }
        out.push(b']');
        // Only str slices and ASCII are written.
        let json = String::from_utf8(out).expect("bind_info JSON is UTF-8");
        BindInfo::new(json)
    }

    /// One row's present keys, in alphabetical order.
    fn write_row(&self, row: &Row, out: &mut Vec<u8>) {
        let text = |out: &mut Vec<u8>, span: &Span| {
            // Writing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &self.text[span.clone()]);
        };
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, key: &str| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
        };
        out.push(b'{');
        if let Some(enable) = row.enable {
            key(out, "enable");
            out.extend_from_slice(if enable { b"true" } else { b"false" });
        }
        if let Some(ip) = &row.ip {
            key(out, "ip");
            match ip {
                Some(ip) => text(out, ip),
                None => out.extend_from_slice(b"null"),
            }
        }
        if let Some(port) = &row.port {
            key(out, "port");
            text(out, port);
        }
        if let Some(protocol) = &row.protocol {
            key(out, "protocol");
            text(out, protocol);
        }
        if let Some(id) = row.template_row_id {
            key(out, "template_row_id");
            match id {
                Some(id) => {
                    let _ = write!(out, "{id}");
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'}');
    }
}
