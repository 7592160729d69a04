//! The request's meaning: what makes two sends of one request_id "the same request".
//!
//! It covers what the request asks for (supplier account with its default,
//! business, service instance, processes as received), not who sent it, so a
//! retry with a fresh token still gets the stored reply.
//!
//! The canonical text is the one `serde_json` wrote for the body read into a
//! `serde_json::Value` (compact, object keys sorted bytewise, the last of
//! duplicate keys, scalars as serde_json writes them): stored hashes depend on
//! it byte for byte, and `tests/meaning.rs` pins it.

use std::borrow::Cow;
use std::io::Write;

use sha2::{Digest, Sha256};

use super::wire::{Json, Wire};

/// SHA-256 of the canonical JSON of the meaningful fields.
pub(super) fn hash(wire: &Wire<'_>) -> [u8; 32] {
    let default_supplier = Json::Str("0".into());
    let supplier = match &wire.bk_supplier_account {
        None | Some(Json::Null) => &default_supplier,
        Some(v) => v,
    };
    // Keys in sorted order, as write_canonical sorts nested objects.
    let fields = [
        ("bk_biz_id", field(&wire.bk_biz_id)),
        ("bk_supplier_account", supplier),
        ("processes", field(&wire.processes)),
        ("service_instance_id", field(&wire.service_instance_id)),
    ];
    let mut out = Canonical {
        hasher: Sha256::new(),
        buffer: [0; BUFFER],
        filled: 0,
        order: Vec::new(),
    };
    out.put(b"{");
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.put(b",");
        }
        out.key(&Cow::Borrowed(key));
        out.value(value);
    }
    out.put(b"}");
    out.flush_buffer();
    out.hasher.finalize().into()
}

/// An absent field is written as null.
fn field<'j, 'a>(value: &'j Option<Json<'a>>) -> &'j Json<'a> {
    value.as_ref().unwrap_or(&Json::Null)
}

/// Bytes of canonical text gathered before they go to the hasher.
const BUFFER: usize = 1024;

/// The canonical text, streamed into the hasher through a small buffer:
/// nothing of the size of the body is allocated.
struct Canonical {
    hasher: Sha256,
    buffer: [u8; BUFFER],
    filled: usize,
    /// Entry indices of the objects being written, innermost last.
    order: Vec<usize>,
}

impl Canonical {
    fn put(&mut self, bytes: &[u8]) {
        if self.filled + bytes.len() > BUFFER {
            self.flush_buffer();
            if bytes.len() > BUFFER {
                self.hasher.update(bytes);
                return;
            }
        }
        self.buffer[self.filled..self.filled + bytes.len()].copy_from_slice(bytes);
        self.filled += bytes.len();
    }

    fn flush_buffer(&mut self) {
        self.hasher.update(&self.buffer[..self.filled]);
        self.filled = 0;
    }

    fn value(&mut self, value: &Json<'_>) {
        match value {
            Json::Null => self.put(b"null"),
            Json::Bool(true) => self.put(b"true"),
            Json::Bool(false) => self.put(b"false"),
            // Numbers exactly as serde_json writes them.
            Json::Number(n) => {
                let _ = serde_json::to_writer(&mut *self, n);
            }
            Json::Str(s) => self.string(s),
            Json::Array(items) => {
                self.put(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.put(b",");
                    }
                    self.value(item);
                }
                self.put(b"]");
            }
            Json::Object(entries) => self.object(entries),
        }
    }

    /// Keys sorted bytewise (a stable sort keeps duplicates in sent order),
    /// and of duplicates only the last, as a `BTreeMap` built from the body.
    fn object(&mut self, entries: &[(Cow<'_, str>, Json<'_>)]) {
        let start = self.order.len();
        self.order.extend(0..entries.len());
        self.order[start..].sort_by(|&a, &b| entries[a].0.cmp(&entries[b].0));
        let end = self.order.len();
        self.put(b"{");
        let mut first = true;
        for at in start..end {
            let (key, value) = &entries[self.order[at]];
            if at + 1 < end && entries[self.order[at + 1]].0 == *key {
                continue;
            }
            if !first {
                self.put(b",");
            }
            first = false;
            self.key(key);
            self.value(value);
        }
        self.put(b"}");
        self.order.truncate(start);
    }

    #[allow(
        clippy::ptr_arg,
        reason = "whether the key is borrowed from the body matters"
    )]
    fn key(&mut self, key: &Cow<'_, str>) {
        self.string(key);
        self.put(b":");
    }

    /// A string exactly as serde_json writes it: only `"`, `\\` and control
    /// characters are escaped. A string borrowed from the body has none of
    /// them (it had no escape, and the parser refuses raw control
    /// characters), so it goes as it is.
    #[allow(
        clippy::ptr_arg,
        reason = "whether the string is borrowed from the body matters"
    )]
    fn string(&mut self, s: &Cow<'_, str>) {
        let escaped = |s: &str| s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
        let plain = match s {
            Cow::Borrowed(s) => {
                debug_assert!(!escaped(s), "a borrowed string needs no escape");
                true
            }
            Cow::Owned(s) => !escaped(s),
        };
        if plain {
            self.put(b"\"");
            self.put(s.as_bytes());
            self.put(b"\"");
        } else {
            let _ = serde_json::to_writer(&mut *self, s.as_ref());
        }
    }
}

/// For serde_json's writers of escaped strings and numbers; never fails.
impl Write for Canonical {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.put(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
