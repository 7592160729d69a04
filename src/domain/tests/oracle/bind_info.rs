use std::net::IpAddr;

use serde_json::{Map, Value};

use super::Rejection;
use super::rejection::quote;

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

/// Parses a bind_info value at `path`; None when absent or null.
pub fn parse(path: &str, value: Option<&Value>) -> Result<Option<Value>, Rejection> {
    let rows = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(rows)) => rows,
        Some(_) => return Err(Rejection::invalid(path, "must be an array or null")),
    };
    rows.iter()
        .enumerate()
        .map(|(i, row)| parse_row(&format!("{path}[{i}]"), row))
        .collect::<Result<Vec<_>, _>>()
        .map(|rows| Some(Value::Array(rows)))
}

fn parse_row(path: &str, row: &Value) -> Result<Value, Rejection> {
    let Value::Object(row) = row else {
        return Err(Rejection::invalid(path, "must be an object"));
    };
    if let Some(key) = row.keys().find(|key| !KEYS.contains(&key.as_str())) {
        return Err(Rejection::invalid(
            format!("{path}.{key}"),
            "is not a bind_info key",
        ));
    }
    let at = |key: &str| format!("{path}.{key}");
    if let Some(enable) = row.get("enable")
        && !enable.is_boolean()
    {
        return Err(Rejection::invalid(at("enable"), "must be a bool"));
    }
    match row.get("ip") {
        None | Some(Value::Null) => {}
        Some(Value::String(ip)) if ip.is_empty() || ip.parse::<IpAddr>().is_ok() => {}
        Some(Value::String(ip)) => {
            return Err(Rejection::invalid(
                at("ip"),
                format!("{} is not an IP address", quote(ip)),
            ));
        }
        Some(_) => return Err(Rejection::invalid(at("ip"), "must be a string or null")),
    }
    if let Some(port) = row.get("port") {
        let Value::String(port) = port else {
            return Err(Rejection::invalid(at("port"), "must be a string"));
        };
        if !is_port_or_range(port) {
            return Err(Rejection::invalid(
                at("port"),
                format!("{} is not a port", quote(port)),
            ));
        }
    }
    if let Some(protocol) = row.get("protocol") {
        let Value::String(protocol) = protocol else {
            return Err(Rejection::invalid(at("protocol"), "must be a string"));
        };
        if !PROTOCOLS.contains(&protocol.as_str()) {
            let what = format!("{} is not \"1\", \"2\", \"3\" or \"4\"", quote(protocol));
            return Err(Rejection::invalid(at("protocol"), what));
        }
    }
    normalise_row_id(path, row)
}

/// `row_id` is the seed's name for `template_row_id`: check both, keep one.
fn normalise_row_id(path: &str, row: &Map<String, Value>) -> Result<Value, Rejection> {
    let template = row_id(path, row, "template_row_id")?;
    let alias = row_id(path, row, "row_id")?;
    if let (Some(t), Some(a)) = (template, alias)
        && t != a
    {
        let what = format!("{a} differs from template_row_id {t}");
        return Err(Rejection::invalid(format!("{path}.row_id"), what));
    }
    let mut out = row.clone();
    if let Some(sent) = out.remove("row_id")
        && template.is_none()
    {
        out.insert("template_row_id".to_owned(), sent);
    }
    Ok(Value::Object(out))
}

/// A row id: a JSON integer that fits i64, or null/absent (None).
fn row_id(path: &str, row: &Map<String, Value>, key: &str) -> Result<Option<i64>, Rejection> {
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
        Some(_) => Err(Rejection::invalid(
            format!("{path}.{key}"),
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
