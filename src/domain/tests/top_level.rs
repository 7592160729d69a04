use super::*;

fn base() -> Value {
    request_with(&[info("p", "f")])
}

fn base_with(key: &str, value: Value) -> Value {
    let mut request = base();
    request[key] = value;
    request
}

fn base_without(key: &str) -> Value {
    let mut request = base();
    request.as_object_mut().unwrap().remove(key);
    request
}

#[test]
fn seed_example_validates_and_ignores_server_set_keys() {
    let request = decode(SEED.as_bytes(), Some("seed-1"), LIMIT)
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(request.request_id, "seed-1");
    assert_eq!((request.bk_biz_id, request.service_instance_id), (1, 48));
    assert_eq!(request.bk_supplier_account, "0");
    assert_eq!(request.bk_username, "xxx");
    let processes = request.processes.unwrap();
    assert_eq!(processes.len(), 1);
    let p = &processes[0];
    assert_eq!(
        (p.bk_process_name.as_str(), p.bk_func_name.as_str()),
        ("job_java", "java")
    );
    assert_eq!(p.work_path, "/data/bkee");
    assert_eq!(
        (p.proc_num, p.priority, p.timeout),
        (Some(1), Some(1), Some(30))
    );
    assert_eq!(p.bk_start_check_secs, None);
    assert!(!p.auto_start);
    let bind = json!([{"enable": false, "ip": "127.0.0.1", "port": "80", "protocol": "1", "template_row_id": 1234}]);
    assert_eq!(p.bind_info.as_ref().map(BindInfo::to_value), Some(bind));
}

#[test]
fn request_id_with_nul_is_invalid_before_anything_else() {
    let body = serde_json::to_vec(&json!({"request_id": "a\u{0}b"})).unwrap();
    let err = decode(&body, None, LIMIT).unwrap().validate().unwrap_err();
    assert_rejected(err, Code::InvalidValue, "request_id: contains NUL");
}

#[test]
fn required_keys_are_reported_in_order() {
    assert_rejected(
        top_error(&json!({"request_id": "r"})),
        Code::MissingKey,
        "bk_biz_id: required",
    );
    let mut request = base_without("service_instance_id");
    request.as_object_mut().unwrap().remove("processes");
    assert_rejected(
        top_error(&request),
        Code::MissingKey,
        "service_instance_id: required",
    );
    assert_rejected(
        top_error(&base_without("processes")),
        Code::MissingKey,
        "processes: required",
    );
}

#[test]
fn absence_is_reported_before_wrong_types() {
    let mut request = base_with("bk_biz_id", json!("1"));
    request.as_object_mut().unwrap().remove("processes");
    assert_rejected(top_error(&request), Code::MissingKey, "processes: required");
}

#[test]
fn ids_must_be_json_integers() {
    for key in ["bk_biz_id", "service_instance_id"] {
        for value in [
            json!("1"),
            json!(30.5),
            json!(30.0),
            json!(null),
            json!(true),
            json!(1e10),
        ] {
            let err = top_error(&base_with(key, value));
            assert_rejected(err, Code::BadJson, &format!("{key}: must be an integer"));
        }
    }
}

#[test]
fn ids_must_be_in_range() {
    let max = i64::MAX;
    for key in ["bk_biz_id", "service_instance_id"] {
        let err = top_error(&base_with(key, json!(0)));
        assert_rejected(
            err,
            Code::InvalidValue,
            &format!("{key}: 0 is out of range 1..={max}"),
        );
        let err = top_error(&base_with(key, json!(-5)));
        assert_eq!(err.code, Code::InvalidValue);
        let err = top_error(&base_with(key, json!(9_223_372_036_854_775_808u64)));
        assert_eq!(err.code, Code::InvalidValue);
        assert!(validate(&base_with(key, json!(max))).is_ok());
    }
}

#[test]
fn integers_beyond_64_bits_are_out_of_range_not_wrong_type() {
    let body = br#"{"request_id":"r","bk_biz_id":99999999999999999999999,"service_instance_id":1,"processes":[]}"#;
    let err = decode(body, None, LIMIT).unwrap().validate().unwrap_err();
    assert_eq!(err.code, Code::InvalidValue);
    let body = br#"{"request_id":"r","bk_biz_id":-1e19,"service_instance_id":1,"processes":[]}"#;
    let err = decode(body, None, LIMIT).unwrap().validate().unwrap_err();
    assert_eq!(err.code, Code::InvalidValue);
}

