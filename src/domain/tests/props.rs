//! Property tests: whatever arrives, the domain answers with a contract code
//! and never panics.

use proptest::prelude::*;

use super::*;

/// Codes the pure domain may answer with; (2) and (5) belong to the worker.
const DOMAIN_CODES: [Code; 6] = [
    Code::BadJson,
    Code::MissingKey,
    Code::InvalidValue,
    Code::TooManyProcesses,
    Code::Duplicate,
    Code::TooLarge,
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![0i64, 1, -1, 30, 600, 10_000, 65_535]).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop::sample::select(vec!["", " ", "80", "1-2", "1", "::1", "a\u{0}", "x"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys the validator knows, plus noise, so that deep paths are reached.
fn key() -> impl Strategy<Value = String> {
    let known = vec![
        "bk_process_name",
        "bk_func_name",
        "bk_start_param_regex",
        "user",
        "start_cmd",
        "proc_num",
        "priority",
        "timeout",
        "bk_start_check_secs",
        "auto_start",
        "bind_info",
        "enable",
        "ip",
        "port",
        "protocol",
        "template_row_id",
        "row_id",
        "process_info",
    ];
    prop_oneof![
        prop::sample::select(known).prop_map(str::to_owned),
        "[a-z_]{0,8}"
    ]
}

/// A plausible request: the right top-level keys, values partly arbitrary.
fn request_shape() -> impl Strategy<Value = Value> {
    let info = prop::collection::btree_map(key(), any_json(), 0..8).prop_map(|mut m| {
        m.entry("bk_process_name".into())
            .or_insert_with(|| json!("p"));
        m.entry("bk_func_name".into()).or_insert_with(|| json!("f"));
        json!({"process_info": Value::Object(m.into_iter().collect())})
    });
    let item = prop_oneof![4 => info, 1 => any_json()];
    let processes =
        prop_oneof![4 => prop::collection::vec(item, 0..4).prop_map(Value::from), 1 => any_json()];
    let id = prop_oneof![3 => Just(json!(1)), 1 => any_json()];
    (id.clone(), id, processes, any_json()).prop_map(|(biz, si, processes, extra)| {
        json!({"request_id": "r", "bk_biz_id": biz, "service_instance_id": si,
               "processes": processes, "bk_username": extra})
    })
}

fn answer(body: &[u8]) -> Option<Code> {
    match decode(body, Some("m"), 4096) {
        Err(unreadable) => Some(unreadable.code()),
        Ok(decoded) => match decoded.validate() {
            Err(rejection) => Some(rejection.code),
            Ok(request) => request.processes.err().map(|r| r.code),
        },
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Some(code) = answer(&body) {
            prop_assert!(DOMAIN_CODES.contains(&code), "{code:?}");
        }
    }

    #[test]
    fn arbitrary_json_never_panics(value in any_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        if let Some(code) = answer(&body) {
            prop_assert!(DOMAIN_CODES.contains(&code), "{code:?}");
        }
    }

    #[test]
    fn plausible_requests_get_a_contract_code(value in request_shape()) {
        let body = serde_json::to_vec(&value).unwrap();
        if let Some(code) = answer(&body) {
            prop_assert!(DOMAIN_CODES.contains(&code), "{code:?}");
        }
    }
}

/// JSON text as a caller may write it, beyond what serde_json writes:
/// duplicate keys, escapes in keys and strings, numbers in every form,
/// some of them refused (beyond the double range, lone surrogates).
fn raw_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        // Refused by the parser wherever they stand: rare, or little else is reached.
        1 => prop::sample::select(vec!["1e400", "\"\\ud800\""]).prop_map(str::to_owned),
        120 => prop::sample::select(vec![
            "null",
            "true",
            "false",
            "0",
            "-0",
            "1",
            "-1",
            "30",
            "1.0",
            "30.5",
            "-0.0",
            "1e2",
            "1E-7",
            "2.5e+300",
            "-1e19",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "123456789012345678901234",
            "-123456789012345678901234",
            "\"\"",
            "\" \"",
            "\"80\"",
            "\"1-2\"",
            "\"1\"",
            "\"::1\"",
            "\"10.0.0.1\"",
            "\"a\\u0000b\"",
            "\"\\ud83d\\ude00\"",
            "\"\\/\\n\\t\\u00e9\"",
            "\" p \"",
            "\"\\u0020f\"",
        ])
        .prop_map(str::to_owned),
        40 => "\\PC{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        20 => any::<i64>().prop_map(|n| n.to_string()),
        20 => any::<f64>().prop_map(|n| serde_json::to_string(&n).unwrap()),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((raw_key(), inner), 0..8).prop_map(|entries| {
                let entries: Vec<String> = entries
                    .into_iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }),
        ]
    })
}

