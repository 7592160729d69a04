use super::*;

const PATH: &str = "processes[0].process_info.bind_info";

fn bind(rows: Value) -> Result<Option<Value>, Rejection> {
    processes(&[with("bind_info", rows)]).map(|mut p| p.remove(0).bind_info.map(|b| b.to_value()))
}

#[track_caller]
fn assert_invalid(rows: Value, message: &str) {
    assert_rejected(
        bind(rows).unwrap_err(),
        Code::InvalidValue,
        &format!("{PATH}{message}"),
    );
}

#[test]
fn absent_or_null_is_none() {
    assert_eq!(process(info("p", "f")).bind_info, None);
    assert_eq!(bind(json!(null)).unwrap(), None);
}

#[test]
fn empty_list_and_empty_row_are_valid() {
    assert_eq!(bind(json!([])).unwrap(), Some(json!([])));
    assert_eq!(bind(json!([{}])).unwrap(), Some(json!([{}])));
}

#[test]
fn must_be_an_array_of_objects() {
    assert_invalid(json!({"port": "80"}), ": must be an array or null");
    assert_invalid(json!([{}, "80"]), "[1]: must be an object");
}

#[test]
fn unknown_keys_are_invalid() {
    assert_invalid(
        json!([{"port": "80", "host": "x"}]),
        "[0].host: is not a bind_info key",
    );
}

#[test]
fn enable_must_be_a_bool_when_present() {
    assert_eq!(
        bind(json!([{"enable": true}])).unwrap(),
        Some(json!([{"enable": true}]))
    );
    assert_invalid(json!([{"enable": null}]), "[0].enable: must be a bool");
    assert_invalid(json!([{"enable": "true"}]), "[0].enable: must be a bool");
}

#[test]
fn ip_is_empty_null_or_a_literal_address() {
    for ok in [
        json!(""),
        json!(null),
        json!("10.0.0.1"),
        json!("::1"),
        json!("fe80::1"),
    ] {
        assert!(bind(json!([{ "ip": ok }])).is_ok(), "{ok}");
    }
    assert_invalid(
        json!([{"ip": "localhost"}]),
        "[0].ip: \"localhost\" is not an IP address",
    );
    assert_invalid(
        json!([{"ip": " 10.0.0.1"}]),
        "[0].ip: \" 10.0.0.1\" is not an IP address",
    );
    assert_invalid(json!([{"ip": 10}]), "[0].ip: must be a string or null");
}

#[test]
fn port_is_one_port_or_a_range() {
    for ok in ["1", "80", "65535", "8000-8010", "90-80"] {
        assert!(bind(json!([{ "port": ok }])).is_ok(), "{ok}");
    }
    for bad in [
        "", "0", "65536", "080", "+80", " 80", "80,81", "80-", "-80", "1-2-3", "0-5", "80-0x1",
    ] {
        assert_invalid(
            json!([{ "port": bad }]),
            &format!("[0].port: {} is not a port", json!(bad)),
        );
    }
    assert_invalid(json!([{"port": 80}]), "[0].port: must be a string");
    assert_invalid(json!([{"port": null}]), "[0].port: must be a string");
}

#[test]
fn protocol_is_one_of_four_codes() {
    for ok in ["1", "2", "3", "4"] {
        assert!(bind(json!([{ "protocol": ok }])).is_ok(), "{ok}");
    }
    for bad in ["", "0", "5", "TCP"] {
        let message = format!(
            "[0].protocol: {} is not \"1\", \"2\", \"3\" or \"4\"",
            json!(bad)
        );
        assert_invalid(json!([{ "protocol": bad }]), &message);
    }
    assert_invalid(json!([{"protocol": 1}]), "[0].protocol: must be a string");
}

#[test]
fn row_ids_are_integers_or_null() {
    assert!(bind(json!([{"template_row_id": null, "row_id": null}])).is_ok());
    for key in ["template_row_id", "row_id"] {
        for bad in [json!("1"), json!(1.5), json!(u64::MAX)] {
            assert_invalid(
                json!([{ key: bad }]),
                &format!("[0].{key}: must be an integer that fits 64 bits"),
            );
        }
    }
}

#[test]
fn row_id_is_renamed_template_row_id() {
    assert_eq!(
        bind(json!([{"row_id": 3}])).unwrap(),
        Some(json!([{"template_row_id": 3}]))
    );
    let both = json!([{"row_id": 3, "template_row_id": 3, "port": "80"}]);
    assert_eq!(
        bind(both).unwrap(),
        Some(json!([{"template_row_id": 3, "port": "80"}]))
    );
    let null_template = json!([{"row_id": 3, "template_row_id": null}]);
    assert_eq!(
        bind(null_template).unwrap(),
        Some(json!([{"template_row_id": 3}]))
    );
    let null_alias = json!([{"row_id": null, "template_row_id": 4}]);
    assert_eq!(
        bind(null_alias).unwrap(),
        Some(json!([{"template_row_id": 4}]))
    );
}

#[test]
fn row_id_and_template_row_id_must_agree() {
    let rows = json!([{"row_id": 3, "template_row_id": 4}]);
    assert_invalid(rows, "[0].row_id: 3 differs from template_row_id 4");
}

#[test]
fn rows_are_kept_as_sent() {
    let rows = json!([{"enable": false, "ip": "", "port": "1-2", "protocol": "4"}, {}]);
    assert_eq!(bind(rows.clone()).unwrap(), Some(rows));
}

#[test]
fn the_first_bad_row_is_reported() {
    assert_invalid(
        json!([{"port": "80"}, {"port": "0"}, {"port": "x"}]),
        "[1].port: \"0\" is not a port",
    );
}
