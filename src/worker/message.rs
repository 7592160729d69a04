//! One message on its way from delivery to ack, and what it gets.
//!
//! The collector makes a [`Message`] of each delivery; the decide stage
//! [parses](Message::parse) its body and gives it a [`Fate`]; the deliver
//! stage publishes what the fate calls for and acks. The delivery, its
//! span, what parsing made of it and its fate travel in one record, so a
//! fate cannot be separated from the delivery it answers.
//!
//! A fate says what is published for the message before the ack, its
//! [`Outcome`] how its request ended, for the one counter and the one log
//! line it is recorded with. Failures are not fates: what a failure does
//! to a batch is its [`Disposition`](super::disposition).

use std::time::Duration;

use lapin::message::Delivery;
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::sources::Sourced;
use crate::broker::trace_context;
use crate::config::Lane;
use crate::domain::{self, Code, Decoded, Rejection, Request, Unreadable, reply};

/// One delivery on its way to its ack.
pub struct Message {
    pub delivery: Delivery,
    /// Which of the lane's queues it came from: its ack goes through that
    /// queue's channel.
    pub source: usize,
    /// The request's span, in the trace its publisher started.
    pub span: Span,
    /// What parsing made of the body: `None` until parsed, and for a body
    /// that cannot be read (its fate is then a dead letter).
    pub parsed: Option<Parsed>,
    /// What the message gets; set by parsing (unreadable) or by the
    /// decision. A batch is delivered only once every message has one.
    pub fate: Option<Fate>,
}

/// A decided message: its delivery, its span and its fate, for the deliver
/// stage.
pub struct Answered {
    pub delivery: Delivery,
    pub source: usize,
    pub span: Span,
    pub fate: Fate,
}

/// A readable message: the request as decoded (check 1) and as checked on
/// its own (checks 3, 4, 6 and 7a).
pub struct Parsed {
    pub decoded: Decoded,
    pub checked: Result<Request, Rejection>,
}

/// Settings that parsing and deciding depend on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub retention: Duration,
}

impl Message {
    /// A delivery as received, in a span of its own: a child of the
    /// publisher's span when the message carries `traceparent`, else the
    /// root of a new trace. The span's `trace_id` is a field, so that every
    /// log line inside it names the trace; `request_id` is recorded once
    /// the body is parsed.
    pub fn received(Sourced { source, delivery }: Sourced) -> Self {
        let span = tracing::info_span!(
            parent: None,
            "request",
            request_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        let parent = trace_context::extract(delivery.properties.headers().as_ref());
        // Fails only when spans are off (no subscriber); there is no trace then.
        let _ = span.set_parent(parent);
        let trace_id = span.context().span().span_context().trace_id();
        span.record("trace_id", tracing::field::display(trace_id));
        Self {
            delivery,
            source,
            span,
            parsed: None,
            fate: None,
        }
    }

    /// Parses the body: decodes it (size, JSON, object, `request_id`) and
    /// checks a readable request on its own. An unreadable body gets its
    /// dead-letter fate at once. Pure and deterministic, and done once: a
    /// batch retried is not parsed again.
    pub fn parse(&mut self, limits: Limits) {
        let message_id = self
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str());
        match domain::decode(&self.delivery.data, message_id, limits.max_body_bytes) {
            Ok(decoded) => {
                let checked = decoded.validate();
                self.parsed = Some(Parsed { decoded, checked });
            }
            Err(why) => self.fate = Some(dead_letter(&why)),
        }
    }

    /// The message with its fate; `None` while it has none.
    pub fn answered(self) -> Option<Answered> {
        Some(Answered {
            fate: self.fate?,
            delivery: self.delivery,
            source: self.source,
            span: self.span,
        })
    }
}

/// The last delivery of each source among `messages` (in delivery order):
/// a `multiple` ack or nack through each covers exactly them, as batches
/// are acked one after another in delivery order.
pub fn last_of_each_source(messages: &[Answered]) -> Vec<&lapin::message::Delivery> {
    let mut lasts: Vec<(usize, &lapin::message::Delivery)> = Vec::new();
    for message in messages {
        match lasts
            .iter_mut()
            .find(|(source, _)| *source == message.source)
        {
            Some(last) => last.1 = &message.delivery,
            None => lasts.push((message.source, &message.delivery)),
        }
    }
    lasts.into_iter().map(|(_, delivery)| delivery).collect()
}

/// The fate of a body that cannot be read: a dead letter, with a reply
/// when its `request_id` could be read.
fn dead_letter(unreadable: &Unreadable) -> Fate {
    let code = unreadable.code();
    let detail = unreadable.message();
    let reply = unreadable.request_id.as_ref().map(|id| Reply {
        request_id: id.clone(),
        body: reply::failure(id, &Rejection::new(code, detail.clone())),
        outcome: Outcome::Rejected(code),
    });
    Fate::DeadLetter {
        reason: unreadable.reason_label(),
        detail,
        reply,
    }
}

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
    pub fn record(&self, span: &Span, lane: Lane) {
        let lane = lane.as_str();
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
                tracing::debug!(%request_id, lane, outcome = label, code = code.as_u32(), "answered");
                // Static labels: no allocation per request.
                metrics::counter!("procinst_requests_total", "outcome" => label, "code" => code.digits(), "lane" => lane)
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
                tracing::warn!(%request_id, lane, reason, %detail, "dead-lettered");
                metrics::counter!("procinst_dead_letters_total", "reason" => *reason).increment(1);
                metrics::counter!("procinst_requests_total", "outcome" => "dead_lettered", "code" => "none", "lane" => lane)
                    .increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use lapin::message::Delivery;
    use tracing::Span;

    use super::*;

    fn answered(source: usize, tag: u64) -> Answered {
        Answered {
            delivery: Delivery::mock(tag, "".into(), "q".into(), false, Vec::new()),
            source,
            span: Span::none(),
            fate: Fate::Reply(Reply {
                request_id: format!("r-{source}-{tag}"),
                body: Vec::new(),
                outcome: Outcome::Stored,
            }),
        }
    }

    #[test]
    fn each_source_is_acked_through_its_own_last_delivery() {
        // Sources taken in turn: each channel numbers its own deliveries.
        let shipment = [
            answered(0, 1),
            answered(2, 1),
            answered(0, 2),
            answered(1, 1),
            answered(2, 2),
            answered(2, 3),
        ];
        let lasts: Vec<u64> = last_of_each_source(&shipment)
            .iter()
            .map(|d| d.delivery_tag)
            .collect();
        // Source 0 through tag 2, source 2 through tag 3, source 1 through 1.
        assert_eq!(lasts, [2, 3, 1]);
        assert!(last_of_each_source(&[]).is_empty());
    }
}