/// A key as JSON text, sometimes escaped, sometimes a known one.
fn raw_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => key().prop_map(|k| serde_json::to_string(&k).unwrap()),
        1 => key().prop_map(|k| format!("\"{}\"", k.replace('_', "\\u005f"))),
        1 => prop::sample::select(vec!["\"request_id\"", "\"bk_biz_id\"", "\"processes\"",
            "\"bk_supplier_account\"", "\"service_instance_id\"", "\"bk_token\"", "\"\\u0000\"", "\"\""])
            .prop_map(str::to_owned),
    ]
}

/// A request-shaped body as text: known keys given zero to two times.
fn raw_request() -> impl Strategy<Value = String> {
    let info = prop::collection::vec((raw_key(), raw_json()), 0..10).prop_map(|entries| {
        let mut fields = vec![
            r#""bk_process_name":"p""#.to_owned(),
            r#""bk_func_name":"f""#.to_owned(),
        ];
        fields.extend(entries.into_iter().map(|(k, v)| format!("{k}:{v}")));
        format!(r#"{{"process_info":{{{}}}}}"#, fields.join(","))
    });
    let item = prop_oneof![4 => info, 1 => raw_json()];
    let processes = prop_oneof![
        4 => prop::collection::vec(item, 0..4).prop_map(|items| format!("[{}]", items.join(","))),
        1 => raw_json(),
    ];
    let top = prop::collection::vec((raw_key(), raw_json()), 0..3);
    (
        processes,
        top,
        prop::sample::select(vec!["1", "2", "3", "7", "\"1\"", "0"]),
    )
        .prop_map(|(processes, top, id)| {
            let mut fields = vec![
                r#""request_id":"r""#.to_owned(),
                format!(r#""bk_biz_id":{id}"#),
                r#""service_instance_id":48"#.to_owned(),
                format!(r#""processes":{processes}"#),
            ];
            fields.extend(top.into_iter().map(|(k, v)| format!("{k}:{v}")));
            format!("{{{}}}", fields.join(","))
        })
}

/// The borrowed decoder answers exactly as the `serde_json::Value` one did.
#[track_caller]
fn assert_agrees(body: &[u8]) {
    let new = decode(body, Some("m"), 4096);
    let old = super::oracle::decode(body, Some("m"), 4096);
    match (new, old) {
        (Ok(new), Ok(old)) => {
            assert_eq!(new.request_id, old.request_id);
            assert_eq!(
                new.meaning,
                old.meaning,
                "meaning of {}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(
                new.validate(),
                old.validate(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        (Err(new), Err(old)) => {
            assert_eq!(new.request_id, old.request_id);
            assert_eq!(format!("{:?}", new.reason), format!("{:?}", old.reason));
        }
        (new, old) => panic!(
            "new {:?} old {:?}: {}",
            new.map(|_| ()),
            old.map(|_| ()),
            String::from_utf8_lossy(body)
        ),
    }
}

proptest! {
    #[test]
    fn the_borrowed_decoder_agrees_with_the_value_decoder_on_text(body in raw_request()) {
        assert_agrees(body.as_bytes());
    }

    #[test]
    fn the_borrowed_decoder_agrees_with_the_value_decoder_on_any_text(body in raw_json()) {
        assert_agrees(body.as_bytes());
    }

    #[test]
    fn the_borrowed_decoder_agrees_with_the_value_decoder(value in request_shape()) {
        assert_agrees(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn the_borrowed_decoder_agrees_on_cut_and_changed_bytes(
        body in raw_request(), cut in any::<prop::sample::Index>(), byte in any::<u8>()
    ) {
        let mut bytes = body.into_bytes();
        let at = cut.index(bytes.len());
        assert_agrees(&bytes[..at]);
        bytes[at] = byte;
        assert_agrees(&bytes);
    }
}
