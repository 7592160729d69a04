//! The reply envelope, as the exact bytes that are published and stored.
//!
//! Built once from a struct so the field order (result, code, message,
//! permission, request_id, data) and the compact form never drift: a stored
//! reply is resent byte for byte.

use serde::Serialize;

use super::{Code, Rejection};

#[derive(Serialize)]
struct Envelope<'a> {
    result: bool,
    code: u32,
    message: &'a str,
    /// Always null; kept because bk-cmdb clients expect the key.
    permission: Option<()>,
    request_id: &'a str,
    data: Option<&'a [i64]>,
}

/// The reply for created processes, their ids in input order.
pub fn success(request_id: &str, ids: &[i64]) -> Vec<u8> {
    encode(&Envelope {
        result: true,
        code: Code::Success.as_u32(),
        message: "success",
        permission: None,
        request_id,
        data: Some(ids),
    })
}

/// The reply for a refused request.
pub fn failure(request_id: &str, rejection: &Rejection) -> Vec<u8> {
    encode(&Envelope {
        result: false,
        code: rejection.code.as_u32(),
        message: &rejection.message,
        permission: None,
        request_id,
        data: None,
    })
}

/// Keys, punctuation and the code of an envelope, in bytes.
const FRAME: usize = 96;

fn encode(envelope: &Envelope<'_>) -> Vec<u8> {
    // Sized up front (escapes aside), so the reply is written without growing.
    let ids = envelope.data.map_or(0, |ids| ids.len() * 20);
    let size = FRAME + envelope.message.len() + envelope.request_id.len() + ids;
    let mut out = Vec::with_capacity(size);
    // Strings, bools and integers into a Vec: serde_json has no failure path here.
    serde_json::to_writer(&mut out, envelope).expect("an envelope always serializes");
    out
}
