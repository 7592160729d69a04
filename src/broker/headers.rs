//! Headers procinst puts on the dead-letter copies it publishes, and reading
//! them (and RabbitMQ's own `x-death`) back for `procinst dlq`.

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable},
};

/// Why procinst dead-lettered the message (`too_large`, `not_json`, ...).
pub const REASON: &str = "x-procinst-reason";
/// A one-line explanation, free of secrets.
pub const DETAIL: &str = "x-procinst-detail";
/// How many times procinst dead-lettered this message (replays included).
pub const COUNT: &str = "x-procinst-death-count";
/// Unix seconds of the first and of the latest dead-lettering by procinst.
pub const FIRST_DEATH: &str = "x-procinst-first-death";
pub const LAST_DEATH: &str = "x-procinst-last-death";

/// The headers of a dead-letter copy, carrying forward the count and first
/// time from an earlier death of the same message.
pub fn dead_letter_headers(
    original: Option<&FieldTable>,
    reason: &str,
    detail: &str,
    now_unix: u64,
) -> FieldTable {
    let mut headers = original.map(without_count).unwrap_or_default();
    let count = original.and_then(|h| int(h, COUNT)).unwrap_or(0) + 1;
    let first = original
        .and_then(|h| int(h, FIRST_DEATH))
        .unwrap_or(now_unix as i64);
    headers.insert(REASON.into(), AMQPValue::LongString(reason.into()));
    headers.insert(
        DETAIL.into(),
        AMQPValue::LongString(one_line(detail).as_str().into()),
    );
    headers.insert(COUNT.into(), AMQPValue::LongLongInt(count));
    headers.insert(FIRST_DEATH.into(), AMQPValue::LongLongInt(first));
    headers.insert(LAST_DEATH.into(), AMQPValue::LongLongInt(now_unix as i64));
    headers
}

/// The broker's count of a message's deliveries (quorum queues).
pub const DELIVERY_COUNT: &str = "x-delivery-count";

/// `properties` without [`DELIVERY_COUNT`]: a copy procinst publishes
/// (a replay, a refreshed dead letter) starts with no deliveries.
pub fn without_delivery_count(properties: BasicProperties) -> BasicProperties {
    match properties.headers() {
        Some(h) if h.inner().contains_key(DELIVERY_COUNT) => {
            let headers = without_count(h);
            properties.with_headers(headers)
        }
        _ => properties,
    }
}

fn without_count(headers: &FieldTable) -> FieldTable {
    let mut kept = FieldTable::default();
    for (key, value) in headers.inner() {
        if key.as_str() != DELIVERY_COUNT {
            kept.insert(key.clone(), value.clone());
        }
    }
    kept
}

/// `text` with its line breaks and other control characters turned into
/// spaces: database errors carry DETAIL and HINT lines, and a header is read
/// by `dlq list` and log tools one line per message.
fn one_line(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A header as an integer, whatever integer type the sender chose.
pub fn int(headers: &FieldTable, key: &str) -> Option<i64> {
    match headers.inner().get(key)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// A header as text.
pub fn text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// What RabbitMQ's `x-death` header says of the first entry (the most
/// recent death): reason, count, and time in unix seconds.
pub fn x_death(headers: &FieldTable) -> Option<(String, i64, Option<i64>)> {
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(entry) = deaths.as_slice().first()? else {
        return None;
    };
    let reason = text(entry, "reason").unwrap_or_else(|| "unknown".to_owned());
    let count = int(entry, "count").unwrap_or(1);
    let time = int(entry, "time");
    Some((reason, count, time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_death_counts_up_and_keeps_the_first_time() {
        let first = dead_letter_headers(None, "not_json", "bad", 100);
        assert_eq!(int(&first, COUNT), Some(1));
        let second = dead_letter_headers(Some(&first), "not_json", "bad", 200);
        assert_eq!(int(&second, COUNT), Some(2));
        assert_eq!(int(&second, FIRST_DEATH), Some(100));
        assert_eq!(int(&second, LAST_DEATH), Some(200));
        assert_eq!(text(&second, REASON).as_deref(), Some("not_json"));
    }

    #[test]
    fn a_dead_letter_copy_does_not_carry_the_request_queues_delivery_count() {
        let mut original = FieldTable::default();
        original.insert(DELIVERY_COUNT.into(), AMQPValue::LongLongInt(9));
        let copy = dead_letter_headers(Some(&original), "not_json", "bad", 100);
        assert_eq!(int(&copy, DELIVERY_COUNT), None);
    }

    #[test]
    fn a_copy_drops_the_brokers_delivery_count_and_keeps_the_rest() {
        let mut headers = dead_letter_headers(None, "not_json", "bad", 100);
        headers.insert(DELIVERY_COUNT.into(), AMQPValue::LongLongInt(12));
        let copy = without_delivery_count(
            BasicProperties::default()
                .with_headers(headers)
                .with_message_id("m-1".into()),
        );
        let kept = copy.headers().as_ref().expect("headers");
        assert_eq!(int(kept, DELIVERY_COUNT), None);
        assert_eq!(text(kept, REASON).as_deref(), Some("not_json"));
        assert_eq!(copy.message_id().as_ref().map(|m| m.as_str()), Some("m-1"));
    }

    #[test]
    fn the_detail_is_one_line() {
        let detail = "db error: ERROR: poisoned row\nDETAIL: row 5\r\nHINT:\tfix it";
        let headers = dead_letter_headers(None, "store_rejected", detail, 100);
        assert_eq!(
            text(&headers, DETAIL).as_deref(),
            Some("db error: ERROR: poisoned row DETAIL: row 5 HINT: fix it")
        );
    }
}
