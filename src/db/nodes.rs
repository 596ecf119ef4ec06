//! The database nodes and which one is the writer.
//!
//! With one URL (`database.url`) that server is always the writer, as it always was.
//! With several (`database.urls`, a Galera cluster) each node has its own pool and a
//! health task checks every node about once a second: a node is healthy when it
//! answers within the probe timeout and is Synced (`wsrep_local_state=4`), ready
//! (`wsrep_ready=ON`) and in the Primary component (`wsrep_cluster_status=Primary`);
//! a MariaDB without wsrep counts as healthy. The writer is the **first healthy node in
//! list order**: every Parley process with the same list picks the same node (one
//! writer for the whole cluster, so message ids increase in commit order and Galera
//! has no conflicting writes to certify), and the first node is used again once it
//! has rejoined and stayed healthy for `STABLE` (see `choose` for the brakes on
//! flapping). All work goes to the writer. At a switch no new work starts until the
//! old writer's transactions in flight have ended and the new writer has applied
//! everything committed before (a causal read), so ids stay increasing in commit
//! order.
//!
//! A connection error or a wsrep error seen on any query ([`recheck_soon`], called
//! where driver errors are converted) wakes the health task at once, so a dead or
//! partitioned writer is left within a probe timeout rather than at the next tick.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Pool};
use tokio::sync::{watch, Notify};

use super::DbError;

/// How often every node is checked.
const TICK: Duration = Duration::from_secs(1);
/// Longest a probe (connect and two status queries) may take before the node counts
/// as down: a hung server must not hold the writer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a node must have been healthy to take over from a healthy writer (or
/// to be preferred when the writer fails).
const STABLE: Duration = Duration::from_secs(3);
/// Longest wait for the new writer to apply what was committed before a switch.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(6);
/// Longest wait for the old writer's transactions in flight at a switch.
const DRAIN: Duration = Duration::from_secs(2);
/// Least time between two checks, however many errors ask for one.
const MIN_GAP: Duration = Duration::from_millis(100);

/// Woken when some query saw a connection or wsrep error (any `Db` of the process:
/// an extra check of another instance's nodes costs one round trip).
static RECHECK: Notify = Notify::const_new();

/// Asks every health task for a check now.
pub(crate) fn recheck_soon() {
    RECHECK.notify_waiters();
}

struct Node {
    /// `host:port`, never the credentials (logs, `/api/ready`).
    addr: String,
    opts: Opts,
    /// Replaced by a fresh pool when the node comes back after being down, so no
    /// connection from before its crash is handed out.
    pool: RwLock<Pool>,
    /// Whether the last probe found it down.
    down: AtomicBool,
}

/// Builds a node's pool from its options (the same settings for every node).
pub(crate) type MakePool = Box<dyn Fn(Opts) -> Pool + Send + Sync>;

pub(crate) struct Nodes {
    nodes: Vec<Node>,
    /// The writer's index; `None` while no node is healthy (or before the first check).
    writer: watch::Sender<Option<usize>>,
    switches: AtomicU64,
    retries: AtomicU64,
    started: AtomicBool,
    make_pool: MakePool,
    /// Since when each node has been healthy without a break (`None`: not now).
    since: std::sync::Mutex<Vec<Option<tokio::time::Instant>>>,
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Healthy,
    /// Answers but is not Synced/Primary/ready (joining, donor, non-Primary).
    NotSynced,
    Down,
}

