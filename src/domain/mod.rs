//! The request as types: parsing, validation, error codes and reply bytes. No I/O.
//!
//! # Layout
//!
//! - [`code`]: the contract's result codes and their metric labels.
//! - [`rejection`]: a final "no" (code + message naming the path).
//! - [`wire`]: the body as sent, borrowed: the top-level keys as slots,
//!   their values as borrowed JSON trees; no `serde_json::Value`.
//! - [`decode`]: check (1), is the body a readable request at all; also the
//!   request's meaning hash, computed by [`meaning`], and the checks of
//!   [`validate`], run while the borrowed body is at hand.
//! - [`validate`]: checks (3) top-level keys and types and (4) the number of
//!   processes, turning a [`Decoded`] into a [`Request`].
//! - [`process_info`] and [`bind_info`]: check (6), one process at a time.
//! - [`uniqueness`]: check (7), within the request and against the database.
//! - [`prepared`]: the outcome of the checks, compact, between decode and validate.
//! - [`request`]: the validated request, what the store writes.
//! - [`reply`]: the exact envelope bytes that are published and stored.
//!
//! Checks (2) and (5) need the database and live in the worker; they build
//! their answers with the helpers in [`rejection`].

mod bind_info;
mod code;
mod decode;
mod depth;
mod meaning;
mod prepared;
mod process_info;
mod rejection;
pub mod reply;
mod request;
mod uniqueness;
mod validate;
mod wire;

#[cfg(test)]
mod tests;

pub use code::Code;
pub use decode::{Decoded, Unreadable, UnreadableReason, decode};
pub use rejection::{
    Rejection, request_id_reused, service_instance_from_template, service_instance_not_found,
    service_instance_other_business,
};
pub use request::{BindInfo, Process, Request};
pub use uniqueness::Taken;

/// Upper bound on processes in one request, from the seed API (error 1199035 above it).
pub const MAX_PROCESSES: usize = 100;

/// Longest accepted `request_id` (in chars), so it fits an index and a log line.
pub const MAX_REQUEST_ID_CHARS: usize = 128;
