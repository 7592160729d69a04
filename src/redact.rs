//! Credentials out of text: URLs as they may be logged or shown.

/// The URL with its passwords replaced, for log lines and error messages:
/// the user-info password and a `password` query parameter (libpq reads
/// one from either). Works on the text rather than a URL parser's idea of
/// it, because a PostgreSQL URL may list several `host:port`s, which URL
/// parsers refuse; everything but the passwords is kept as written.
pub fn redact_url(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return "<unparseable url>".to_owned();
    };
    if scheme.is_empty() || rest.chars().any(char::is_whitespace) {
        return "<unparseable url>".to_owned();
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{hosts}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    if query.is_empty() {
        return format!("{scheme}://{authority}{tail}");
    }
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, format!("#{f}")),
        None => (query, String::new()),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{scheme}://{authority}{path}?{}{fragment}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_the_password_and_keeps_the_rest() {
        let redacted = redact_url("amqp://guest:s3cret@127.0.0.1:5672/%2f");
        assert_eq!(redacted, "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/procinst"),
            "postgres://postgres@127.0.0.1:5432/procinst"
        );
        assert_eq!(redact_url("not a url with hunter2"), "<unparseable url>");
    }

    #[test]
    fn redact_url_hides_passwords_of_multi_host_urls() {
        assert_eq!(
            redact_url(
                "postgres://app:s3cret@db1:5432,db2:5433/procinst?target_session_attrs=read-write"
            ),
            "postgres://app:***@db1:5432,db2:5433/procinst?target_session_attrs=read-write"
        );
    }

    #[test]
    fn redact_url_hides_a_password_query_parameter() {
        assert_eq!(
            redact_url("postgres://app@db1,db2/procinst?sslmode=require&password=s3cret"),
            "postgres://app@db1,db2/procinst?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://app:pw@h/db?password=s3cret#x"),
            "postgres://app:***@h/db?password=***#x"
        );
    }

    #[test]
    fn redact_url_keeps_a_password_containing_at_signs_hidden() {
        let redacted = redact_url("amqp://guest:p@ss@rabbit1:5672/%2f");
        assert_eq!(redacted, "amqp://guest:***@rabbit1:5672/%2f");
    }
}
