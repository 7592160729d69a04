use std::io::Write;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// SHA-256 of the canonical JSON of the meaningful fields, streamed into
/// the hasher: nothing of the body is copied.
pub fn hash(object: &Map<String, Value>) -> [u8; 32] {
    let default_supplier = Value::String("0".to_owned());
    let supplier = match object.get("bk_supplier_account") {
        None | Some(Value::Null) => &default_supplier,
        Some(v) => v,
    };
    let field = |key: &str| object.get(key).unwrap_or(&Value::Null);
    // Keys in sorted order, as write_canonical sorts nested objects.
    let fields = [
        ("bk_biz_id", field("bk_biz_id")),
        ("bk_supplier_account", supplier),
        ("processes", field("processes")),
        ("service_instance_id", field("service_instance_id")),
    ];
    let mut out = Hasher(Sha256::new());
    out.put(b"{");
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.put(b",");
        }
        write_key(key, &mut out);
        write_canonical(value, &mut out);
    }
    out.put(b"}");
    out.0.finalize().into()
}

/// Compact JSON with object keys sorted at every level. Written by hand so the
/// hash does not depend on serde_json's `preserve_order` feature being off.
fn write_canonical(value: &Value, out: &mut Hasher) {
    match value {
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_canonical(item, out);
            }
            out.put(b"]");
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.put(b"{");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_key(key, out);
                write_canonical(item, out);
            }
            out.put(b"}");
        }
        scalar => {
            // Writing to a hasher cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_key(key: &str, out: &mut Hasher) {
    let _ = serde_json::to_writer(&mut *out, key);
    out.put(b":");
}

/// A SHA-256 that JSON can be written into.
struct Hasher(Sha256);

impl Hasher {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
