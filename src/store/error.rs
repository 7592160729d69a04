use tokio_postgres::error::SqlState;

/// What went wrong talking to PostgreSQL, and whether waiting can fix it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database connection available")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error")]
    Db(#[from] tokio_postgres::Error),
    /// The server refused a COPY before it began. tokio-postgres 0.7 sends
    /// Sync twice for a COPY and the server then answers both, so the
    /// connection is left one reply ahead and is closed, not reused (see
    /// [`super::Round::begin`]).
    #[error("database error")]
    CopyNotStarted(#[source] tokio_postgres::Error),
    #[error("cannot build the database pool")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
    #[error("DATABASE_URL cannot be used")]
    Url(#[from] super::UrlError),
    #[error("cannot prepare TLS for the database")]
    Tls(#[from] super::TlsError),
}

impl StoreError {
    /// True when the database, not the request's data, is at fault, and
    /// waiting may fix it: the connection broke, the server is read-only
    /// after a failover, a privilege or table is missing, it ran out of
    /// resources or failed internally. Such work is kept and retried, never
    /// answered and never dead-lettered.
    ///
    /// Only an error caused by one request's data is that request's fault:
    /// data exceptions (class 22), integrity violations (class 23) other
    /// than unique violations (races, decided again), and program limits
    /// (class 54). Contract section 5.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Build(_)
            | StoreError::Migration(_)
            | StoreError::Url(_)
            | StoreError::Tls(_) => false,
            StoreError::Db(e) | StoreError::CopyNotStarted(e) => {
                !e.code().is_some_and(is_data_fault)
            }
        }
    }

    /// True for a unique-constraint violation: a concurrent worker won a race.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION))
    }

    /// One line for `/readyz` while a batch is retried: the server's own
    /// message and SQLSTATE when it sent one, else the cause chain (which
    /// never holds a password: tokio-postgres does not print its config).
    pub fn readiness_reason(&self) -> String {
        let what = match self {
            StoreError::Db(e) | StoreError::CopyNotStarted(e) => match e.as_db_error() {
                Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
                None => crate::telemetry::error_chain(self),
            },
            _ => crate::telemetry::error_chain(self),
        };
        format!("database: {what}; retrying")
    }

    /// The SQLSTATE, when the server sent one; for logs and `/readyz`.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StoreError::Db(e) | StoreError::CopyNotStarted(e) => e.code().map(SqlState::code),
            _ => None,
        }
    }
}

/// True for the SQLSTATEs a request's own data causes.
fn is_data_fault(state: &SqlState) -> bool {
    if *state == SqlState::UNIQUE_VIOLATION {
        return false;
    }
    matches!(&state.code()[..2], "22" | "23" | "54")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readiness_reason_is_one_line_naming_the_database_and_the_retry() {
        let e = StoreError::Pool(deadpool_postgres::PoolError::Closed);
        assert_eq!(
            e.readiness_reason(),
            "database: no database connection available: Pool has been closed; retrying"
        );
    }

    #[test]
    fn only_data_exceptions_integrity_violations_and_program_limits_blame_the_request() {
        for data in [
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::CHECK_VIOLATION,
            SqlState::FOREIGN_KEY_VIOLATION,
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            SqlState::STATEMENT_TOO_COMPLEX,
        ] {
            assert!(is_data_fault(&data), "{} is the data's fault", data.code());
        }
        for database in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::UNDEFINED_TABLE,
            SqlState::INTERNAL_ERROR,
            SqlState::FEATURE_NOT_SUPPORTED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::CONNECTION_FAILURE,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::DISK_FULL,
        ] {
            assert!(
                !is_data_fault(&database),
                "{} is the database's trouble",
                database.code()
            );
        }
    }
}
