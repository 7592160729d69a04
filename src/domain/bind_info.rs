//! bind_info: the ports a process listens on, checked as bk-cmdb 3.14 does
//! (only the keys present), and normalised to the `template_row_id` name.

use std::net::IpAddr;
use std::ops::Range;

use super::Rejection;
use super::prepared::{Prepared, Row};
use super::rejection::quote;
use super::wire::Json;

const KEYS: [&str; 6] = [
    "enable",
    "ip",
    "port",
    "protocol",
    "template_row_id",
    "row_id",
];

/// `"1"` TCP, `"2"` UDP, `"3"` TCP6, `"4"` UDP6.
const PROTOCOLS: [&str; 4] = ["1", "2", "3", "4"];

/// Parses a bind_info value at `path()` into `out`'s rows; None when absent
/// or null. The path is only built for a message.
pub(super) fn parse(
    path: impl Fn() -> String,
    value: Option<&Json<'_>>,
    out: &mut Prepared,
) -> Result<Option<Range<usize>>, Rejection> {
    let rows = match value {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Array(rows)) => rows,
        Some(_) => return Err(Rejection::invalid(path(), "must be an array or null")),
    };
    let start = out.rows.len();
    for (i, row) in rows.iter().enumerate() {
        let row = parse_row(|| format!("{}[{i}]", path()), row, out)?;
        out.rows.push(row);
    }
    Ok(Some(start..out.rows.len()))
}

/// A row's keys as sent (the last of duplicates).
#[derive(Default)]
struct Sent<'j, 'a> {
    enable: Option<&'j Json<'a>>,
    ip: Option<&'j Json<'a>>,
    port: Option<&'j Json<'a>>,
    protocol: Option<&'j Json<'a>>,
    template_row_id: Option<&'j Json<'a>>,
    row_id: Option<&'j Json<'a>>,
}

fn parse_row(
    path: impl Fn() -> String,
    row: &Json<'_>,
    out: &mut Prepared,
) -> Result<Row, Rejection> {
    let Json::Object(entries) = row else {
        return Err(Rejection::invalid(path(), "must be an object"));
    };
    // The first in key order, as the keys of a `serde_json::Map` come.
    let unknown = entries
        .iter()
        .map(|(key, _)| key.as_ref())
        .filter(|key| !KEYS.contains(key))
        .min();
    if let Some(key) = unknown {
        return Err(Rejection::invalid(
            format!("{}.{key}", path()),
            "is not a bind_info key",
        ));
    }
    let mut sent = Sent::default();
    for (key, value) in entries {
        let slot = match key.as_ref() {
            "enable" => &mut sent.enable,
            "ip" => &mut sent.ip,
            "port" => &mut sent.port,
            "protocol" => &mut sent.protocol,
            "template_row_id" => &mut sent.template_row_id,
            _ => &mut sent.row_id,
        };
        *slot = Some(value);
    }
    let at = |key: &str| format!("{}.{key}", path());
    let mut row = Row::default();
    if let Some(enable) = sent.enable {
        let Json::Bool(enable) = enable else {
            return Err(Rejection::invalid(at("enable"), "must be a bool"));
        };
        row.enable = Some(*enable);
    }
    row.ip = match sent.ip {
        None => None,
        Some(Json::Null) => Some(None),
        Some(Json::Str(ip)) if ip.is_empty() || ip.parse::<IpAddr>().is_ok() => {
            Some(Some(out.keep(ip)))
        }
        Some(Json::Str(ip)) => {
            return Err(Rejection::invalid(
                at("ip"),
                format!("{} is not an IP address", quote(ip)),
            ));
        }
        Some(_) => return Err(Rejection::invalid(at("ip"), "must be a string or null")),
    };
    if let Some(port) = sent.port {
        let Json::Str(port) = port else {
            return Err(Rejection::invalid(at("port"), "must be a string"));
        };
        if !is_port_or_range(port) {
            return Err(Rejection::invalid(
                at("port"),
                format!("{} is not a port", quote(port)),
            ));
        }
        row.port = Some(out.keep(port));
    }
    if let Some(protocol) = sent.protocol {
        let Json::Str(protocol) = protocol else {
            return Err(Rejection::invalid(at("protocol"), "must be a string"));
        };
        if !PROTOCOLS.contains(&protocol.as_ref()) {
            let what = format!("{} is not \"1\", \"2\", \"3\" or \"4\"", quote(protocol));
            return Err(Rejection::invalid(at("protocol"), what));
        }
        row.protocol = Some(out.keep(protocol));
    }
    row.template_row_id = template_row_id(&at, &sent)?;
    Ok(row)
}

/// `row_id` is the seed's name for `template_row_id`: check both, keep one,
/// as sent (null included): `template_row_id` unless only `row_id` has a value.
fn template_row_id(
    at: &dyn Fn(&str) -> String,
    sent: &Sent<'_, '_>,
) -> Result<Option<Option<i64>>, Rejection> {
    let template = row_id(at, "template_row_id", sent.template_row_id)?;
    let alias = row_id(at, "row_id", sent.row_id)?;
    if let (Some(t), Some(a)) = (template, alias)
        && t != a
    {
        let what = format!("{a} differs from template_row_id {t}");
        return Err(Rejection::invalid(at("row_id"), what));
    }
    Ok(match (sent.template_row_id, sent.row_id) {
        (_, Some(_)) if template.is_none() => Some(alias),
        (Some(_), _) => Some(template),
        (None, _) => None,
    })
}

/// A row id: a JSON integer that fits i64, or null/absent (None).
fn row_id(
    at: &dyn Fn(&str) -> String,
    key: &str,
    value: Option<&Json<'_>>,
) -> Result<Option<i64>, Rejection> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) if n.is_i64() => Ok(n.as_i64()),
        Some(_) => Err(Rejection::invalid(
            at(key),
            "must be an integer that fits 64 bits",
        )),
    }
}

/// One port `1`..`65535` or a range `a-b` of such ports; a <= b is not checked.
fn is_port_or_range(text: &str) -> bool {
    match text.split_once('-') {
        Some((low, high)) => is_port(low) && is_port(high),
        None => is_port(text),
    }
}

fn is_port(text: &str) -> bool {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits_only && !text.starts_with('0') && text.parse::<u16>().is_ok_and(|p| p >= 1)
}
