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

/// Requests whose meaning hashes are stored in request_log rows today: the
/// hash must stay byte-identical however the body is decoded, or a retry of
/// a stored request would get 1300001 instead of its stored reply.
const PINNED: [(&str, &str); 6] = [
    (
        BASE,
        "06c579e05411e23f4ea71400ee6a18685aa7297e780cb18bcf0b744c77271a7f",
    ),
    (
        SEED,
        "0df6df1ab2607f5c1bf6432647be87d70b8f4020c2441085bcbf3963670def0c",
    ),
    // Duplicate keys (last wins) at every level, escapes re-encoded, numbers
    // as serde_json writes them (floats, -0, beyond 64 bits), nested unknown keys.
    (
        r#"{"bk_biz_id":3,"bk_biz_id":1,"service_instance_id":2,"bk_supplier_account":"t\u0001\"\/\u00e9\ud83d\ude00",
        "processes":[{"process_info":{"z":[1.0,-0,1e2,1E-7,0.1,5e-324,-9223372036854775808,18446744073709551615,
        123456789012345678901234,-123456789012345678901234,2.5e+300],"bk_process_name":"a","bk_process_name":" b\n\t\u2028 ",
        "bk_func_name":"f","bind_info":[{"port":"80","row_id":1,"enable":true},{}],"nested":{"b":{},"a":[[],{"y":null,"x":false}],"b":{"k":"v"}}},
        "extra":"ignored?"}, 7, "s", null, true, []], "unknown":{"a":1}}"#,
        "96bce7be3540d446d35ccafc8ed009b4813278585da2afcbd7c47bfb7d2db04c",
    ),
    // Wrong types are hashed as sent: null supplier = default, others as they are.
    (
        r#"{"bk_supplier_account":null,"processes":{"b":1,"a":2},"service_instance_id":"x"}"#,
        "3b181bc0aff2fd3cd3a569f119568dcf17af6cc478d80888bf0b3847ea60564d",
    ),
    (
        r#"{"bk_supplier_account":5,"bk_biz_id":[1,{"b":2,"a":1}],"processes":"p"}"#,
        "2cfea7d6402530f8736c20b08073c4f20b39a315dda7633418829fd1607e01fc",
    ),
    (
        r#"{"processes":[{"process_info":{"":"","\u0000":"\u0000","é":"\u00e9","a\"b":1}}]}"#,
        "df9e7f1a3e1929eea4b32f9566a9ac540bcfefc936c64caae35ad181f1f07bb0",
    ),
];

#[test]
fn meanings_of_known_requests_are_pinned() {
    for (body, expected) in PINNED {
        assert_eq!(to_hex(meaning(body)), expected, "{body}");
    }
}

/// The canonical text of a request with escapes, duplicates and floats,
/// written out, so a change of form shows where it differs.
#[test]
fn canonical_form_of_escapes_duplicates_and_numbers() {
    let body = r#"{"bk_supplier_account":"\u00e9\/\u0001","bk_biz_id":1,"bk_biz_id":2,
        "processes":[{"process_info":{"b":[1.0,-0,1e2,123456789012345678901234],"a":"x","a":"\ud83d\ude00\n"}}]}"#;
    let canonical = "{\"bk_biz_id\":2,\"bk_supplier_account\":\"é/\\u0001\",\"processes\":[{\"process_info\":{\"a\":\"😀\\n\",\"b\":[1.0,-0.0,100.0,1.2345678901234567e+23]}}],\"service_instance_id\":null}";
    let digest: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
    assert_eq!(to_hex(meaning(body)), to_hex(digest));
}

/// Lower-case hex of a digest, for readable pinned values.
fn to_hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
