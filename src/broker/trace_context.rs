//! W3C Trace Context (`traceparent`, `tracestate`) in AMQP message headers:
//! read from a request, written on its reply and dead-letter copy. The
//! propagator is the global one `telemetry::init` installs.

use lapin::types::{AMQPValue, FieldTable};
use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
};

/// The context a message's headers carry; empty when they carry none, so
/// that a span parented on it starts a new trace.
pub fn extract(headers: Option<&FieldTable>) -> Context {
    match headers {
        Some(headers) => global::get_text_map_propagator(|p| p.extract(&Reader(headers))),
        None => Context::new(),
    }
}

/// Writes `cx` into `headers`, replacing any trace headers already there.
pub fn inject(cx: &Context, headers: &mut FieldTable) {
    global::get_text_map_propagator(|p| p.inject_context(cx, &mut Writer(headers)));
}

struct Reader<'a>(&'a FieldTable);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

struct Writer<'a>(&'a mut FieldTable);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0
            .insert(key.into(), AMQPValue::LongString(value.into()));
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_header_round_trips() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString(PARENT.into()));
        headers.insert(
            "tracestate".into(),
            AMQPValue::LongString("vendor=x".into()),
        );
        let cx = extract(Some(&headers));
        let span = cx.span();
        let incoming = span.span_context();
        assert!(incoming.is_valid() && incoming.is_remote());
        assert_eq!(
            incoming.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut out = FieldTable::default();
        inject(&cx, &mut out);
        assert_eq!(
            out.inner().get("traceparent"),
            Some(&AMQPValue::LongString(PARENT.into()))
        );
        assert_eq!(
            out.inner().get("tracestate"),
            Some(&AMQPValue::LongString("vendor=x".into()))
        );
    }

    #[test]
    fn no_headers_mean_no_parent() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        assert!(!extract(None).span().span_context().is_valid());
        let mut junk = FieldTable::default();
        junk.insert(
            "traceparent".into(),
            AMQPValue::LongString("nonsense".into()),
        );
        assert!(!extract(Some(&junk)).span().span_context().is_valid());
    }
}
