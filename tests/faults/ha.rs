//! Database failover: two Parley nodes on a 3-node MariaDB Galera cluster (loopback,
//! private data directories, see testkit's `galera`), traffic from peers on both,
//! and the writer node killed or cut off from its group in the middle of it. Every
//! acknowledged message is stored once and received once, in order.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use parley_testkit::galera::GaleraCluster;

use crate::peer::{Ctl, PeerLog};
use crate::scenario::{reconcile_db, recovery_after, spawn_all, wait_acked, Ring};
use crate::support::{ms, mysql, reliability, wait_until, Parley, Redis, Secrets};

/// The cluster, the database name, a private Redis and two Parley nodes on it,
/// both configured with every Galera node (`database.urls`, node 0 first).
struct Ha {
    cluster: GaleraCluster,
    db: String,
    _redis: Redis,
    n1: Parley,
    n2: Parley,
}

impl Ha {
    async fn start() -> Ha {
        let cluster = GaleraCluster::start(3).await;
        println!("galera: 3 nodes synced in {:?}", cluster.started_in);
        let db = format!("parley_ha_{}", uuid::Uuid::new_v4().simple());
        let redis = Redis::start();
        let env = [
            ("PARLEY__DATABASE__URLS", cluster.urls_setting(&db)),
            ("PARLEY__REDIS__URL", redis.url()),
            ("PARLEY__PRESENCE__NODE_TTL_SECS", "3".to_string()),
        ];
        // `database.urls` wins over the single `database.url` the kit sets.
        let n1 = Parley::start(&cluster.node_url(2, &db), &env).await;
        let n2 = Parley::start(&cluster.node_url(2, &db), &env).await;
        n1.wait_ready(Duration::from_secs(60)).await;
        n2.wait_ready(Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ha {
            cluster,
            db,
            _redis: redis,
            n1,
            n2,
        }
    }

    /// Peers 0–2 on node one, 3–5 on node two; each sends to the next in the ring.
    async fn traffic(&self, tag: &str, secrets: &Secrets) -> (Ring, Ctl, Vec<crate::peer::Peer>) {
        let ring = Ring::create(&self.n1, 6, tag, secrets).await;
        let ctl = Ctl::default();
        let cfgs = (0..6)
            .map(|i| {
                let node = if i < 3 { &self.n1 } else { &self.n2 };
                let mut c = ring.peer(i, vec![node.ws_base()], usize::MAX);
                c.pace = Duration::from_millis(20);
                c.window = 4;
                c
            })
            .collect();
        let peers = spawn_all(cfgs, &ctl);
        wait_acked(&peers, 60, Duration::from_secs(30)).await;
        (ring, ctl, peers)
    }

    /// Both Parley nodes name `addr` as their writer; how long until they did.
    async fn wait_writer(&self, addr: &str, limit: Duration, what: &str) -> Duration {
        let what = format!(
            "{what} ({addr}; now {:?} and {:?})",
            writer(&self.n1).await,
            writer(&self.n2).await
        );
        wait_until(limit, &what, || async {
            writer(&self.n1).await.as_deref() == Some(addr)
                && writer(&self.n2).await.as_deref() == Some(addr)
        })
        .await
    }

    fn url(&self, node: usize) -> String {
        self.cluster.node_url(node, &self.db)
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        // The cluster's own drop removes its data directories, database included.
        self.n1.kill9();
        self.n2.kill9();
    }
}

/// Waits (10 s at most) until every peer has had a send acknowledged after `since`.
async fn all_acked_after(peers: &[crate::peer::Peer], since: Instant, what: &str) {
    wait_until(Duration::from_secs(10), what, || {
        let done = peers
            .iter()
            .all(|p| p.snapshot().acks_after(since).is_some());
        async move { done }
    })
    .await;
}

/// Stops the peers' sending; how many sends were answered `unavailable`, and how
/// many were left without an answer.
fn stop_sending(ctl: &Ctl, peers: &[crate::peer::Peer]) -> (usize, usize) {
    ctl.stop_sending
        .store(true, std::sync::atomic::Ordering::Release);
    let unavailable = peers
        .iter()
        .map(|x| x.snapshot().errors.get("unavailable").copied().unwrap_or(0))
        .sum();
    let hangs = peers.iter().map(|x| x.snapshot().hangs).sum();
    (unavailable, hangs)
}

/// The writer `/api/ready` names, `None` when not ready.
async fn writer(p: &Parley) -> Option<String> {
    let r = p.http.get(p.url("/api/ready")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: serde_json::Value = r.json().await.ok()?;
    v["writer"].as_str().map(str::to_owned)
}

/// Messages stored on `url`'s node as that node sees them, even when it is cut off
/// (`wsrep_dirty_reads`: a non-Primary node refuses reads otherwise).
async fn rows_on(url: &str) -> u64 {
    let mut c = mysql(url).await;
    c.query_drop("SET SESSION wsrep_dirty_reads = ON")
        .await
        .unwrap();
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM messages")
        .await
        .unwrap();
    let _ = c.disconnect().await;
    n.unwrap_or(0)
}

/// Ids stay increasing in commit order across a writer switch: every message first
/// sent after `switched` got a larger id than every message acknowledged before
/// `cut` (what `sync {afterId}` relies on). Returns (largest before, smallest after).
fn ids_increase_across(logs: &[PeerLog], cut: Instant, switched: Instant) -> (u64, u64) {
    let before = logs
        .iter()
        .flat_map(|l| l.sent.iter())
        .filter_map(|s| s.acked.filter(|(_, at)| *at < cut).map(|(id, _)| id))
        .max()
        .expect("messages acknowledged before the fault");
    let after = logs
        .iter()
        .flat_map(|l| l.sent.iter())
        .filter(|s| s.first_sent > switched)
        .filter_map(|s| s.acked.map(|(id, _)| id))
        .min()
        .expect("messages sent and acknowledged after the switch");
    assert!(
        after > before,
        "an id from after the writer switch ({after}) is not above one acknowledged before it ({before})"
    );
    (before, after)
}

/// Every table of the schema is InnoDB with a primary key: what Galera replicates
/// (MyISAM/Aria tables are not replicated; rows without a key replicate poorly).
async fn schema_is_replicable(url: &str, db: &str) {
    let mut c = mysql(url).await;
    let bad: Vec<(String, String)> = c
        .exec(
            "SELECT t.table_name, t.engine FROM information_schema.tables t \
             WHERE t.table_schema = ? AND t.table_type = 'BASE TABLE' AND (t.engine <> 'InnoDB' \
             OR NOT EXISTS (SELECT 1 FROM information_schema.table_constraints k \
               WHERE k.table_schema = t.table_schema AND k.table_name = t.table_name \
               AND k.constraint_type = 'PRIMARY KEY'))",
            (db,),
        )
        .await
        .unwrap();
    let _ = c.disconnect().await;
    assert!(
        bad.is_empty(),
        "tables Galera cannot replicate well: {bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_killed_mid_burst_moves_parley_to_the_next_node_and_back_after_it_rejoins() {
    let _one_at_a_time = crate::support::exclusive().await;
    let mut ha = Ha::start().await;
    let secrets = Secrets::default();
    schema_is_replicable(&ha.url(1), &ha.db).await;
    let (first, second) = (ha.cluster.addr(0), ha.cluster.addr(1));
    ha.wait_writer(&first, Duration::from_secs(5), "node 0 is the writer")
        .await;
    let (_ring, ctl, peers) = ha.traffic("gk", &secrets).await;

    let killed = Instant::now();
    ha.cluster.kill9(0);
    let switch = ha
        .wait_writer(
            &second,
            Duration::from_secs(10),
            "both Parley nodes on node 1",
        )
        .await;
    let switched = Instant::now();
    // Traffic flows on node 1 for a while: every peer has acks after the switch.
    all_acked_after(&peers, switched, "every peer acknowledged after the kill").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Node 0 comes back by state transfer; Parley goes back to it (first in the list).
    let restarting = Instant::now();
    let rejoin = ha.cluster.restart(0).await;
    let back = ha
        .wait_writer(
            &first,
            Duration::from_secs(10),
            "both Parley nodes back on node 0",
        )
        .await;
    let back_at = Instant::now();
    all_acked_after(&peers, back_at, "every peer acknowledged on node 0 again").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (unavailable, hangs) = stop_sending(&ctl, &peers);
    let logs = crate::peer::settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;
    assert_eq!(hangs, 0, "sends left without an answer for 15 s");
    // Reconciled on node 1 (the writer through the outage) and node 0 (rejoined): the
    // same rows on both.
    let report = reconcile_db("galera-kill", &ha.url(1), &logs).await;
    reconcile_db("galera-kill (rejoined node)", &ha.url(0), &logs).await;
    let (before, after) = ids_increase_across(&logs, killed, switched);
    let (_, after_back) = ids_increase_across(&logs, restarting, back_at);
    assert!(
        after_back > after,
        "ids grow again on node 0 ({after_back} vs {after})"
    );
    let recovery = recovery_after(&logs, killed);
    assert!(
        recovery < Duration::from_secs(10),
        "traffic resumed {recovery:?} after the kill"
    );
    let mut fields = vec![
        ("writer_switch", ms(switch)),
        ("recovery", ms(recovery)),
        ("unavailable_errors", unavailable.to_string()),
        ("rejoin", ms(rejoin)),
        ("writer_back", ms(back)),
        ("ids_across_switch", format!("{before}<{after}")),
    ];
    fields.extend(report.fields());
    reliability("galera-writer-kill", &fields);
    ha.n1.assert_logs_clean(&secrets);
    ha.n2.assert_logs_clean(&secrets);
    report.assert_pushed("galera-writer-kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_writer_is_never_written_to_and_parley_moves_to_the_majority() {
    let _one_at_a_time = crate::support::exclusive().await;
    let mut ha = Ha::start().await;
    let secrets = Secrets::default();
    let (first, second) = (ha.cluster.addr(0), ha.cluster.addr(1));
    ha.wait_writer(&first, Duration::from_secs(5), "node 0 is the writer")
        .await;
    let (_ring, ctl, peers) = ha.traffic("gp", &secrets).await;

    let cut = Instant::now();
    ha.cluster.partition(0).await;
    // Its peers keep knocking (and are turned away), so an established connection
    // may show for a moment: it has none at all every now and then.
    wait_until(
        Duration::from_secs(10),
        "node 0 holds no gcomm connection",
        || {
            let n = ha.cluster.gcomm_connections(0);
            async move { n == 0 }
        },
    )
    .await;
    let switch = ha
        .wait_writer(
            &second,
            Duration::from_secs(10),
            "both Parley nodes on the majority",
        )
        .await;
    let switched = Instant::now();
    // What the cut-off node holds, then traffic on the majority: its count must not
    // move (nothing is written to the minority side).
    let isolated_rows = rows_on(&ha.url(0)).await;
    all_acked_after(&peers, switched, "every peer acknowledged on the majority").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rows_on(&ha.url(0)).await,
        isolated_rows,
        "rows appeared on the partitioned node"
    );
    assert!(
        rows_on(&ha.url(1)).await > isolated_rows,
        "the majority took the traffic"
    );
    let majority_status = ha.cluster.status(1).await.expect("node 1 answers");
    assert_eq!(majority_status.cluster_size, 2, "{majority_status:?}");

    // Healed: node 0 catches up and is the writer again.
    let healing = Instant::now();
    let heal = ha.cluster.heal(0).await;
    let back = ha
        .wait_writer(
            &first,
            Duration::from_secs(10),
            "both Parley nodes back on node 0",
        )
        .await;
    let back_at = Instant::now();
    all_acked_after(&peers, back_at, "every peer acknowledged on node 0 again").await;
    let (unavailable, hangs) = stop_sending(&ctl, &peers);
    let logs = crate::peer::settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;
    assert_eq!(hangs, 0, "sends left without an answer for 15 s");
    // Every acknowledged message is on the majority, and on the healed node.
    let report = reconcile_db("galera-partition", &ha.url(1), &logs).await;
    reconcile_db("galera-partition (healed node)", &ha.url(0), &logs).await;
    let (before, after) = ids_increase_across(&logs, cut, switched);
    ids_increase_across(&logs, healing, back_at);
    let recovery = recovery_after(&logs, cut);
    assert!(
        recovery < Duration::from_secs(10),
        "traffic resumed {recovery:?} after the partition"
    );
    let mut fields = vec![
        ("writer_switch", ms(switch)),
        ("recovery", ms(recovery)),
        ("unavailable_errors", unavailable.to_string()),
        ("minority_rows_moved", "0".to_string()),
        ("heal", ms(heal)),
        ("writer_back", ms(back)),
        ("ids_across_switch", format!("{before}<{after}")),
    ];
    fields.extend(report.fields());
    reliability("galera-partition", &fields);
    ha.n1.assert_logs_clean(&secrets);
    ha.n2.assert_logs_clean(&secrets);
    report.assert_pushed("galera-partition");
}

/// Two `parley migrate` runs at once, on two different Galera nodes: the lease row
/// (not `GET_LOCK`, which Galera does not replicate) lets one run the migrations
/// while the other waits; both succeed and each migration is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_started_on_two_galera_nodes_at_once_run_once() {
    let _one_at_a_time = crate::support::exclusive().await;
    let cluster = GaleraCluster::start(3).await;
    let db = format!("parley_ha_{}", uuid::Uuid::new_v4().simple());
    let run = |node: usize| {
        let mut cmd = parley_testkit::binary::command();
        cmd.arg("migrate")
            .env("PARLEY__DATABASE__URL", cluster.node_url(node, &db))
            .env("PARLEY__AUTH__JWT_SECRET", parley_testkit::JWT_SECRET)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("parley migrate")
    };
    let (a, b) = (run(0), run(1));
    for (node, child) in [(0, a), (1, b)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "migrate on node {node}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let migrations = std::fs::read_dir(parley_testkit::util::repo().join("migrations"))
        .unwrap()
        .count() as u64;
    let url = cluster.node_url(2, &db);
    assert_eq!(
        crate::support::count(&url, "SELECT COUNT(*) FROM refinery_schema_history").await,
        migrations,
        "each migration recorded once"
    );
    assert_eq!(
        crate::support::count(&url, "SELECT COUNT(*) FROM parley_leases").await,
        0,
        "the lease was released"
    );
    schema_is_replicable(&url, &db).await;
}
