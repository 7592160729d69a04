//! The body as sent: borrowed from the message, nothing copied but strings
//! with escapes.
//!
//! [`Wire`] holds the top-level keys the contract names, each as a slot;
//! their values, and everything under `processes`, are [`Json`] trees that
//! borrow from the body. The meaning hash needs `processes` as received
//! (unknown keys and wrong types included), so it is kept whole; the typed
//! views of its objects are taken in `process_info` and `bind_info`.
//!
//! Every value is parsed in full, ignored keys too, so that what serde_json
//! refuses (numbers beyond the double range, unpaired surrogates) is refused
//! wherever it stands, as when the body was read into a `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// A JSON value borrowed from the body. Objects keep their entries in the
/// order sent, duplicates included; a lookup takes the last, as bk-cmdb does.
/// Boxed slices keep it at 24 bytes, so a process_info's entries stay a
/// small allocation.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array(Box<[Json<'a>]>),
    Object(Box<[(Cow<'a, str>, Json<'a>)]>),
}

/// One process_info object's entries, as sent.
pub(super) type Entries<'j, 'a> = &'j [(Cow<'a, str>, Json<'a>)];

/// How a secret was sent: its type is validated, its content never kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Secret {
    Null,
    Str,
    Other,
}

/// The top-level object: the keys of the contract's request table, the last
/// of each when sent twice. Other keys are parsed and dropped.
#[derive(Debug, Default)]
pub(super) struct Wire<'a> {
    pub request_id: Option<Json<'a>>,
    pub bk_biz_id: Option<Json<'a>>,
    pub bk_supplier_account: Option<Json<'a>>,
    pub service_instance_id: Option<Json<'a>>,
    pub processes: Option<Json<'a>>,
    pub bk_app_code: Option<Json<'a>>,
    pub bk_app_secret: Option<Secret>,
    pub bk_username: Option<Json<'a>>,
    pub bk_token: Option<Secret>,
}

/// Parses a whole body (its nesting already bounded by the caller): None
/// when it is JSON but not an object.
pub(super) fn parse(body: &[u8]) -> Result<Option<Wire<'_>>, serde_json::Error> {
    // Checking UTF-8 once for the whole body is cheaper than string by string;
    // a body that is not UTF-8 is parsed as bytes for serde_json's message.
    match std::str::from_utf8(body) {
        Ok(text) => parse_from(serde_json::Deserializer::from_str(text)),
        Err(_) => parse_from(serde_json::Deserializer::from_slice(body)),
    }
}

fn parse_from<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
) -> Result<Option<Wire<'de>>, serde_json::Error> {
    // The depth was bounded by the pre-scan; serde_json's own guard stops at 127.
    deserializer.disable_recursion_limit();
    let parsed = deserializer.deserialize_any(BodyVisitor)?;
    deserializer.end()?;
    Ok(parsed)
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Option<Wire<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut wire = Wire::default();
        let mut scratch = Scratch::new();
        while let Some(key) = map.next_key_seed(Text)? {
            let slot = match key.as_ref() {
                "request_id" => &mut wire.request_id,
                "bk_biz_id" => &mut wire.bk_biz_id,
                "bk_supplier_account" => &mut wire.bk_supplier_account,
                "service_instance_id" => &mut wire.service_instance_id,
                "processes" => &mut wire.processes,
                "bk_app_code" => &mut wire.bk_app_code,
                "bk_username" => &mut wire.bk_username,
                "bk_app_secret" => {
                    wire.bk_app_secret = Some(map.next_value_seed(&mut scratch)?.into());
                    continue;
                }
                "bk_token" => {
                    wire.bk_token = Some(map.next_value_seed(&mut scratch)?.into());
                    continue;
                }
                _ => {
                    map.next_value::<Checked>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value_seed(&mut scratch)?);
        }
        Ok(Some(wire))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Checked.visit_seq(seq).map(|_| None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The secret's content is dropped here, at decode, before anything keeps it.
impl From<Json<'_>> for Secret {
    fn from(value: Json<'_>) -> Self {
        match value {
            Json::Null => Secret::Null,
            Json::Str(_) => Secret::Str,
            _ => Secret::Other,
        }
    }
}

/// Where the items and entries of the arrays and objects being parsed
/// gather, innermost last, so each array or object is allocated once, at
/// its size, when it ends.
struct Scratch<'de> {
    items: Vec<Json<'de>>,
    entries: Vec<(Cow<'de, str>, Json<'de>)>,
}

impl Scratch<'_> {
    /// Sized for a process_info (18 keys) whose last key holds a bind_info
    /// row (6 keys) without growing.
    fn new() -> Self {
        Scratch {
            items: Vec::with_capacity(8),
            entries: Vec::with_capacity(32),
        }
    }
}

impl<'de> DeserializeSeed<'de> for &mut Scratch<'de> {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Scratch<'de> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }

    /// As `serde_json::Value` does: a non-finite float (never parsed) is null.
    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let start = self.items.len();
        while let Some(item) = seq.next_element_seed(&mut *self)? {
            self.items.push(item);
        }
        Ok(Json::Array(self.items.drain(start..).collect()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let start = self.entries.len();
        while let Some(key) = map.next_key_seed(Text)? {
            let value = map.next_value_seed(&mut *self)?;
            self.entries.push((key, value));
        }
        Ok(Json::Object(self.entries.drain(start..).collect()))
    }
}

/// A string, borrowed unless it had escapes (object keys).
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

/// A value that is parsed in full (so invalid JSON is refused) and dropped.
/// Not `IgnoredAny`: serde_json skips those without checking number range
/// or escapes.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Checked)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_entries_stay_small() {
        assert_eq!(std::mem::size_of::<Json<'_>>(), 24);
        assert_eq!(std::mem::size_of::<(Cow<'_, str>, Json<'_>)>(), 48);
    }
}
