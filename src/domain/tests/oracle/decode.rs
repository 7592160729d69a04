use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::depth::{self, MAX_DEPTH};

use super::{Code, MAX_REQUEST_ID_CHARS, meaning};

/// Why a message cannot be read as a request. Never carries body content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnreadableReason {
    /// Larger than the limit; the body was not parsed.
    TooLarge { size: usize, limit: usize },
    /// Not UTF-8 JSON; the parser's message (position, not content).
    NotJson(String),
    /// Valid JSON, but not an object.
    NotObject,
    /// Neither the body nor `message_id` gives a usable request_id.
    NoRequestId,
}

/// A message to dead-letter, with the request_id to reply to when one is known.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub reason: UnreadableReason,
    pub request_id: Option<String>,
}

impl Unreadable {
    /// The reply code when a request_id is known: size has its own code.
    pub fn code(&self) -> Code {
        match self.reason {
            UnreadableReason::TooLarge { .. } => Code::TooLarge,
            _ => Code::BadJson,
        }
    }

    /// A bounded label for metrics and the dead-letter reason.
    pub fn reason_label(&self) -> &'static str {
        match self.reason {
            UnreadableReason::TooLarge { .. } => "too_large",
            UnreadableReason::NotJson(_) => "not_json",
            UnreadableReason::NotObject => "not_object",
            UnreadableReason::NoRequestId => "no_request_id",
        }
    }

    /// One human line for the reply message and `dlq list`.
    pub fn message(&self) -> String {
        match &self.reason {
            UnreadableReason::TooLarge { size, limit } => {
                format!("body is {size} bytes, limit {limit}")
            }
            UnreadableReason::NotJson(why) => format!("body is not valid JSON: {why}"),
            UnreadableReason::NotObject => "body is not a JSON object".to_owned(),
            UnreadableReason::NoRequestId => format!(
                "request_id: required, a string of 1..={MAX_REQUEST_ID_CHARS} chars \
                 (or the message_id property)"
            ),
        }
    }
}

/// Keys whose values must never be kept where a log line could reach them.
const SECRET_KEYS: [&str; 2] = ["bk_app_secret", "bk_token"];

/// A readable request, not yet validated.
pub struct Decoded {
    pub request_id: String,
    /// SHA-256 of the request's meaning, for the idempotency check (2).
    pub meaning: [u8; 32],
    /// The body; secret values are already scrubbed (type kept, content gone).
    pub object: Map<String, Value>,
}

/// By hand, so that no field of the body ever reaches a log line.
impl fmt::Debug for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoded")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// Reads a message body. `message_id` is the AMQP property, the fallback request_id.
pub fn decode(
    body: &[u8],
    message_id: Option<&str>,
    max_body_bytes: usize,
) -> Result<Decoded, Unreadable> {
    let fallback = message_id
        .filter(|id| usable_request_id(id))
        .map(str::to_owned);
    let unreadable = |reason| Unreadable {
        reason,
        request_id: fallback.clone(),
    };
    if body.len() > max_body_bytes {
        return Err(unreadable(UnreadableReason::TooLarge {
            size: body.len(),
            limit: max_body_bytes,
        }));
    }
    let value = parse(body).map_err(|why| unreadable(UnreadableReason::NotJson(why)))?;
    let Value::Object(mut object) = value else {
        return Err(unreadable(UnreadableReason::NotObject));
    };
    let from_body = match object.get("request_id") {
        Some(Value::String(id)) if usable_request_id(id) => Some(id.clone()),
        _ => None,
    };
    let Some(request_id) = from_body.or_else(|| fallback.clone()) else {
        return Err(unreadable(UnreadableReason::NoRequestId));
    };
    scrub_secrets(&mut object);
    let meaning = meaning::hash(&object);
    Ok(Decoded {
        request_id,
        meaning,
        object,
    })
}

/// Parses JSON as bk-cmdb's decoder accepts it: at most [`MAX_DEPTH`]
/// levels, numbers within the double range, no lone surrogates, the last of
/// duplicate keys.
fn parse(body: &[u8]) -> Result<Value, String> {
    if depth::deeper_than(body, MAX_DEPTH) {
        return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    // The depth was bounded above; serde_json's own guard stops at 127.
    deserializer.disable_recursion_limit();
    let value = Value::deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

fn usable_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_CHARS).contains(&id.chars().count())
}

/// Replaces secret strings by `""` and other non-null values by `false`:
/// validation still sees the right or wrong type, and nothing else.
fn scrub_secrets(object: &mut Map<String, Value>) {
    for key in SECRET_KEYS {
        if let Some(value) = object.get_mut(key) {
            *value = match value {
                Value::Null => Value::Null,
                Value::String(_) => Value::String(String::new()),
                _ => Value::Bool(false),
            };
        }
    }
}
