//! bind_info: the ports a process listens on, checked as bk-cmdb 3.14 does
//! (only the keys present), and normalised to the `template_row_id` name.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::Rejection;
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

/// Parses a bind_info value at `path()`; None when absent or null. The path
/// is only built for a message.
pub(super) fn parse(
    path: impl Fn() -> String,
    value: Option<&Json<'_>>,
) -> Result<Option<Value>, Rejection> {
    let rows = match value {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Array(rows)) => rows,
        Some(_) => return Err(Rejection::invalid(path(), "must be an array or null")),
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| parse_row(|| format!("{}[{i}]", path()), row))
        .collect::<Result<Vec<_>, _>>()
        .map(|rows| Some(Value::Array(rows)))
}

/// A row's keys as sent (the last of duplicates).
#[derive(Default)]
struct Row<'j, 'a> {
    enable: Option<&'j Json<'a>>,
    ip: Option<&'j Json<'a>>,
    port: Option<&'j Json<'a>>,
    protocol: Option<&'j Json<'a>>,
    template_row_id: Option<&'j Json<'a>>,
    row_id: Option<&'j Json<'a>>,
}

fn parse_row(path: impl Fn() -> String, row: &Json<'_>) -> Result<Value, Rejection> {
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
    let mut row = Row::default();
    for (key, value) in entries {
        let slot = match key.as_ref() {
            "enable" => &mut row.enable,
            "ip" => &mut row.ip,
            "port" => &mut row.port,
            "protocol" => &mut row.protocol,
            "template_row_id" => &mut row.template_row_id,
            _ => &mut row.row_id,
        };
        *slot = Some(value);
    }
    let at = |key: &str| format!("{}.{key}", path());
    if let Some(enable) = row.enable
        && !matches!(enable, Json::Bool(_))
    {
        return Err(Rejection::invalid(at("enable"), "must be a bool"));
    }
    match row.ip {
        None | Some(Json::Null) => {}
        Some(Json::Str(ip)) if ip.is_empty() || ip.parse::<IpAddr>().is_ok() => {}
        Some(Json::Str(ip)) => {
            return Err(Rejection::invalid(
                at("ip"),
                format!("{} is not an IP address", quote(ip)),
            ));
        }
        Some(_) => return Err(Rejection::invalid(at("ip"), "must be a string or null")),
    }
    if let Some(port) = row.port {
        let Json::Str(port) = port else {
            return Err(Rejection::invalid(at("port"), "must be a string"));
        };
        if !is_port_or_range(port) {
            return Err(Rejection::invalid(
                at("port"),
                format!("{} is not a port", quote(port)),
            ));
        }
    }
    if let Some(protocol) = row.protocol {
        let Json::Str(protocol) = protocol else {
            return Err(Rejection::invalid(at("protocol"), "must be a string"));
        };
        if !PROTOCOLS.contains(&protocol.as_ref()) {
            let what = format!("{} is not \"1\", \"2\", \"3\" or \"4\"", quote(protocol));
            return Err(Rejection::invalid(at("protocol"), what));
        }
    }
    normalise_row_id(&at, &row)
}

/// `row_id` is the seed's name for `template_row_id`: check both, keep one.
/// The row is stored as sent otherwise.
fn normalise_row_id(at: &dyn Fn(&str) -> String, row: &Row<'_, '_>) -> Result<Value, Rejection> {
    let template = row_id(at, "template_row_id", row.template_row_id)?;
    let alias = row_id(at, "row_id", row.row_id)?;
    if let (Some(t), Some(a)) = (template, alias)
        && t != a
    {
        let what = format!("{a} differs from template_row_id {t}");
        return Err(Rejection::invalid(at("row_id"), what));
    }
    let mut out = Map::new();
    let sent = [
        ("enable", row.enable),
        ("ip", row.ip),
        ("port", row.port),
        ("protocol", row.protocol),
        ("template_row_id", row.template_row_id),
    ];
    for (key, value) in sent {
        if let Some(value) = value {
            out.insert(key.to_owned(), value.to_value());
        }
    }
    if let Some(sent) = row.row_id
        && template.is_none()
    {
        out.insert("template_row_id".to_owned(), sent.to_value());
    }
    Ok(Value::Object(out))
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
