//! All SQL lives below this module: one function per query, parameters always bound,
//! driver errors converted to `DbError` in one place (`From<mysql_async::Error>`).

pub mod chats;
pub mod keys;
pub mod media;
pub mod messages;
pub mod migrate;
pub mod store;
pub mod users;

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

/// A MySQL error of the kinds callers act on; everything else is `Other`.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server could not be reached (refused, dropped, timed out).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique key was hit; `key` is the index name (e.g. `uq_users_email`).
    #[error("duplicate value for {key}")]
    Duplicate { key: String },
    /// A row did not have the shape its query promised.
    #[error("unexpected row: {0}")]
    Mapping(String),
    #[error("invalid database url: {0}")]
    Url(String),
    #[error("database error: {0}")]
    Other(#[source] mysql_async::Error),
}

/// MySQL's "Duplicate entry '…' for key '…'".
pub(crate) const ER_DUP_ENTRY: u16 = 1062;

impl From<mysql_async::Error> for DbError {
    fn from(e: mysql_async::Error) -> Self {
        match e {
            mysql_async::Error::Server(ref s) if s.code == ER_DUP_ENTRY => DbError::Duplicate {
                key: s
                    .message
                    .rsplit("for key '")
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('\'')
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            },
            mysql_async::Error::Io(io) => DbError::Unavailable(io.to_string()),
            mysql_async::Error::Driver(d) => DbError::Unavailable(d.to_string()),
            mysql_async::Error::Url(u) => DbError::Url(u.to_string()),
            other => DbError::Other(other),
        }
    }
}

/// Most ids in one `IN (…)` list of a batch query.
pub const MAX_ID_LIST: usize = 512;

/// `?,?,…` and its parameters for an `IN` list of ids, padded (with the last id) to
/// one of a few lengths, so batch queries of any size reuse a handful of prepared
/// statements instead of filling the statement cache with one per length.
pub(crate) fn id_list(ids: impl IntoIterator<Item = u64>) -> (String, Vec<mysql_async::Value>) {
    let mut params: Vec<mysql_async::Value> = ids.into_iter().map(Into::into).collect();
    let len = [1, 8, 64, MAX_ID_LIST]
        .into_iter()
        .find(|&b| b >= params.len())
        .unwrap_or(params.len());
    if let Some(last) = params.last().cloned() {
        params.resize(len, last);
    }
    (vec!["?"; params.len()].join(","), params)
}

/// The connection pool. `Pool::new` never fails or connects: readiness is `ping`.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

impl Db {
    pub fn connect(url: &str, pool_max: usize) -> Result<Db, DbError> {
        let opts = Opts::from_url(url).map_err(|e| DbError::Url(e.to_string()))?;
        let constraints = PoolConstraints::new(0, pool_max.max(1))
            .ok_or_else(|| DbError::Url("database.pool_max must be at least 1".into()))?;
        let opts = OptsBuilder::from_opts(opts)
            // No COM_RESET_CONNECTION when a connection goes back to the pool: it
            // would drop the prepared-statement cache (every query prepared again)
            // and cost a round trip plus the init statement each time. Nothing here
            // leaves session state behind (transactions end or roll back on drop;
            // the migration lock's connection opts back in to the reset).
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    .with_reset_connection(false),
            )
            // Times are stored and read as UTC; utf8mb4 end to end.
            .init(vec!["SET time_zone = '+00:00', NAMES utf8mb4"]);
        Ok(Db {
            pool: Pool::new(opts),
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) async fn conn(&self) -> Result<mysql_async::Conn, DbError> {
        Ok(self.pool.get_conn().await?)
    }

    /// A real round trip, bounded so a dead server cannot hang the caller.
    pub async fn ping(&self, timeout: Duration) -> Result<(), DbError> {
        use mysql_async::prelude::Queryable;
        let fut = async {
            let mut conn = self.conn().await?;
            conn.query_drop("SELECT 1").await?;
            Ok::<_, DbError>(())
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| DbError::Unavailable("ping timed out".into()))?
    }

    pub async fn close(self) {
        if let Err(e) = self.pool.disconnect().await {
            tracing::warn!(error = %e, "closing the database pool");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_are_padded_to_a_few_lengths_with_the_last_id() {
        for (n, len) in [(1, 1), (2, 8), (8, 8), (9, 64), (65, 512), (512, 512)] {
            let (sql, params) = id_list(1..=n as u64);
            assert_eq!(params.len(), len, "{n} ids");
            assert_eq!(sql.matches('?').count(), len, "{n} ids");
            assert_eq!(params.last(), Some(&mysql_async::Value::from(n as u64)));
        }
        let (sql, params) = id_list([]);
        assert!(sql.is_empty() && params.is_empty());
    }
}
