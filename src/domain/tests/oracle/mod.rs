//! The decoder as it was when requests were read into a `serde_json::Value`,
//! kept as the reference that the borrowed decoder must agree with
//! (`props::the_borrowed_decoder_agrees_with_the_value_decoder`): stored
//! meaning hashes and every message depend on it.

#![allow(dead_code, clippy::all)]

mod bind_info;
mod decode;
mod depth;
mod meaning;
mod process_info;
mod uniqueness;
mod validate;

use crate::domain::rejection;
use crate::domain::{Code, MAX_PROCESSES, MAX_REQUEST_ID_CHARS, Process, Rejection, Request};

pub use decode::{Decoded, decode};
