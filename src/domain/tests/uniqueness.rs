use super::*;
use crate::domain::Taken;

#[test]
fn a_repeated_name_within_the_request_is_duplicate() {
    let err = processes(&[info("a", "f1"), info("b", "f2"), info(" a ", "f3")]).unwrap_err();
    let message =
        "processes[2].process_info.bk_process_name: \"a\" is duplicated within the request";
    assert_rejected(err, Code::Duplicate, message);
}

#[test]
fn a_repeated_func_and_regex_pair_within_the_request_is_duplicate() {
    let mut second = info("b", "f");
    second["bk_start_param_regex"] = json!(" ");
    let err = processes(&[info("a", "f"), second]).unwrap_err();
    let message = "processes[1].process_info.bk_func_name: \"f\" with bk_start_param_regex \"\" is duplicated within the request";
    assert_rejected(err, Code::Duplicate, message);
}

#[test]
fn same_func_with_another_regex_is_fine() {
    let mut second = info("b", "f");
    second["bk_start_param_regex"] = json!("-x");
    assert_eq!(processes(&[info("a", "f"), second]).unwrap().len(), 2);
}

#[test]
fn individual_checks_come_before_uniqueness() {
    let err = processes(&[info("a", "f"), info("a", "f"), with("user", json!(1))]).unwrap_err();
    assert_eq!(err.code, Code::InvalidValue);
}

#[test]
fn claim_refuses_an_existing_name() {
    let mut taken = Taken::default();
    taken.insert_existing("a", "g", "");
    let new = processes(&[info("b", "f"), info("a", "h")]).unwrap();
    let err = taken.claim(&new).unwrap_err();
    let message =
        "processes[1].process_info.bk_process_name: \"a\" already exists in the service instance";
    assert_rejected(err, Code::Duplicate, message);
}

#[test]
fn claim_refuses_an_existing_pair() {
    let mut taken = Taken::default();
    taken.insert_existing("x", "f", "");
    let new = processes(&[info("a", "f")]).unwrap();
    let err = taken.claim(&new).unwrap_err();
    assert_eq!(err.code, Code::Duplicate);
    assert!(
        err.message
            .starts_with("processes[0].process_info.bk_func_name: \"f\""),
        "{}",
        err.message
    );
}

#[test]
fn a_successful_claim_takes_the_names_for_later_requests() {
    let (first, clash, other) = (
        processes(&[info("a", "f")]).unwrap(),
        processes(&[info("a", "g")]).unwrap(),
        processes(&[info("b", "g")]).unwrap(),
    );
    let mut taken = Taken::default();
    taken.claim(&first).unwrap();
    let err = taken.claim(&clash).unwrap_err();
    assert_eq!(err.code, Code::Duplicate);
    taken.claim(&other).unwrap();
}

#[test]
fn a_failed_claim_takes_nothing() {
    let (clash, retry) = (
        processes(&[info("a", "f"), info("x", "g")]).unwrap(),
        processes(&[info("a", "f")]).unwrap(),
    );
    let mut taken = Taken::default();
    taken.insert_existing("x", "x", "");
    assert!(taken.claim(&clash).is_err());
    taken.claim(&retry).unwrap();
}
