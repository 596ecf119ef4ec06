//! Forward-only migrations from `migrations/`, embedded in the binary and applied by
//! refinery, which checksums each one: an edited migration makes the run fail
//! (`abort_divergent`). A lease row serializes concurrent runs (two processes
//! starting at once, possibly on different Galera nodes), and the run is a no-op when
//! everything is applied.
//!
//! The lease is an InnoDB row rather than `GET_LOCK`: named locks live in one
//! server's memory and Galera does not replicate them, so two processes on two nodes
//! would both "hold" one. A row is replicated and certified like any write: of two
//! processes taking an expired lease at once on two nodes, one commits and the other
//! gets a certification conflict (1213) and tries again.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool};

use super::{Db, DbError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

const LOCK_NAME: &str = "parley_migrations";
/// Longest wait for another process's run.
const LOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// A lease not refreshed for this long is free for the taking (its holder died).
const LEASE_SECS: u32 = 30;
/// How often a running holder refreshes its lease, and a waiter tries again.
const LEASE_REFRESH: Duration = Duration::from_secs(5);
const LEASE_POLL: Duration = Duration::from_millis(250);

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

/// Creates the database on the first of `urls` that accepts it (a Galera node that
/// is down or not Primary refuses; the statement replicates to the others).
pub async fn create_database_if_missing_on_any(urls: &[String]) -> Result<(), MigrateError> {
    let mut last = None;
    for url in urls {
        match create_database_if_missing(url).await {
            Ok(()) => return Ok(()),
            Err(MigrateError::Db(e @ (DbError::Unavailable(_) | DbError::Retry(_)))) => {
                last = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(MigrateError::Db(match last {
        Some(DbError::Retry(m)) => DbError::Unavailable(m),
        Some(e) => e,
        None => DbError::Url("no database URL".into()),
    }))
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
    let holder = uuid::Uuid::new_v4().to_string();
    take_lease(db, &holder).await?;
    // Refreshed while the migrations run, so a long one keeps it; a crashed holder
    // stops refreshing and its lease expires.
    let refresher = {
        let (db, holder) = (db.clone(), holder.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_REFRESH).await;
                if let Err(e) = lease_upsert(&db, &holder).await {
                    tracing::warn!(error = %e, "could not refresh the migration lease");
                }
            }
        })
    };
    let result = match db.pool().await {
        Ok(pool) => apply(&pool).await,
        Err(e) => Err(e.into()),
    };
    refresher.abort();
    // Released explicitly; otherwise it would expire.
    let released = db
        .retrying(true, || async {
            let mut c = db.conn().await?;
            c.exec_drop(
                "DELETE FROM parley_leases WHERE name = ? AND holder = ?",
                (LOCK_NAME, holder.as_str()),
            )
            .await?;
            Ok(())
        })
        .await;
    if let Err(e) = released {
        tracing::warn!(error = %e, "could not release the migration lease (it expires)");
    }
    result
}

/// Waits for the lease (creating its table when missing), at most `LOCK_TIMEOUT`.
async fn take_lease(db: &Db, holder: &str) -> Result<(), MigrateError> {
    let deadline = tokio::time::Instant::now() + LOCK_TIMEOUT;
    db.retrying(true, || async {
        let mut c = db.conn().await?;
        c.query_drop(
            "CREATE TABLE IF NOT EXISTS parley_leases (\
                name VARCHAR(64) NOT NULL PRIMARY KEY, \
                holder CHAR(36) NOT NULL, \
                expires_at DATETIME(3) NOT NULL\
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        )
        .await?;
        Ok(())
    })
    .await?;
    loop {
        match lease_upsert(db, holder).await {
            Ok(true) => return Ok(()),
            Ok(false) | Err(DbError::Retry(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(MigrateError::LockTimeout);
        }
        tokio::time::sleep(LEASE_POLL).await;
    }
}

/// Takes the lease if it is free or expired, or extends it if `holder` has it;
/// whether `holder` has it now.
async fn lease_upsert(db: &Db, holder: &str) -> Result<bool, DbError> {
    let mut c = db.conn().await?;
    let mut tx = c.start_transaction(Default::default()).await?;
    // `holder` is assigned first, so `expires_at` moves only for the holder it ends
    // up with (ours, when it was free, expired or already ours).
    tx.exec_drop(
        "INSERT INTO parley_leases (name, holder, expires_at) \
         VALUES (?, ?, NOW(3) + INTERVAL ? SECOND) \
         ON DUPLICATE KEY UPDATE \
           holder = IF(expires_at < NOW(3), VALUES(holder), holder), \
           expires_at = IF(holder = VALUES(holder), VALUES(expires_at), expires_at)",
        (LOCK_NAME, holder, LEASE_SECS),
    )
    .await?;
    let now: Option<String> = tx
        .exec_first(
            "SELECT holder FROM parley_leases WHERE name = ?",
            (LOCK_NAME,),
        )
        .await?;
    tx.commit().await?;
    Ok(now.as_deref() == Some(holder))
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
