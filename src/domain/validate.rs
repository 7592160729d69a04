//! Checks (3) top-level keys and types and (4) the number of processes.
//!
//! Top-level problems are about the message's shape, so a wrong JSON type is
//! 1199000 here, while inside process_info every problem is 1199011.

use super::prepared::Prepared;
use super::wire::{Entries, Json, Secret, Wire};
use super::{Code, Decoded, MAX_PROCESSES, Rejection, Request, process_info};

impl Decoded {
    /// Checks (3) top-level keys and types, (4) number of processes; and eagerly
    /// (6) each process and (7a) uniqueness within the request, stored in
    /// [`Request::processes`] because check (5) must answer before them.
    ///
    /// The checks ran in [`super::decode`], while the body was at hand;
    /// this hands out their outcome.
    pub fn validate(&self) -> Result<Request, Rejection> {
        match &self.checked {
            Ok(prepared) => Ok(prepared.request(&self.request_id)),
            Err(rejection) => Err(rejection.clone()),
        }
    }
}

/// The checks of [`Decoded::validate`] on the borrowed body, but (7a),
/// which runs on the owned processes.
pub(super) fn check(request_id: &str, top: &Wire<'_>) -> Result<Prepared, Rejection> {
    if request_id.contains('\0') {
        return Err(Rejection::invalid("request_id", "contains NUL"));
    }
    // Keys without which the request means nothing, in the order they are reported.
    let required = [
        ("bk_biz_id", &top.bk_biz_id),
        ("service_instance_id", &top.service_instance_id),
        ("processes", &top.processes),
    ];
    if let Some((key, _)) = required.iter().find(|(_, value)| value.is_none()) {
        return Err(Rejection::missing(key));
    }
    let bk_biz_id = positive_id("bk_biz_id", top.bk_biz_id.as_ref())?;
    let supplier = optional_string(
        "bk_supplier_account",
        top.bk_supplier_account.as_ref(),
        true,
    )?;
    let service_instance_id = positive_id("service_instance_id", top.service_instance_id.as_ref())?;
    let items = process_items(top.processes.as_ref())?;
    optional_string("bk_app_code", top.bk_app_code.as_ref(), false)?;
    secret("bk_app_secret", top.bk_app_secret)?;
    let bk_username = optional_string("bk_username", top.bk_username.as_ref(), true)?;
    secret("bk_token", top.bk_token)?;
    if items.is_empty() {
        return Err(Rejection::invalid("processes", "must not be empty"));
    }
    if items.len() > MAX_PROCESSES {
        return Err(Rejection::new(
            Code::TooManyProcesses,
            format!("processes: {} items, limit {MAX_PROCESSES}", items.len()),
        ));
    }
    let mut out = Prepared {
        text: String::new(),
        bk_biz_id,
        bk_supplier_account: None,
        service_instance_id,
        bk_username: None,
        processes: Ok(Vec::with_capacity(items.len())),
        rows: Vec::new(),
    };
    out.bk_supplier_account = supplier.map(|s| out.keep(s));
    out.bk_username = bk_username.map(|s| out.keep(s));
    let processes = items
        .iter()
        .enumerate()
        .map(|(i, info)| process_info::parse(i, info, &mut out))
        .collect();
    out.processes = processes;
    Ok(out)
}

/// An id column: a JSON integer in 1..=i64::MAX.
fn positive_id(key: &str, value: Option<&Json<'_>>) -> Result<i64, Rejection> {
    let out_of_range = |shown: &dyn std::fmt::Display| {
        Rejection::invalid(key, format!("{shown} is out of range 1..={}", i64::MAX))
    };
    let Some(Json::Number(n)) = value else {
        return Err(Rejection::bad_json(key, "must be an integer"));
    };
    if let Some(id) = n.as_i64() {
        return if id >= 1 {
            Ok(id)
        } else {
            Err(out_of_range(&id))
        };
    }
    if n.is_u64() {
        return Err(out_of_range(n));
    }
    // Integers beyond 64 bits arrive as floats; an integral one is still an
    // integer the caller meant, just too big, not a wrong type.
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() >= 2f64.powi(63) => Err(out_of_range(n)),
        _ => Err(Rejection::bad_json(key, "must be an integer")),
    }
}

/// An optional top-level string, taken as sent; null counts as absent.
/// `stored` strings may not hold NUL, which PostgreSQL text cannot keep.
fn optional_string<'j>(
    key: &str,
    value: Option<&'j Json<'_>>,
    stored: bool,
) -> Result<Option<&'j str>, Rejection> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) if stored && s.contains('\0') => {
            Err(Rejection::invalid(key, "contains NUL"))
        }
        Some(Json::Str(s)) => Ok(Some(s.as_ref())),
        Some(_) => Err(Rejection::bad_json(key, "must be a string")),
    }
}

/// A secret is an optional string too; its content was dropped at decode.
fn secret(key: &str, value: Option<Secret>) -> Result<(), Rejection> {
    match value {
        None | Some(Secret::Null | Secret::Str) => Ok(()),
        Some(Secret::Other) => Err(Rejection::bad_json(key, "must be a string")),
    }
}

/// `processes`: an array of objects, each with an object `process_info`.
fn process_items<'j, 'a>(
    processes: Option<&'j Json<'a>>,
) -> Result<Vec<Entries<'j, 'a>>, Rejection> {
    let Some(Json::Array(items)) = processes else {
        return Err(Rejection::bad_json("processes", "must be an array"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Json::Object(item) = item else {
                return Err(Rejection::bad_json(
                    format!("processes[{i}]"),
                    "not an object",
                ));
            };
            let info = item.iter().rev().find(|(key, _)| key == "process_info");
            match info {
                Some((_, Json::Object(info))) => Ok(&info[..]),
                _ => Err(Rejection::bad_json(
                    format!("processes[{i}].process_info"),
                    "must be an object",
                )),
            }
        })
        .collect()
}
