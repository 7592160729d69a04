//! What a decided message gets: its [`Fate`] says what the deliverer
//! publishes before the ack, its [`Outcome`] how its request ended, for the
//! one counter and the one log line it is recorded with.
//!
//! Failures are not fates: what a failure does to a batch is its
//! [`Disposition`](super::disposition::Disposition).

use tracing::Span;

use crate::domain::Code;

/// What happens to one decided message before the batch is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Publish the reply, then acknowledge.
    Reply(Reply),
    /// Copy the message to the dead-letter queue, reply if a request_id is
    /// known, then acknowledge. The request counts as dead-lettered,
    /// whatever its reply's outcome.
    DeadLetter {
        reason: &'static str,
        detail: String,
        reply: Option<Reply>,
    },
}

/// A reply to publish, with how its request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub request_id: String,
    pub body: Vec<u8>,
    pub outcome: Outcome,
}

/// How a replied request ended: the `outcome` and `code` labels of
/// `procinst_requests_total` and of its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its processes were created by this delivery.
    Created { processes: usize },
    /// It was answered before; the stored reply is sent again.
    Stored,
    /// A final error reply; nothing was written.
    Rejected(Code),
}

impl Fate {
    /// The request's one counter increment and one log line, logged in the
    /// request's span (with its trace id), once its batch is acknowledged.
    pub fn record(&self, span: &Span) {
        let _in_request = span.enter();
        match self {
            Fate::Reply(Reply {
                outcome,
                request_id,
                ..
            }) => {
                let (label, code) = match outcome {
                    Outcome::Created { processes } => {
                        metrics::counter!("procinst_processes_created_total")
                            .increment(*processes as u64);
                        ("created", Code::Success)
                    }
                    Outcome::Stored => {
                        metrics::counter!("procinst_stored_replies_total").increment(1);
                        ("stored", Code::Success)
                    }
                    Outcome::Rejected(code) => ("rejected", *code),
                };
                span.record("request_id", request_id.as_str());
                tracing::debug!(%request_id, outcome = label, code = code.as_u32(), "answered");
                // Static labels: no allocation per request.
                metrics::counter!("procinst_requests_total", "outcome" => label, "code" => code.digits())
                    .increment(1);
            }
            Fate::DeadLetter {
                reason,
                detail,
                reply,
            } => {
                let request_id = reply
                    .as_ref()
                    .map(|r| r.request_id.as_str())
                    .unwrap_or("unknown");
                span.record("request_id", request_id);
                tracing::warn!(%request_id, reason, %detail, "dead-lettered");
                metrics::counter!("procinst_dead_letters_total", "reason" => *reason).increment(1);
                metrics::counter!("procinst_requests_total", "outcome" => "dead_lettered", "code" => "none")
                    .increment(1);
            }
        }
    }
}
