//! All SQL lives below this module: one function per query, parameters always bound,
//! driver errors converted to `DbError` in one place (`From<mysql_async::Error>`).

pub mod accounts;
pub mod blocks;
pub mod calls;
pub mod changes;
pub mod chats;
pub mod groups;
pub mod history;
pub mod invites;
pub mod keys;
pub mod media;
pub mod messages;
pub mod migrate;
pub mod nodes;
pub mod push;
pub mod search;
pub mod search_index;
pub mod sessions;
pub mod store;
pub mod users;

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use parley_actors::UserId;
use rand::RngExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// The server refused the transaction for a reason a retry clears: a deadlock or
    /// a Galera certification conflict (1213, rolled back as a whole), or a node not
    /// (or no longer) ready for work (1047, 1180 during a writer switch).
    #[error("database busy, retry: {0}")]
    Retry(String),
    #[error("invalid database url: {0}")]
    Url(String),
    #[error("database error: {0}")]
    Other(#[source] mysql_async::Error),
}

/// MySQL's "Duplicate entry '…' for key '…'".
pub(crate) const ER_DUP_ENTRY: u16 = 1062;
/// "Deadlock found when trying to get lock": an InnoDB deadlock, or on Galera a
/// certification conflict with a transaction committed on another node.
pub(crate) const ER_LOCK_DEADLOCK: u16 = 1213;
/// "WSREP has not yet prepared node for application use": a Galera node that is not
/// Synced in a Primary component (joining, or cut off in a minority).
pub(crate) const ER_UNKNOWN_COM_ERROR: u16 = 1047;
/// "Got error … during COMMIT": a commit the node could not replicate.
pub(crate) const ER_ERROR_DURING_COMMIT: u16 = 1180;
/// "Lock wait timeout exceeded": retried like a deadlock (the statement rolled back).
pub(crate) const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
/// "Connection was killed": Galera aborts a local transaction that lost to a
/// replicated one (brute-force abort).
pub(crate) const ER_CONNECTION_KILLED: u16 = 1927;

impl DbError {
    /// Whether running the same work again may succeed: always safe for `Retry`
    /// (the server rolled the transaction back); for `Unavailable` only where the work
    /// is idempotent (a dropped connection may have committed it).
    pub fn is_retry(&self) -> bool {
        matches!(self, DbError::Retry(_))
    }

    /// For work after a commit: a `Retry` there must not make `retrying` run the
    /// committed transaction again (a second system message, a second change row),
    /// so it becomes `Unavailable`, which only idempotent work retries.
    pub(crate) fn after_commit(self) -> DbError {
        match self {
            DbError::Retry(m) => DbError::Unavailable(m),
            other => other,
        }
    }
}

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
            mysql_async::Error::Server(ref s)
                if matches!(
                    s.code,
                    ER_LOCK_DEADLOCK
                        | ER_UNKNOWN_COM_ERROR
                        | ER_ERROR_DURING_COMMIT
                        | ER_LOCK_WAIT_TIMEOUT
                        | ER_CONNECTION_KILLED
                ) =>
            {
                if s.code != ER_LOCK_DEADLOCK && s.code != ER_LOCK_WAIT_TIMEOUT {
                    // The node may have left the Primary component: check now.
                    nodes::recheck_soon();
                }
                DbError::Retry(format!("{} ({})", s.message, s.code))
            }
            mysql_async::Error::Io(io) => {
                nodes::recheck_soon();
                DbError::Unavailable(io.to_string())
            }
            mysql_async::Error::Driver(d) => {
                nodes::recheck_soon();
                DbError::Unavailable(d.to_string())
            }
            mysql_async::Error::Url(u) => DbError::Url(u.to_string()),
            other => DbError::Other(other),
        }
    }
}

/// Most ids in one `IN (…)` list of a batch query.
pub const MAX_ID_LIST: usize = 512;

