use tokio_postgres::error::SqlState;

/// What went wrong talking to PostgreSQL, and whether waiting can fix it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database connection available")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error")]
    Db(#[from] tokio_postgres::Error),
    #[error("cannot build the database pool")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
    /// Concurrent writers kept winning the same rows; retried later.
    #[error("lost the race for the same rows to other writers too often")]
    Contended,
}

impl StoreError {
    /// True when the database, not the data, is at fault: the connection
    /// broke, the server is starting or stopping, or it chose a victim among
    /// concurrent transactions. Such work is retried, never answered.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::Contended => true,
            StoreError::Build(_) | StoreError::Migration(_) => false,
            StoreError::Db(e) => match e.code() {
                None => true,
                Some(state) => is_transient_state(state),
            },
        }
    }

    /// True for a unique-constraint violation: a concurrent worker won a race.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION))
    }
}

fn is_transient_state(state: &SqlState) -> bool {
    let class = &state.code()[..2];
    // 08 connection, 40 rollback (serialization, deadlock), 53 resources,
    // 55 lock not available, 57 operator intervention (admin shutdown,
    // terminated backend), 58 system error.
    matches!(class, "08" | "40" | "53" | "55" | "57" | "58")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_that_waiting_fixes_are_transient() {
        assert!(is_transient_state(&SqlState::ADMIN_SHUTDOWN));
        assert!(is_transient_state(&SqlState::T_R_DEADLOCK_DETECTED));
        assert!(is_transient_state(&SqlState::CONNECTION_FAILURE));
        assert!(!is_transient_state(&SqlState::UNIQUE_VIOLATION));
        assert!(!is_transient_state(&SqlState::CHARACTER_NOT_IN_REPERTOIRE));
        assert!(!is_transient_state(&SqlState::UNDEFINED_TABLE));
    }
}
