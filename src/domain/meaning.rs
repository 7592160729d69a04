//! The request's meaning: what makes two sends of one request_id "the same request".
//!
//! It covers what the request asks for (supplier account with its default,
//! business, service instance, processes as received), not who sent it, so a
//! retry with a fresh token still gets the stored reply.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// SHA-256 of the canonical JSON of the meaningful fields.
pub(super) fn hash(object: &Map<String, Value>) -> [u8; 32] {
    let field = |key: &str| object.get(key).cloned().unwrap_or(Value::Null);
    let supplier = match object.get("bk_supplier_account") {
        None | Some(Value::Null) => Value::String("0".to_owned()),
        Some(v) => v.clone(),
    };
    let mut meaning = Map::new();
    meaning.insert("bk_biz_id".to_owned(), field("bk_biz_id"));
    meaning.insert("bk_supplier_account".to_owned(), supplier);
    meaning.insert("processes".to_owned(), field("processes"));
    meaning.insert(
        "service_instance_id".to_owned(),
        field("service_instance_id"),
    );
    let mut text = String::new();
    write_canonical(&Value::Object(meaning), &mut text);
    Sha256::digest(text.as_bytes()).into()
}

/// Compact JSON with object keys sorted at every level. Written by hand so the
/// hash does not depend on serde_json's `preserve_order` feature being off.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