/// The length a padded list of `n` items takes: the smallest of 1, 8, 64 and `max`
/// that holds them (`max` bounds every list; callers slice longer inputs). A few
/// lengths mean a few prepared statements, whatever the batch sizes, instead of one
/// per length filling the statement cache.
pub(crate) fn padded_len(n: usize, max: usize) -> usize {
    [1, 8, 64]
        .into_iter()
        .find(|&b| b >= n && b < max)
        .unwrap_or(max.max(n))
}

/// `items`, then its last item again up to `padded_len`: for `IN` lists, unions and
/// upserts, where a repeated last item changes nothing. Empty stays empty.
pub(crate) fn padded<T>(items: &[T], max: usize) -> impl Iterator<Item = &T> {
    let len = if items.is_empty() {
        0
    } else {
        padded_len(items.len(), max)
    };
    (0..len).map(move |i| &items[i.min(items.len() - 1)])
}

/// `?,?,…` and its parameters for an `IN` list of ids, padded (see [`padded`]); at
/// most `MAX_ID_LIST` ids.
pub(crate) fn id_list(ids: impl IntoIterator<Item = u64>) -> (String, Vec<mysql_async::Value>) {
    let mut params: Vec<mysql_async::Value> = ids.into_iter().map(Into::into).collect();
    if let Some(last) = params.last().cloned() {
        params.resize(padded_len(params.len(), MAX_ID_LIST), last);
    }
    (vec!["?"; params.len()].join(","), params)
}

tokio::task_local! {
    /// The signed-in user the current task works for: their share of the pool applies
    /// to every connection it takes (set for each authenticated `/api` request and for
    /// each store call made for a WebSocket session, see [`acting_for`]).
    static ACTING_FOR: UserId;
}

/// Runs `work` on behalf of `user`: while it runs, the connections it takes count
/// against `user`'s share of the pool (`database.per_user_connections`), so one
/// account can never hold more than a few of them whatever it sends.
pub async fn acting_for<F: Future>(user: UserId, work: F) -> F::Output {
    ACTING_FOR.scope(user, work).await
}

/// Each user's share of the pool: at most `per_user` connections held at once.
struct Shares {
    per_user: usize,
    slots: DashMap<UserId, Arc<Semaphore>>,
}

/// One of a user's slots, held with the connection it admitted.
struct Slot {
    user: UserId,
    shares: Arc<Shares>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Shares {
    async fn take(self: &Arc<Self>, user: UserId) -> Slot {
        // Cloned under the map's shard lock, so `Slot::drop` cannot remove an entry
        // someone is about to wait on.
        let sem = self
            .slots
            .entry(user)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_user)))
            .clone();
        // The semaphore is never closed.
        let permit = sem.acquire_owned().await.ok();
        Slot {
            user,
            shares: self.clone(),
            permit,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        // Forget users with nothing held or awaited: the map stays as small as the
        // set of users with a query running.
        self.shares
            .slots
            .remove_if(&self.user, |_, s| Arc::strong_count(s) == 1);
    }
}

/// A pooled connection, with the user's slot it took (returned with it).
pub(crate) struct DbConn {
    // Field order: the connection goes back to the pool before the slot is freed.
    conn: Conn,
    _slot: Option<Slot>,
}

impl Deref for DbConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// The connection pools (one per node, see [`nodes`]) and the way to the writer.
/// `Pool::new` never fails or connects: readiness is `ping`.
#[derive(Clone)]
pub struct Db {
    nodes: Arc<nodes::Nodes>,
    acquire_timeout: Duration,
    shares: Arc<Shares>,
    /// Stored messages waiting for the search indexer (`crate::search_index`).
    search_queue: Arc<search_index::SearchQueue>,
}

impl Db {
    /// A pool with `Settings`' default acquire timeout and per-user share (the one
    /// place defaults live); `with_…` sets the configured ones.
    pub fn connect(url: &str, pool_max: usize) -> Result<Db, DbError> {
        Db::connect_nodes(&[url.to_owned()], pool_max)
    }

