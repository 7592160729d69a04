use sha2::{Digest, Sha256};

use super::*;

fn meaning(body: &str) -> [u8; 32] {
    decode(body.as_bytes(), Some("m"), LIMIT).unwrap().meaning
}

const BASE: &str = r#"{"bk_biz_id":1,"service_instance_id":2,"processes":[{"process_info":{"bk_process_name":"p","bk_func_name":"f"}}]}"#;

#[test]
fn reordered_keys_have_the_same_meaning() {
    let reordered = r#"{"processes":[{"process_info":{"bk_func_name":"f","bk_process_name":"p"}}],
        "service_instance_id":2, "bk_biz_id":1}"#;
    assert_eq!(meaning(BASE), meaning(reordered));
}

#[test]
fn identity_and_request_id_are_not_meaning() {
    let with_identity = r#"{"request_id":"other","bk_app_code":"a","bk_app_secret":"s","bk_username":"u",
        "bk_token":"t","extra":1,"bk_biz_id":1,"service_instance_id":2,
        "processes":[{"process_info":{"bk_process_name":"p","bk_func_name":"f"}}]}"#;
    assert_eq!(meaning(BASE), meaning(with_identity));
}

#[test]
fn default_supplier_account_equals_an_explicit_zero() {
    let explicit = BASE.replacen('{', r#"{"bk_supplier_account":"0","#, 1);
    assert_eq!(meaning(BASE), meaning(&explicit));
    let other = BASE.replacen('{', r#"{"bk_supplier_account":"1","#, 1);
    assert_ne!(meaning(BASE), meaning(&other));
}

#[test]
fn different_processes_have_different_meanings() {
    assert_ne!(meaning(BASE), meaning(&BASE.replace("\"p\"", "\"q\"")));
    assert_ne!(meaning(BASE), meaning(&BASE.replace("\"p\"", "\" p\"")));
    assert_ne!(meaning(BASE), meaning(&BASE.replace(":2", ":3")));
}

#[test]
fn meaning_is_sha256_of_sorted_compact_json() {
    let canonical = r#"{"bk_biz_id":1,"bk_supplier_account":"0","processes":[{"process_info":{"bk_func_name":"f","bk_process_name":"p"}}],"service_instance_id":2}"#;
    let digest: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
    assert_eq!(meaning(BASE), digest);
}
