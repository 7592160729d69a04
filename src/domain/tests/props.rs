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