    /// One pool per node URL; all work goes to the writer (see [`nodes`]). One URL is
    /// a single server, always the writer.
    pub fn connect_nodes(urls: &[String], pool_max: usize) -> Result<Db, DbError> {
        let defaults = crate::config::Settings::default().database;
        let constraints = PoolConstraints::new(0, pool_max.max(1))
            .ok_or_else(|| DbError::Url("database.pool_max must be at least 1".into()))?;
        let make_pool = move |opts: Opts| {
            let opts = OptsBuilder::from_opts(opts)
                // No COM_RESET_CONNECTION when a connection goes back to the pool: it
                // would drop the prepared-statement cache (every query prepared again)
                // and cost a round trip plus the init statement each time. Nothing here
                // leaves session state behind (transactions end or roll back on drop).
                .pool_opts(
                    PoolOpts::default()
                        .with_constraints(constraints)
                        .with_reset_connection(false),
                )
                // Times are stored and read as UTC; utf8mb4 end to end.
                .init(vec!["SET time_zone = '+00:00', NAMES utf8mb4"]);
            Pool::new(opts)
        };
        Ok(Db {
            nodes: Arc::new(nodes::Nodes::new(urls, Box::new(make_pool))?),
            acquire_timeout: Duration::from_millis(defaults.acquire_timeout_ms.max(1)),
            shares: Arc::new(Shares {
                per_user: defaults.per_user_connections.max(1),
                slots: DashMap::new(),
            }),
            search_queue: Arc::new(search_index::SearchQueue::new()),
        })
    }

