//! Forward-only migrations from `migrations/`, embedded in the binary and applied by
//! refinery, which checksums each one: an edited migration makes the run fail
//! (`abort_divergent`). A MySQL named lock serializes concurrent runs (two processes
//! starting at once), and the run is a no-op when everything is applied.

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool};

use super::{Db, DbError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

const LOCK_NAME: &str = "parley_migrations";
const LOCK_TIMEOUT_SECS: u32 = 120;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("migrations: {0}")]
    Refinery(#[from] refinery::Error),
    #[error("timed out waiting for another process's migration run (lock {LOCK_NAME})")]
    LockTimeout,
    #[error("database name contains characters other than [A-Za-z0-9_]: {0}")]
    BadDatabaseName(String),
}

/// Creates the database named in `url` when it is missing (needs CREATE privilege).
pub async fn create_database_if_missing(url: &str) -> Result<(), MigrateError> {
    let opts = Opts::from_url(url).map_err(|e| DbError::Url(e.to_string()))?;
    let Some(name) = opts.db_name().map(str::to_owned) else {
        return Ok(());
    };
    // An identifier cannot be a bound parameter; accept only a plain name.
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(MigrateError::BadDatabaseName(name));
    }
    let server = OptsBuilder::from_opts(opts).db_name(None::<String>);
    let mut conn = mysql_async::Conn::new(server)
        .await
        .map_err(DbError::from)?;
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))
    .await
    .map_err(DbError::from)?;
    conn.disconnect().await.map_err(DbError::from)?;
    Ok(())
}

/// Drops the database named in `url` (tests use this to clean up).
pub async fn drop_database(url: &str) -> Result<(), MigrateError> {
    let opts = Opts::from_url(url).map_err(|e| DbError::Url(e.to_string()))?;
    let Some(name) = opts.db_name().map(str::to_owned) else {
        return Ok(());
    };
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(MigrateError::BadDatabaseName(name));
    }
    let server = OptsBuilder::from_opts(opts).db_name(None::<String>);
    let mut conn = mysql_async::Conn::new(server)
        .await
        .map_err(DbError::from)?;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .map_err(DbError::from)?;
    conn.disconnect().await.map_err(DbError::from)?;
    Ok(())
}

/// Applies every pending migration; returns how many were applied by this call.
pub async fn run(db: &Db) -> Result<usize, MigrateError> {
    let mut lock_conn = db.conn().await?;
    // If this future is dropped while holding the lock, the reset on return to the
    // pool releases it (the pool does not reset connections otherwise).
    lock_conn.reset_connection(true);
    let got: Option<i64> = lock_conn
        .exec_first("SELECT GET_LOCK(?, ?)", (LOCK_NAME, LOCK_TIMEOUT_SECS))
        .await
        .map_err(DbError::from)?;
    if got != Some(1) {
        return Err(MigrateError::LockTimeout);
    }
    let result = apply(db.pool()).await;
    // Released explicitly; the lock would also go with the connection.
    let _: Option<i64> = lock_conn
        .exec_first("SELECT RELEASE_LOCK(?)", (LOCK_NAME,))
        .await
        .map_err(DbError::from)?;
    result
}

async fn apply(pool: &Pool) -> Result<usize, MigrateError> {
    let mut pool = pool.clone();
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        // A database migrated by a newer release still serves an older one (a
        // rollback): forward-only migrations keep old code working. An *edited*
        // migration still refuses (divergent checksum).
        .set_abort_missing(false)
        .run_async(&mut pool)
        .await?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "applied migration");
    }
    Ok(report.applied_migrations().len())
}
