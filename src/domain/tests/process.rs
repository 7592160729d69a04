use super::*;

const PATH: &str = "processes[0].process_info";

const SHORT_FIELDS: [&str; 2] = ["description", "user"];
const LONG_FIELDS: [&str; 8] = [
    "bk_start_param_regex",
    "work_path",
    "pid_file",
    "start_cmd",
    "stop_cmd",
    "restart_cmd",
    "reload_cmd",
    "face_stop_cmd",
];

#[track_caller]
fn assert_invalid(info: Value, message: &str) {
    assert_rejected(
        process_error(info),
        Code::InvalidValue,
        &format!("{PATH}.{message}"),
    );
}

#[test]
fn absent_name_then_func_name_is_missing() {
    let err = process_error(json!({"bk_func_name": 1}));
    assert_rejected(
        err,
        Code::MissingKey,
        &format!("{PATH}.bk_process_name: required"),
    );
    let err = process_error(json!({"bk_process_name": 1}));
    assert_rejected(
        err,
        Code::MissingKey,
        &format!("{PATH}.bk_func_name: required"),
    );
}

#[test]
fn required_strings_may_not_be_null_blank_or_other_types() {
    for key in ["bk_process_name", "bk_func_name"] {
        assert_invalid(with(key, json!(null)), &format!("{key}: must not be null"));
        assert_invalid(
            with(key, json!(" \t\n")),
            &format!("{key}: must not be blank"),
        );
        assert_invalid(with(key, json!(7)), &format!("{key}: must be a string"));
    }
}

#[test]
fn strings_are_trimmed_and_stored_trimmed() {
    let mut info = info("  p  ", "\tf\n");
    info["start_cmd"] = json!("  ./run  ");
    let p = process(info);
    assert_eq!(
        (p.bk_process_name.as_str(), p.bk_func_name.as_str()),
        ("p", "f")
    );
    assert_eq!(p.start_cmd, "./run");
}

#[test]
fn optional_strings_default_to_empty_and_accept_null() {
    for key in SHORT_FIELDS.iter().chain(&LONG_FIELDS) {
        let p = process(with(key, json!(null)));
        assert_eq!(p.to_json()[*key], json!(""), "{key}");
        assert_invalid(with(key, json!(false)), &format!("{key}: must be a string"));
    }
    let p = process(info("p", "f"));
    assert_eq!((p.description.as_str(), p.work_path.as_str()), ("", ""));
}

#[test]
fn short_strings_are_limited_to_256_bytes_after_trim() {
    for key in ["bk_process_name", "bk_func_name", "description", "user"] {
        let padded = format!("  {}  ", "a".repeat(256));
        assert!(processes(&[with(key, json!(padded))]).is_ok(), "{key}");
        let long = "é".repeat(129);
        assert_invalid(
            with(key, json!(long)),
            &format!("{key}: is 258 bytes after trimming, limit 256"),
        );
    }
}

#[test]
fn long_strings_are_limited_to_2000_bytes_after_trim() {
    for key in LONG_FIELDS {
        assert!(
            processes(&[with(key, json!("a".repeat(2000)))]).is_ok(),
            "{key}"
        );
        let long = "a".repeat(2001);
        assert_invalid(
            with(key, json!(long)),
            &format!("{key}: is 2001 bytes after trimming, limit 2000"),
        );
    }
}

#[test]
fn nul_in_any_stored_string_is_invalid() {
    for key in ["bk_process_name", "bk_func_name"]
        .iter()
        .chain(&SHORT_FIELDS)
        .chain(&LONG_FIELDS)
    {
        assert_invalid(with(key, json!("a\u{0}b")), &format!("{key}: contains NUL"));
    }
}

