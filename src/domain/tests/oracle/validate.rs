use serde_json::{Map, Value};

use super::{Code, Decoded, MAX_PROCESSES, Rejection, Request, process_info, uniqueness};

/// Keys without which the request means nothing, in the order they are reported.
const REQUIRED: [&str; 3] = ["bk_biz_id", "service_instance_id", "processes"];

impl Decoded {
    /// Checks (3) top-level keys and types, (4) number of processes; and eagerly
    /// (6) each process and (7a) uniqueness within the request, stored in
    /// [`Request::processes`] because check (5) must answer before them.
    pub fn validate(&self) -> Result<Request, Rejection> {
        if self.request_id.contains('\0') {
            return Err(Rejection::invalid("request_id", "contains NUL"));
        }
        let top = &self.object;
        if let Some(key) = REQUIRED.iter().find(|key| !top.contains_key(**key)) {
            return Err(Rejection::missing(key));
        }
        let bk_biz_id = positive_id(top, "bk_biz_id")?;
        let supplier = optional_string(top, "bk_supplier_account", true)?;
        let service_instance_id = positive_id(top, "service_instance_id")?;
        let items = process_items(top)?;
        optional_string(top, "bk_app_code", false)?;
        optional_string(top, "bk_app_secret", false)?;
        let bk_username = optional_string(top, "bk_username", true)?;
        optional_string(top, "bk_token", false)?;
        if items.is_empty() {
            return Err(Rejection::invalid("processes", "must not be empty"));
        }
        if items.len() > MAX_PROCESSES {
            return Err(Rejection::new(
                Code::TooManyProcesses,
                format!("processes: {} items, limit {MAX_PROCESSES}", items.len()),
            ));
        }
        let processes = items
            .iter()
            .enumerate()
            .map(|(i, info)| process_info::parse(i, info))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|processes| uniqueness::within_request(&processes).map(|()| processes));
        Ok(Request {
            request_id: self.request_id.clone(),
            bk_biz_id,
            bk_supplier_account: supplier.unwrap_or_else(|| "0".to_owned()),
            service_instance_id,
            bk_username: bk_username.unwrap_or_default(),
            processes,
        })
    }
}

/// An id column: a JSON integer in 1..=i64::MAX.
fn positive_id(top: &Map<String, Value>, key: &str) -> Result<i64, Rejection> {
    let out_of_range = |shown: &dyn std::fmt::Display| {
        Rejection::invalid(key, format!("{shown} is out of range 1..={}", i64::MAX))
    };
    let Some(Value::Number(n)) = top.get(key) else {
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
fn optional_string(
    top: &Map<String, Value>,
    key: &str,
    stored: bool,
) -> Result<Option<String>, Rejection> {
    match top.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if stored && s.contains('\0') => {
            Err(Rejection::invalid(key, "contains NUL"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Rejection::bad_json(key, "must be a string")),
    }
}

/// `processes`: an array of objects, each with an object `process_info`.
fn process_items(top: &Map<String, Value>) -> Result<Vec<&Map<String, Value>>, Rejection> {
    let Some(Value::Array(items)) = top.get("processes") else {
        return Err(Rejection::bad_json("processes", "must be an array"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(item) = item else {
                return Err(Rejection::bad_json(
                    format!("processes[{i}]"),
                    "not an object",
                ));
            };
            match item.get("process_info") {
                Some(Value::Object(info)) => Ok(info),
                _ => Err(Rejection::bad_json(
                    format!("processes[{i}].process_info"),
                    "must be an object",
                )),
            }
        })
        .collect()
}
