//! The result codes of the contract (section 4).

/// A reply code. Kept as an enum so a code outside the contract cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 0: processes created.
    Success,
    /// 1199000: body not JSON / not an object, or a top-level field of the wrong JSON type.
    BadJson,
    /// 1199010: a required key is absent.
    MissingKey,
    /// 1199011: a value is out of range or otherwise invalid.
    InvalidValue,
    /// 1199035: more than [`super::MAX_PROCESSES`] processes.
    TooManyProcesses,
    /// 1199019: no such service instance for this supplier account.
    ServiceInstanceNotFound,
    /// 1199006: the service instance belongs to another business.
    WrongBusiness,
    /// 1108035: the service instance was created from a service template.
    FromTemplate,
    /// 1199014: duplicate process name or (func name, start param regex).
    Duplicate,
    /// 1300001: the request_id was used before with another meaning.
    RequestIdReused,
    /// 1300002: the body is larger than the configured limit.
    TooLarge,
}

impl Code {
    /// Every code, for tests and for pre-registering metric series.
    pub const ALL: [Code; 11] = [
        Code::Success,
        Code::BadJson,
        Code::MissingKey,
        Code::InvalidValue,
        Code::TooManyProcesses,
        Code::ServiceInstanceNotFound,
        Code::WrongBusiness,
        Code::FromTemplate,
        Code::Duplicate,
        Code::RequestIdReused,
        Code::TooLarge,
    ];

    /// The number that goes on the wire in the reply's `code`.
    pub fn as_u32(self) -> u32 {
        match self {
            Code::Success => 0,
            Code::BadJson => 1_199_000,
            Code::MissingKey => 1_199_010,
            Code::InvalidValue => 1_199_011,
            Code::TooManyProcesses => 1_199_035,
            Code::ServiceInstanceNotFound => 1_199_019,
            Code::WrongBusiness => 1_199_006,
            Code::FromTemplate => 1_108_035,
            Code::Duplicate => 1_199_014,
            Code::RequestIdReused => 1_300_001,
            Code::TooLarge => 1_300_002,
        }
    }

    /// [`Code::as_u32`] as text, for the `code` metric label without
    /// formatting a number per request.
    pub fn digits(self) -> &'static str {
        match self {
            Code::Success => "0",
            Code::BadJson => "1199000",
            Code::MissingKey => "1199010",
            Code::InvalidValue => "1199011",
            Code::TooManyProcesses => "1199035",
            Code::ServiceInstanceNotFound => "1199019",
            Code::WrongBusiness => "1199006",
            Code::FromTemplate => "1108035",
            Code::Duplicate => "1199014",
            Code::RequestIdReused => "1300001",
            Code::TooLarge => "1300002",
        }
    }

    /// A short, bounded label for metrics, so dashboards need no code table.
    pub fn label(self) -> &'static str {
        match self {
            Code::Success => "success",
            Code::BadJson => "bad_json",
            Code::MissingKey => "missing_key",
            Code::InvalidValue => "invalid_value",
            Code::TooManyProcesses => "too_many_processes",
            Code::ServiceInstanceNotFound => "service_instance_not_found",
            Code::WrongBusiness => "wrong_business",
            Code::FromTemplate => "from_template",
            Code::Duplicate => "duplicate",
            Code::RequestIdReused => "request_id_reused",
            Code::TooLarge => "too_large",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_digits_are_the_wire_number() {
        for code in Code::ALL {
            assert_eq!(code.digits(), code.as_u32().to_string());
        }
    }
}