    /// How long taking a connection may wait (for a free one, or for the user's
    /// share) before the caller is answered `unavailable`.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Db {
        self.acquire_timeout = timeout;
        self
    }

    /// Most connections one user's requests and sessions hold at once.
    pub fn with_per_user_connections(mut self, n: usize) -> Db {
        self.shares = Arc::new(Shares {
            per_user: n.max(1),
            slots: DashMap::new(),
        });
        self
    }

    /// The writer's pool, once there is a writer (`Unavailable` after the acquire
    /// timeout otherwise).
    pub async fn pool(&self) -> Result<Pool, DbError> {
        self.nodes.writer_pool(self.acquire_timeout).await
    }

    /// The writer's pool now, if one is chosen (metrics).
    pub fn current_pool(&self) -> Option<Pool> {
        self.nodes.current_pool()
    }

    /// `host:port` of the node all work goes to now, `None` while no node is healthy.
    pub fn writer(&self) -> Option<String> {
        self.nodes.writer_addr()
    }

    /// Database work run again after a retryable error, since start.
    pub fn retries(&self) -> u64 {
        self.nodes.retries()
    }

    /// How many times the writer moved to another node since start.
    pub fn writer_switches(&self) -> u64 {
        self.nodes.switches()
    }

    /// Runs `work` again while it fails with an error a retry may clear — `Retry`
    /// always, `Unavailable` too when `idempotent` (the writer may be changing; a
    /// dropped connection may have committed, so only work that is safe to repeat
    /// retries it) — with jittered backoff, so two processes that collided do not
    /// collide again in step. On one server for about 2 s; on a cluster for up to
    /// 8 s, longer than a writer switch takes (a commit on a writer cut off from its
    /// group blocks until Galera gives up on it, seconds): a message that failed over
    /// is then stored before the next one of its chat, not overtaken by it. Past
    /// that the caller answers `unavailable`.
    pub async fn retrying<T, F, Fut>(&self, idempotent: bool, mut work: F) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let (attempts, budget) = if self.nodes.is_cluster() {
            (16, Duration::from_secs(8))
        } else {
            (5, Duration::from_secs(2))
        };
        let started = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let e = match work().await {
                Err(e) if e.is_retry() || (idempotent && matches!(e, DbError::Unavailable(_))) => e,
                other => return other,
            };
            let base = 50u64 << (attempt - 1).min(4);
            let pause = Duration::from_millis(base + rand::rng().random_range(0..=base / 2));
            if attempt >= attempts || started.elapsed() + pause > budget {
                return Err(e);
            }
            tracing::debug!(error = %e, attempt, "retrying database work");
            self.nodes.count_retry();
            tokio::time::sleep(pause).await;
        }
    }

    /// A pooled connection, within the acting user's share (if any), or
    /// `Unavailable` once `acquire_timeout` has passed: never an unbounded wait.
    pub(crate) async fn conn(&self) -> Result<DbConn, DbError> {
        let user = ACTING_FOR.try_with(|u| *u).ok();
        let take = async {
            let slot = match user {
                Some(u) => Some(self.shares.take(u).await),
                None => None,
            };
            let conn = self
                .nodes
                .writer_pool(self.acquire_timeout)
                .await?
                .get_conn()
                .await?;
            Ok::<_, DbError>(DbConn { conn, _slot: slot })
        };
        tokio::time::timeout(self.acquire_timeout, take)
            .await
            .map_err(|_| {
                DbError::Unavailable(match user {
                    Some(_) => {
                        "no database connection free in time (pool or this user's share busy)"
                            .into()
                    }
                    None => "no database connection free in time".into(),
                })
            })?
    }

    /// Connections one user holds now (tests and metrics).
    pub fn held_by(&self, user: UserId) -> usize {
        self.shares
            .slots
            .get(&user)
            .map_or(0, |s| self.shares.per_user - s.available_permits())
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
        for pool in self.nodes.pools() {
            if let Err(e) = pool.disconnect().await {
                tracing::warn!(error = %e, "closing the database pool");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MariaDB the tests use (see tests/api/helpers.rs).
    fn server() -> String {
        std::env::var("PARLEY_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
    }

    #[tokio::test]
    async fn one_user_holds_at_most_their_share_and_others_are_not_kept_waiting() {
        let db = Db::connect(&server(), 8)
            .expect("url")
            .with_per_user_connections(2)
            .with_acquire_timeout(Duration::from_millis(300));
        let (greedy, other) = (UserId(1), UserId(2));
        let a = acting_for(greedy, db.conn()).await.expect("first");
        let b = acting_for(greedy, db.conn()).await.expect("second");
        assert_eq!(db.held_by(greedy), 2);
        // A third waits for the user's own share, then gives up: `unavailable`.
        let started = std::time::Instant::now();
        let third = acting_for(greedy, db.conn()).await;
        assert!(
            matches!(third, Err(DbError::Unavailable(_))),
            "a third connection"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        // Someone else is served at once, and so is work for no user (the writer).
        let started = std::time::Instant::now();
        let c = acting_for(other, db.conn()).await.expect("another user");
        let d = db.conn().await.expect("no user");
        assert!(started.elapsed() < Duration::from_millis(300));
        assert_eq!(db.held_by(other), 1);
        // A connection given back frees a slot; an idle user is forgotten.
        drop(a);
        let e = acting_for(greedy, db.conn())
            .await
            .expect("after one came back");
        drop((b, c, d, e));
        assert_eq!(db.held_by(greedy), 0);
        assert!(
            db.shares.slots.is_empty(),
            "users with nothing held are forgotten"
        );
        db.close().await;
    }

    #[tokio::test]
    async fn with_the_first_node_down_the_next_healthy_one_is_the_writer() {
        use mysql_async::prelude::Queryable;
        let dead = format!(
            "mysql://root@127.0.0.1:{}/",
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        );
        let live = Opts::from_url(&server()).expect("url");
        let db = Db::connect_nodes(&[dead, server()], 4)
            .expect("urls")
            .with_acquire_timeout(Duration::from_secs(5));
        // Nothing is chosen before the first check; the first query waits for it.
        let mut c = db.conn().await.expect("a connection to the live node");
        c.query_drop("SELECT 1").await.expect("a query");
        drop(c);
        // A MariaDB without wsrep counts as healthy; credentials never appear.
        assert_eq!(
            db.writer(),
            Some(format!("{}:{}", live.ip_or_hostname(), live.tcp_port()))
        );
        assert_eq!(db.writer_switches(), 0);
        db.ping(Duration::from_secs(2)).await.expect("ping");
        db.close().await;
    }

    #[tokio::test]
    async fn no_healthy_node_is_unavailable_within_the_acquire_timeout() {
        let dead = |_| {
            format!(
                "mysql://root@127.0.0.1:{}/",
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port()
            )
        };
        let urls: Vec<String> = (0..2).map(dead).collect();
        let db = Db::connect_nodes(&urls, 4)
            .expect("urls")
            .with_acquire_timeout(Duration::from_millis(700));
        let t = std::time::Instant::now();
        let r = db.conn().await;
        assert!(matches!(r, Err(DbError::Unavailable(_))), "no node");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(db.writer(), None);
    }

    /// The server's own error numbers (raised with SIGNAL) map to `Retry`, and
    /// `retrying` runs work again only when that is safe.
    #[tokio::test]
    async fn deadlocks_and_wsrep_refusals_are_retried_and_other_errors_are_not() {
        use mysql_async::prelude::Queryable;
        let db = Db::connect(&server(), 4).expect("url");
        for code in [1213, 1047, 1180] {
            let mut c = db.conn().await.expect("conn");
            let e = c
                .query_drop(format!(
                    "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = {code}, MESSAGE_TEXT = 'test'"
                ))
                .await
                .map_err(DbError::from)
                .expect_err("signalled");
            assert!(matches!(e, DbError::Retry(_)), "{code}: {e:?}");
            // Answered 503 `unavailable`, never 500.
            assert_eq!(
                actix_web::ResponseError::status_code(&crate::error::ApiError::from(e)),
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE
            );
        }
        // Fails twice with a conflict, then succeeds: three runs.
        let runs = std::sync::atomic::AtomicU32::new(0);
        let out = db
            .retrying(false, || async {
                let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n < 2 {
                    Err(DbError::Retry("conflict".into()))
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(out.expect("third run"), 2);
        assert_eq!(db.retries(), 2);
        // A dropped connection is retried only for idempotent work.
        let runs = std::sync::atomic::AtomicU32::new(0);
        let out: Result<(), DbError> = db
            .retrying(false, || async {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(DbError::Unavailable("reset".into()))
            })
            .await;
        assert!(out.is_err());
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        let runs = std::sync::atomic::AtomicU32::new(0);
        let t = std::time::Instant::now();
        let out: Result<(), DbError> = db
            .retrying(true, || async {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(DbError::Unavailable("reset".into()))
            })
            .await;
        assert!(matches!(out, Err(DbError::Unavailable(_))));
        let n = runs.load(std::sync::atomic::Ordering::SeqCst);
        assert!((2..=5).contains(&n), "{n} runs");
        assert!(
            t.elapsed() <= Duration::from_millis(2100),
            "{:?}",
            t.elapsed()
        );
        // Anything else is not retried at all.
        let runs = std::sync::atomic::AtomicU32::new(0);
        let out: Result<(), DbError> = db
            .retrying(true, || async {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(DbError::Mapping("bad row".into()))
            })
            .await;
        assert!(matches!(out, Err(DbError::Mapping(_))));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        db.close().await;
    }

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

    #[test]
    fn padded_lists_repeat_the_last_item_up_to_a_few_lengths_within_their_bound() {
        let rows: Vec<(u64, u64)> = (1..=10).map(|i| (i, i * 10)).collect();
        let out: Vec<_> = padded(&rows, 256).copied().collect();
        assert_eq!(out.len(), 64);
        assert_eq!(&out[..10], &rows[..]);
        assert!(out[10..].iter().all(|r| *r == (10, 100)));
        // The bound is a length of its own, and no list is padded past it.
        assert_eq!(padded_len(9, 32), 32);
        assert_eq!(padded_len(65, 256), 256);
        assert_eq!(padded_len(64, 64), 64);
        assert_eq!(padded_len(2, 8), 8);
        assert_eq!(padded(&[7u64], 512).count(), 1);
        assert_eq!(padded::<u64>(&[], 512).count(), 0);
    }
}
