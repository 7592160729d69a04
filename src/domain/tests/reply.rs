use super::*;
use crate::domain::{UnreadableReason, reply};

#[test]
fn success_bytes_are_exact() {
    let bytes = reply::success("r-1", &[64, 65]);
    let expected = r#"{"result":true,"code":0,"message":"success","permission":null,"request_id":"r-1","data":[64,65]}"#;
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);
}

#[test]
fn failure_bytes_are_exact() {
    let rejection = Rejection::new(Code::InvalidValue, "processes[0].process_info.user: \"x\"");
    let bytes = reply::failure("r-\"2", &rejection);
    let expected = r#"{"result":false,"code":1199011,"message":"processes[0].process_info.user: \"x\"","permission":null,"request_id":"r-\"2","data":null}"#;
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);
}

#[test]
fn codes_have_contract_numbers_and_distinct_labels() {
    let numbers: Vec<u32> = Code::ALL.iter().map(|c| c.as_u32()).collect();
    let expected = [
        0, 1199000, 1199010, 1199011, 1199035, 1199019, 1199006, 1108035, 1199014, 1300001, 1300002,
    ];
    assert_eq!(numbers, expected);
    let labels: std::collections::HashSet<_> = Code::ALL.iter().map(|c| c.label()).collect();
    assert_eq!(labels.len(), Code::ALL.len());
}

#[test]
fn service_instance_rejections_have_their_codes() {
    use crate::domain::{
        request_id_reused, service_instance_from_template, service_instance_not_found,
        service_instance_other_business,
    };
    assert_eq!(
        service_instance_not_found(48, "0").code,
        Code::ServiceInstanceNotFound
    );
    assert_eq!(
        service_instance_other_business(48, 2).code,
        Code::WrongBusiness
    );
    assert_eq!(
        service_instance_from_template(48, 9).code,
        Code::FromTemplate
    );
    let reused = request_id_reused("r-1");
    assert_eq!(reused.code, Code::RequestIdReused);
    assert!(
        reused.message.starts_with("request_id: \"r-1\""),
        "{}",
        reused.message
    );
}

#[test]
fn long_values_are_cut_in_messages() {
    let err = crate::domain::request_id_reused(&"x".repeat(128));
    assert!(
        err.message.contains(&format!("\"{}…\"", "x".repeat(64))),
        "{}",
        err.message
    );
}

#[test]
fn unreadable_messages_are_one_line() {
    let reasons = [
        UnreadableReason::TooLarge {
            size: 2_000_000,
            limit: 1_048_576,
        },
        UnreadableReason::NotJson("EOF while parsing at line 1 column 1".into()),
        UnreadableReason::NotObject,
        UnreadableReason::NoRequestId,
    ];
    for reason in reasons {
        let message = crate::domain::Unreadable {
            reason,
            request_id: None,
        }
        .message();
        assert!(!message.is_empty() && !message.contains('\n'), "{message}");
    }
}