impl Nodes {
    pub(crate) fn new(urls: &[String], make_pool: MakePool) -> Result<Nodes, DbError> {
        if urls.is_empty() {
            return Err(DbError::Url("no database URL".into()));
        }
        let nodes = urls
            .iter()
            .map(|u| {
                let opts = Opts::from_url(u).map_err(|e| DbError::Url(e.to_string()))?;
                Ok(Node {
                    addr: format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
                    pool: RwLock::new(make_pool(opts.clone())),
                    down: AtomicBool::new(false),
                    opts,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        // One server: always the writer, no health task (errors are the caller's).
        let first = (nodes.len() == 1).then_some(0);
        Ok(Nodes {
            nodes,
            writer: watch::Sender::new(first),
            switches: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            started: AtomicBool::new(false),
            make_pool,
            since: std::sync::Mutex::new(vec![None; urls.len()]),
        })
    }

    pub(crate) fn is_cluster(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The writer's address, if there is one now.
    pub(crate) fn writer_addr(&self) -> Option<String> {
        (*self.writer.borrow()).map(|i| self.nodes[i].addr.clone())
    }

    /// Writer changes since start (a metric).
    pub(crate) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn pool_of(&self, i: usize) -> Pool {
        self.nodes[i]
            .pool
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The writer's pool, waiting up to `wait` for one to be chosen (a cluster at
    /// start, or with no node healthy): `Unavailable` after that.
    pub(crate) async fn writer_pool(self: &Arc<Self>, wait: Duration) -> Result<Pool, DbError> {
        self.start_health_task();
        let mut rx = self.writer.subscribe();
        let chosen = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        match chosen {
            Ok(Ok(w)) => {
                let i = (*w).unwrap_or(0);
                drop(w);
                Ok(self.pool_of(i))
            }
            _ => Err(DbError::Unavailable(
                "no database node is healthy (Synced and Primary)".into(),
            )),
        }
    }

    /// The writer's pool now, if there is a writer (metrics, the migration runner).
    pub(crate) fn current_pool(&self) -> Option<Pool> {
        (*self.writer.borrow()).map(|i| self.pool_of(i))
    }

    /// Every node's pool (closing).
    pub(crate) fn pools(&self) -> Vec<Pool> {
        (0..self.nodes.len()).map(|i| self.pool_of(i)).collect()
    }

    /// Starts the health task once (needs a Tokio runtime, so not in `new`). It holds
    /// only a weak reference: it ends when the last `Db` clone is gone.
    fn start_health_task(self: &Arc<Self>) {
        if !self.is_cluster() || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        // Supervised: a check that panicked must not leave the writer fixed forever.
        tokio::spawn(async move {
            loop {
                match tokio::spawn(health_task(weak.clone())).await {
                    Err(e) if e.is_panic() => {
                        tracing::error!("the database health check panicked; restarting it");
                        tokio::time::sleep(TICK).await;
                    }
                    _ => return,
                }
            }
        });
    }

    /// Runs one check of every node now and applies its outcome (tests, start-up).
    pub(crate) async fn check_now(self: &Arc<Self>, probes: &mut [Option<Conn>]) {
        let healths = futures_util::future::join_all(
            self.nodes
                .iter()
                .zip(probes.iter_mut())
                .map(|(n, c)| probe(&n.opts, c)),
        )
        .await;
        self.refresh_pools(&healths);
        let prev = *self.writer.borrow();
        let next = self.choose(prev, &healths);
        if next == prev {
            return;
        }
        if let Some(n) = next {
            // Before any work goes to the new writer: the old one's transactions in
            // flight end (they fail fast on a dead or cut-off node), and the new one
            // has applied every transaction committed anywhere before, so the ids it
            // hands out are above all of them (its AUTO_INCREMENT counters move as it
            // applies rows). Ids then keep increasing in commit order across the
            // switch.
            if let Some(p) = prev {
                // No new work for anyone meanwhile (takers wait for the writer).
                self.writer.send_replace(None);
                self.drain(p).await;
            }
            causal_barrier(&mut probes[n]).await;
        }
        let name = |w: Option<usize>| w.map_or("none".to_string(), |i| self.nodes[i].addr.clone());
        if prev.is_some() || next.is_none() {
            tracing::warn!(from = %name(prev), to = %name(next), "database writer switched");
        } else {
            tracing::info!(writer = %name(next), "database writer chosen");
        }
        if prev.is_some() && next.is_some() {
            self.switches.fetch_add(1, Ordering::Relaxed);
        }
        self.writer.send_replace(next);
    }

    /// The writer after a check: the first healthy node in list order, with two
    /// brakes against flapping (each switch is a moment of `unavailable`): a healthy
    /// writer is kept until a node before it has been healthy for `STABLE`, and when
    /// the writer must go, a node healthy for `STABLE` is preferred to one that has
    /// just come back.
    fn choose(&self, prev: Option<usize>, healths: &[Health]) -> Option<usize> {
        let now = tokio::time::Instant::now();
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        for (i, h) in healths.iter().enumerate() {
            if *h != Health::Healthy {
                since[i] = None;
            } else if since[i].is_none() {
                since[i] = Some(now);
            }
        }
        let stable = |i: usize| since[i].is_some_and(|t| now - t >= STABLE);
        let healthy = |i: usize| since[i].is_some();
        let n = healths.len();
        match prev {
            // At start every healthy node is as good as stable.
            None => (0..n).find(|&i| healthy(i)),
            Some(w) if healthy(w) => Some((0..w).find(|&i| stable(i)).unwrap_or(w)),
            Some(_) => (0..n).find(|&i| stable(i)).or((0..n).find(|&i| healthy(i))),
        }
    }

    /// Waits (at most `DRAIN`) until no connection of node `i`'s pool is in use.
    async fn drain(&self, i: usize) {
        let pool = self.pool_of(i);
        let deadline = tokio::time::Instant::now() + DRAIN;
        while pool.metrics().connections_in_use.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A node back from down gets a fresh pool: the old one's idle connections died
    /// with the server (or the network), and each would cost a failed query to find
    /// out.
    fn refresh_pools(&self, healths: &[Health]) {
        for (i, h) in healths.iter().enumerate() {
            let was_down = self.nodes[i]
                .down
                .swap(*h == Health::Down, Ordering::AcqRel);
            if was_down && *h != Health::Down {
                let fresh = (self.make_pool)(self.nodes[i].opts.clone());
                let old = std::mem::replace(
                    &mut *self.nodes[i]
                        .pool
                        .write()
                        .unwrap_or_else(|p| p.into_inner()),
                    fresh,
                );
                tokio::spawn(async move {
                    let _ = old.disconnect().await;
                });
            }
        }
    }
}

/// Waits until the node has applied everything committed in the cluster before
/// this call (`wsrep_sync_wait` on one read), at most `BARRIER_TIMEOUT` (right after
/// a node died this includes Galera's own wait before it drops the dead member). On
/// a MariaDB without Galera (or before the schema exists) it returns at once. A
/// connection left mid-query (timed out) is dropped, never reused.
async fn causal_barrier(conn: &mut Option<Conn>) {
    let Some(c) = conn.as_mut() else { return };
    let fut = async {
        c.query_drop("SET SESSION wsrep_sync_wait = 1").await?;
        let r = c.query_drop("SELECT MAX(id) FROM messages").await;
        c.query_drop("SET SESSION wsrep_sync_wait = 0").await?;
        r
    };
    match tokio::time::timeout(BARRIER_TIMEOUT, fut).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "causal barrier on the new writer");
            *conn = None;
        }
        Err(_) => {
            tracing::warn!("the new database writer did not catch up in time");
            *conn = None;
        }
    }
}

async fn health_task(nodes: Weak<Nodes>) {
    let mut probes: Vec<Option<Conn>> = match nodes.upgrade() {
        Some(n) => (0..n.nodes.len()).map(|_| None).collect(),
        None => return,
    };
    loop {
        {
            let Some(n) = nodes.upgrade() else { return };
            n.check_now(&mut probes).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = RECHECK.notified() => tokio::time::sleep(MIN_GAP).await,
        }
    }
}

/// One node's health over its own probe connection (not a pooled one: a busy pool
/// must not make a healthy writer look dead), opened again when it broke.
async fn probe(opts: &Opts, conn: &mut Option<Conn>) -> Health {
    let fut = async {
        if conn.is_none() {
            *conn = Some(Conn::new(opts.clone()).await.ok()?);
        }
        let c = conn.as_mut()?;
        // Rows as rows, not tuples: a conversion that does not fit panics.
        let on: Option<mysql_async::Row> = c
            .query_first("SHOW GLOBAL VARIABLES LIKE 'wsrep\\_on'")
            .await
            .ok()?;
        let on = on.and_then(|r| r.get_opt::<String, _>(1)?.ok());
        if !on.is_some_and(|v| v.eq_ignore_ascii_case("ON")) {
            // A MariaDB without Galera: answering is healthy.
            return Some(Health::Healthy);
        }
        let rows: Vec<mysql_async::Row> = c
            .query(
                "SHOW GLOBAL STATUS WHERE Variable_name IN \
                 ('wsrep_ready', 'wsrep_local_state', 'wsrep_cluster_status')",
            )
            .await
            .ok()?;
        let rows: Vec<(String, String)> = rows
            .into_iter()
            .filter_map(|r| Some((r.get_opt(0)?.ok()?, r.get_opt(1)?.ok()?)))
            .collect();
        let get = |k: &str| {
            rows.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let synced = get("wsrep_ready") == Some("ON")
            && get("wsrep_local_state") == Some("4")
            && get("wsrep_cluster_status") == Some("Primary");
        Some(if synced {
            Health::Healthy
        } else {
            Health::NotSynced
        })
    };
    match tokio::time::timeout(PROBE_TIMEOUT, fut).await {
        Ok(Some(h)) => h,
        _ => {
            // Broken or hung: a new connection next time.
            *conn = None;
            Health::Down
        }
    }
}
