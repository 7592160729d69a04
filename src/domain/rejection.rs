//! A final answer of "no": the code and the one-line message of the reply.

use serde_json::Value;

use super::Code;

/// Why a request was refused. It is a final answer (reply and ack), never a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub message: String,
}

impl Rejection {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
        }
    }

    /// 1199000 at `path`: the JSON type is wrong (top level only).
    pub(crate) fn bad_json(path: impl std::fmt::Display, what: &str) -> Self {
        Rejection::new(Code::BadJson, format!("{path}: {what}"))
    }

    /// 1199010 at `path`: a required key is absent.
    pub(crate) fn missing(path: impl std::fmt::Display) -> Self {
        Rejection::new(Code::MissingKey, format!("{path}: required"))
    }

    /// 1199011 at `path`: the value is present but not acceptable.
    pub(crate) fn invalid(path: impl std::fmt::Display, what: impl std::fmt::Display) -> Self {
        Rejection::new(Code::InvalidValue, format!("{path}: {what}"))
    }
}

/// Longest piece of a caller's value quoted back in a message, so replies stay small.
const QUOTE_CHARS: usize = 64;

/// The value as JSON text, cut to [`QUOTE_CHARS`], for quoting in a message.
pub(crate) fn quote(value: &str) -> String {
    let mut cut: String = value.chars().take(QUOTE_CHARS).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    Value::String(cut).to_string()
}

/// Check (5): the service instance does not exist for this supplier account.
pub fn service_instance_not_found(id: i64, supplier: &str) -> Rejection {
    Rejection::new(
        Code::ServiceInstanceNotFound,
        format!(
            "service_instance_id: {id} not found for bk_supplier_account {}",
            quote(supplier)
        ),
    )
}

/// Check (5): the service instance exists but in another business.
pub fn service_instance_other_business(id: i64, biz: i64) -> Rejection {
    Rejection::new(
        Code::WrongBusiness,
        format!("service_instance_id: {id} belongs to bk_biz_id {biz}"),
    )
}

/// Check (5): template-made instances get their processes from the template.
pub fn service_instance_from_template(id: i64, template_id: i64) -> Rejection {
    Rejection::new(
        Code::FromTemplate,
        format!("service_instance_id: {id} was created from service template {template_id}"),
    )
}

/// Check (2): the request_id is stored with another meaning.
pub fn request_id_reused(request_id: &str) -> Rejection {
    Rejection::new(
        Code::RequestIdReused,
        format!(
            "request_id: {} was already used for a request with another meaning",
            quote(request_id)
        ),
    )
}