#[test]
fn ints_are_checked_against_their_ranges() {
    let cases = [
        ("proc_num", 1, 10_000),
        ("priority", -100, 10_000),
        ("timeout", 0, 10_000),
        ("bk_start_check_secs", 0, 600),
    ];
    for (key, low, high) in cases {
        for ok in [low, high] {
            assert_eq!(process(with(key, json!(ok))).to_json()[key], json!(ok));
        }
        for bad in [low - 1, high + 1] {
            assert_invalid(
                with(key, json!(bad)),
                &format!("{key}: {bad} is out of range {low}..={high}"),
            );
        }
        assert_eq!(process(with(key, json!(null))).to_json()[key], json!(null));
    }
    assert_invalid(
        with("proc_num", json!(u64::MAX)),
        &format!("proc_num: {} is out of range 1..=10000", u64::MAX),
    );
    assert_invalid(
        with("proc_num", json!(0)),
        "proc_num: 0 is out of range 1..=10000",
    );
}

#[test]
fn ints_must_be_json_integers() {
    for bad in [json!("30"), json!(30.5), json!(30.0), json!(true)] {
        assert_invalid(with("timeout", bad), "timeout: must be an integer");
    }
    let body =
        br#"{"request_id":"r","bk_biz_id":1,"service_instance_id":1,"processes":[{"process_info":
        {"bk_process_name":"p","bk_func_name":"f","priority":123456789012345678901234567890}}]}"#;
    let err = decode(body, None, LIMIT)
        .unwrap()
        .validate()
        .unwrap()
        .processes
        .unwrap_err();
    assert_rejected(
        err,
        Code::InvalidValue,
        &format!("{PATH}.priority: must be an integer"),
    );
}

#[test]
fn auto_start_is_a_bool_defaulting_to_false() {
    assert!(process(with("auto_start", json!(true))).auto_start);
    assert!(!process(with("auto_start", json!(null))).auto_start);
    assert!(!process(info("p", "f")).auto_start);
    assert_invalid(
        with("auto_start", json!("true")),
        "auto_start: must be a bool",
    );
}

#[test]
fn server_set_and_unknown_keys_are_ignored() {
    let mut info = info("p", "f");
    for key in [
        "bk_process_id",
        "bk_biz_id",
        "bk_supplier_account",
        "service_instance_id",
        "create_time",
        "last_time",
        "auto_time_gap",
        "bk_func_id",
    ] {
        info[key] = json!({"not": "checked"});
    }
    assert_eq!(
        process(info),
        process(json!({"bk_process_name": "p", "bk_func_name": "f"}))
    );
}

#[test]
fn fields_are_checked_in_table_order_required_first() {
    let mut info =
        json!({"bk_process_name": "", "bind_info": 1, "auto_start": 1, "timeout": -1, "user": 1});
    let err = process_error(info.clone());
    assert_rejected(
        err,
        Code::MissingKey,
        &format!("{PATH}.bk_func_name: required"),
    );
    info["bk_func_name"] = json!("f");
    assert_invalid(info.clone(), "bk_process_name: must not be blank");
    info["bk_process_name"] = json!("p");
    assert_invalid(info.clone(), "user: must be a string");
    info["user"] = json!("u");
    assert_invalid(info.clone(), "timeout: -1 is out of range 0..=10000");
    info["timeout"] = json!(1);
    assert_invalid(info.clone(), "auto_start: must be a bool");
    info["auto_start"] = json!(true);
    assert_invalid(info, "bind_info: must be an array or null");
}

#[test]
fn the_first_failing_process_wins() {
    let err = processes(&[info("a", "f"), with("user", json!(1)), json!({})]).unwrap_err();
    assert_rejected(
        err,
        Code::InvalidValue,
        "processes[1].process_info.user: must be a string",
    );
}

#[test]
fn to_json_has_every_field() {
    let p = process(with("bind_info", json!([])));
    let json = p.to_json();
    assert_eq!(json.as_object().unwrap().len(), 18);
    assert_eq!(json["bk_process_name"], json!("p"));
    assert_eq!(json["bind_info"], json!([]));
    assert_eq!(json["auto_start"], json!(false));
}
