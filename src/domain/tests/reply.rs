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
fn service_instance_rejections_reach_the_reply_with_their_codes_and_ids() {
    use crate::domain::{
        request_id_reused, service_instance_from_template, service_instance_not_found,
        service_instance_other_business,
    };
    let cases = [
        (
            service_instance_not_found(48, "t-1"),
            1199019,
            "48",
            "\"t-1\"",
        ),
        (
            service_instance_other_business(48, 2),
            1199006,
            "48",
            "bk_biz_id 2",
        ),
        (
            service_instance_from_template(48, 9),
            1108035,
            "48",
            "template 9",
        ),
        (
            request_id_reused("r-1"),
            1300001,
            "request_id: \"r-1\"",
            "another meaning",
        ),
    ];
    for (rejection, code, names, says) in cases {
        let reply: serde_json::Value =
            serde_json::from_slice(&reply::failure("r-1", &rejection)).unwrap();
        assert_eq!(reply["code"], code, "{reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(
            message.contains(names) && message.contains(says),
            "{message}"
        );
    }
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
    // Real decoder errors, from bodies that span lines.
    let bodies: [&[u8]; 5] = [
        b"{\n  \"request_id\": \"a\",\n  oops\n}",
        b"\n[1,\n 2]\n",
        b"{\"request_id\": \"\xff\xfe\"}",
        b"{\n\"bk_biz_id\": 1\n}",
        &[b' '; 2000],
    ];
    for body in bodies {
        let Err(unreadable) = crate::domain::decode(body, None, 1000) else {
            panic!("{:?} is readable", String::from_utf8_lossy(body));
        };
        let message = unreadable.message();
        assert!(!message.is_empty() && !message.contains('\n'), "{message}");
    }
    assert!(matches!(
        crate::domain::decode(&[b' '; 2000], None, 1000),
        Err(crate::domain::Unreadable {
            reason: UnreadableReason::TooLarge { .. },
            ..
        })
    ));
}
