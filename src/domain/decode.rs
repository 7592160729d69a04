//! Check (1): is the message readable as a request at all?
//!
//! An unreadable message is dead-lettered (section 5), so this step decides
//! only what a dead-letter needs: the reason, and a request_id to reply to.

use std::fmt;

use super::depth::{self, MAX_DEPTH};
use super::prepared::Prepared;
use super::wire::{self, Json, Wire};
use super::{Code, MAX_REQUEST_ID_CHARS, Rejection, meaning, validate};

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

/// A readable request. Its validation (checks 3, 4, 6 and 7a) is already
/// done, from the borrowed body, because the body is not kept: see
/// [`Decoded::validate`].
pub struct Decoded {
    pub request_id: String,
    /// SHA-256 of the request's meaning, for the idempotency check (2).
    pub meaning: [u8; 32],
    /// The outcome of validation. Secrets were dropped at decode.
    pub(super) checked: Result<Prepared, Rejection>,
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
    let usable = |id: &&str| usable_request_id(id);
    let unreadable = |reason| Unreadable {
        reason,
        request_id: message_id.filter(usable).map(str::to_owned),
    };
    if body.len() > max_body_bytes {
        return Err(unreadable(UnreadableReason::TooLarge {
            size: body.len(),
            limit: max_body_bytes,
        }));
    }
    let wire = match parse(body) {
        Ok(Some(wire)) => wire,
        Ok(None) => return Err(unreadable(UnreadableReason::NotObject)),
        Err(why) => return Err(unreadable(UnreadableReason::NotJson(why))),
    };
    let from_body = match &wire.request_id {
        Some(Json::Str(id)) if usable_request_id(id) => Some(id.as_ref()),
        _ => None,
    };
    let Some(request_id) = from_body.or(message_id.filter(usable)) else {
        return Err(unreadable(UnreadableReason::NoRequestId));
    };
    let request_id = request_id.to_owned();
    let meaning = meaning::hash(&wire);
    let checked = validate::check(&request_id, &wire);
    Ok(Decoded {
        request_id,
        meaning,
        checked,
    })
}

/// Parses JSON as bk-cmdb's decoder accepts it: at most [`MAX_DEPTH`]
/// levels, numbers within the double range, no lone surrogates, the last of
/// duplicate keys.
fn parse(body: &[u8]) -> Result<Option<Wire<'_>>, String> {
    if depth::deeper_than(body, MAX_DEPTH) {
        return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
    }
    wire::parse(body).map_err(|e| e.to_string())
}

fn usable_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_CHARS).contains(&id.chars().count())
}
