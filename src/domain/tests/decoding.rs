use super::*;
use crate::domain::{Unreadable, UnreadableReason};

fn unreadable(body: &[u8], message_id: Option<&str>) -> Unreadable {
    decode(body, message_id, LIMIT).unwrap_err()
}

fn nested_arrays(depth: usize) -> String {
    format!(
        r#"{{"request_id":"r","x":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[test]
fn body_over_the_limit_is_too_large_and_not_parsed() {
    let body = br#"{"request_id":"from-body"}"#;
    let err = decode(body, Some("m-1"), 10).unwrap_err();
    assert_eq!(
        err.reason,
        UnreadableReason::TooLarge {
            size: body.len(),
            limit: 10
        }
    );
    assert_eq!(err.request_id.as_deref(), Some("m-1"));
    assert_eq!(err.code(), Code::TooLarge);
    assert_eq!(err.reason_label(), "too_large");
    assert_eq!(
        err.message(),
        format!("body is {} bytes, limit 10", body.len())
    );
}

#[test]
fn body_at_the_limit_is_read() {
    let body = br#"{"request_id":"r"}"#;
    assert!(decode(body, None, body.len()).is_ok());
}

#[test]
fn not_utf8_is_not_json() {
    let err = unreadable(b"{\"request_id\":\"\xff\"}", Some("m"));
    assert!(matches!(err.reason, UnreadableReason::NotJson(_)));
    assert_eq!(
        (err.code(), err.reason_label()),
        (Code::BadJson, "not_json")
    );
    assert_eq!(err.request_id.as_deref(), Some("m"));
}

/// The object counts as the first level: 127 arrays inside it make 128
/// levels, the deepest accepted; 129 levels are not valid JSON.
#[test]
fn nesting_deeper_than_128_levels_is_not_json() {
    assert!(decode(nested_arrays(127).as_bytes(), None, LIMIT).is_ok());
    let err = unreadable(nested_arrays(128).as_bytes(), None);
    assert!(
        matches!(err.reason, UnreadableReason::NotJson(_)),
        "{err:?}"
    );
    let far = unreadable(nested_arrays(100_000).as_bytes(), None);
    assert!(
        matches!(far.reason, UnreadableReason::NotJson(_)),
        "no stack overflow"
    );
}

#[test]
fn number_beyond_double_range_is_not_json() {
    let err = unreadable(br#"{"request_id":"r","bk_biz_id":1e400}"#, None);
    assert!(matches!(err.reason, UnreadableReason::NotJson(_)));
}

#[test]
fn unpaired_surrogate_is_not_json() {
    let err = unreadable(br#"{"request_id":"r","x":"\ud800"}"#, None);
    assert!(matches!(err.reason, UnreadableReason::NotJson(_)));
}

#[test]
fn not_json_message_carries_no_content() {
    let err = unreadable(br#"{"bk_token":"s3cret" oops"#, None);
    assert!(!err.message().contains("s3cret"), "{}", err.message());
}

#[test]
fn json_that_is_not_an_object_is_not_object() {
    let err = unreadable(b"[1,2]", Some("m"));
    assert_eq!(err.reason, UnreadableReason::NotObject);
    assert_eq!(
        (err.code(), err.reason_label()),
        (Code::BadJson, "not_object")
    );
    assert_eq!(err.request_id.as_deref(), Some("m"));
}

#[test]
fn request_id_comes_from_the_body_first() {
    let decoded = decode(br#"{"request_id":"body"}"#, Some("prop"), LIMIT).unwrap();
    assert_eq!(decoded.request_id, "body");
}

#[test]
fn request_id_falls_back_to_message_id() {
    for body in [
        &br#"{}"#[..],
        br#"{"request_id":""}"#,
        br#"{"request_id":7}"#,
    ] {
        let decoded = decode(body, Some("prop"), LIMIT).unwrap();
        assert_eq!(decoded.request_id, "prop");
    }
}

#[test]
fn request_id_of_128_chars_is_usable_and_129_is_not() {
    let ok = "é".repeat(128);
    let body = serde_json::to_vec(&json!({ "request_id": ok })).unwrap();
    assert_eq!(decode(&body, None, LIMIT).unwrap().request_id, ok);
    let long = "é".repeat(129);
    let body = serde_json::to_vec(&json!({ "request_id": long })).unwrap();
    let err = unreadable(&body, Some(&long));
    assert_eq!(err.reason, UnreadableReason::NoRequestId);
    assert_eq!(err.request_id, None);
    assert_eq!(
        (err.code(), err.reason_label()),
        (Code::BadJson, "no_request_id")
    );
}

#[test]
fn empty_message_id_is_not_usable() {
    let err = unreadable(b"{}", Some(""));
    assert_eq!(err.reason, UnreadableReason::NoRequestId);
    let err = unreadable(b"[]", Some(""));
    assert_eq!(err.request_id, None);
}

#[test]
fn duplicate_keys_take_the_last_value() {
    let body = br#"{"request_id":"a","request_id":"b","bk_biz_id":"x","bk_biz_id":3,
        "service_instance_id":1,"processes":[{"process_info":{"bk_process_name":"p","bk_func_name":"f"}}]}"#;
    let decoded = decode(body, None, LIMIT).unwrap();
    assert_eq!(decoded.request_id, "b");
    assert_eq!(decoded.validate().unwrap().bk_biz_id, 3);
}

#[test]
fn debug_of_decoded_shows_no_secret() {
    let decoded = decode(SEED.as_bytes(), Some("m"), LIMIT).unwrap();
    let shown = format!("{decoded:?}");
    assert!(shown.contains("\"m\""), "{shown}");
    assert!(
        !shown.contains("xxx") && !shown.contains("processes"),
        "{shown}"
    );
}

#[test]
fn secrets_are_scrubbed_from_the_kept_object() {
    let mut request = request_with(&[info("p", "f")]);
    request["bk_app_secret"] = json!("s3cret");
    request["bk_token"] = json!("t0ken");
    let body = serde_json::to_vec(&request).unwrap();
    let decoded = decode(&body, None, LIMIT).unwrap();
    let kept = format!("{:?}", decoded.checked);
    assert!(
        !kept.contains("s3cret") && !kept.contains("t0ken"),
        "{kept}"
    );
}