#[test]
fn supplier_account_defaults_to_zero_and_is_not_trimmed() {
    assert_eq!(validate(&base()).unwrap().bk_supplier_account, "0");
    let request = validate(&base_with("bk_supplier_account", json!(null))).unwrap();
    assert_eq!(request.bk_supplier_account, "0");
    let request = validate(&base_with("bk_supplier_account", json!(" t1 "))).unwrap();
    assert_eq!(request.bk_supplier_account, " t1 ");
}

#[test]
fn username_defaults_to_empty() {
    assert_eq!(validate(&base()).unwrap().bk_username, "");
    assert_eq!(
        validate(&base_with("bk_username", json!(null)))
            .unwrap()
            .bk_username,
        ""
    );
    assert_eq!(
        validate(&base_with("bk_username", json!(" u ")))
            .unwrap()
            .bk_username,
        " u "
    );
}

#[test]
fn optional_strings_must_be_strings() {
    for key in [
        "bk_supplier_account",
        "bk_app_code",
        "bk_app_secret",
        "bk_username",
        "bk_token",
    ] {
        let err = top_error(&base_with(key, json!(5)));
        assert_rejected(err, Code::BadJson, &format!("{key}: must be a string"));
    }
}

#[test]
fn stored_top_level_strings_may_not_hold_nul() {
    for key in ["bk_supplier_account", "bk_username"] {
        let err = top_error(&base_with(key, json!("a\u{0}")));
        assert_rejected(err, Code::InvalidValue, &format!("{key}: contains NUL"));
    }
    for key in ["bk_app_code", "bk_app_secret", "bk_token"] {
        assert!(validate(&base_with(key, json!("a\u{0}"))).is_ok());
    }
}

#[test]
fn secret_values_never_appear_in_messages() {
    let mut request = base_with("bk_app_secret", json!(["s3cret"]));
    request["bk_token"] = json!("t0ken");
    let err = top_error(&request);
    assert_rejected(err, Code::BadJson, "bk_app_secret: must be a string");
}

#[test]
fn fields_are_checked_in_table_order() {
    let mut request = base_with("bk_token", json!(1));
    request["bk_app_code"] = json!(1);
    request["processes"] = json!({});
    request["bk_supplier_account"] = json!(1);
    assert_rejected(
        top_error(&request),
        Code::BadJson,
        "bk_supplier_account: must be a string",
    );
    request["bk_supplier_account"] = json!("0");
    assert_rejected(
        top_error(&request),
        Code::BadJson,
        "processes: must be an array",
    );
    request["processes"] = json!([]);
    assert_rejected(
        top_error(&request),
        Code::BadJson,
        "bk_app_code: must be a string",
    );
    request["bk_app_code"] = json!("a");
    assert_rejected(
        top_error(&request),
        Code::BadJson,
        "bk_token: must be a string",
    );
}

#[test]
fn process_items_must_be_objects_with_object_process_info() {
    let mut request = base();
    request["processes"] = json!([{"process_info": {}}, 3]);
    assert_rejected(
        top_error(&request),
        Code::BadJson,
        "processes[1]: not an object",
    );
    request["processes"] = json!([{"process_info": []}]);
    assert_rejected(
        top_error(&request),
        Code::BadJson,
        "processes[0].process_info: must be an object",
    );
    request["processes"] = json!([{}]);
    assert_rejected(
        top_error(&request),
        Code::BadJson,
        "processes[0].process_info: must be an object",
    );
}

#[test]
fn processes_may_not_be_empty() {
    let err = top_error(&request_with(&[]));
    assert_rejected(err, Code::InvalidValue, "processes: must not be empty");
}

#[test]
fn at_most_one_hundred_processes() {
    let infos: Vec<Value> = (0..100)
        .map(|i| info(&format!("p{i}"), &format!("f{i}")))
        .collect();
    assert_eq!(processes(&infos).unwrap().len(), 100);
    let infos: Vec<Value> = (0..101).map(|i| info(&format!("p{i}"), "f")).collect();
    let err = top_error(&request_with(&infos));
    assert_rejected(
        err,
        Code::TooManyProcesses,
        "processes: 101 items, limit 100",
    );
}

#[test]
fn other_top_level_keys_are_ignored() {
    assert!(validate(&base_with("extra", json!({"any": [1]}))).is_ok());
}

#[test]
fn process_failures_do_not_fail_the_top_level() {
    let request = validate(&request_with(&[json!({"bk_func_name": "f"})])).unwrap();
    assert_eq!(request.processes.unwrap_err().code, Code::MissingKey);
}
