//! Redis with Sentinel under two Parley nodes: the primary is killed (-9) in the
//! middle of a burst of cross-node traffic, Sentinel promotes the replica, and both
//! nodes follow it — cross-node delivery and presence resume within 10 s, nothing
//! acknowledged is lost, duplicated or reordered — and the old primary, restarted,
//! comes back as a replica while Parley stays on the new one.

use std::time::{Duration, Instant};

use parley_testkit::sentinel::SentinelSet;
use serde_json::{json, Value};

use crate::peer::{ws_url, Conn, Ctl, Event};
use crate::scenario::{reconcile_db, spawn_all, wait_acked, Ring};
use crate::support::{ms, reliability, wait_until, Parley, Secrets, TestDb, User};

/// Cross-node delivery and presence must be back within this of the kill.
const RESUME_LIMIT: Duration = Duration::from_secs(10);

/// Two real nodes on one database and on the Sentinels of `set` (no `redis.url`).
async fn two_nodes(db: &str, set: &SentinelSet) -> (Parley, Parley) {
    let env = [
        ("PARLEY__REDIS__SENTINELS", set.sentinels()),
        ("PARLEY__REDIS__MASTER_NAME", set.master_name().to_string()),
        ("PARLEY__PRESENCE__NODE_TTL_SECS", "3".to_string()),
    ];
    let n1 = Parley::start(db, &env).await;
    let n2 = Parley::start(db, &env).await;
    n1.wait_ready(Duration::from_secs(20)).await;
    n2.wait_ready(Duration::from_secs(20)).await;
    // Both heartbeats are in Redis before anyone connects.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (n1, n2)
}

/// `redisPrimary` of the node's `/api/ready` (None while it is not ready).
async fn primary_in_use(n: &Parley) -> Option<String> {
    let r = n.http.get(n.url("/api/ready")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    assert_eq!(body["redis"], "ok", "{body}");
    body["redisPrimary"].as_str().map(str::to_owned)
}

/// Waits until both nodes are ready on the data node at `port`; how long it took.
async fn wait_on_primary(n1: &Parley, n2: &Parley, port: u16, limit: Duration) -> Duration {
    let want = format!("127.0.0.1:{port}");
    wait_until(limit, &format!("both nodes ready on {want}"), || {
        let want = want.clone();
        async move {
            primary_in_use(n1).await.as_deref() == Some(want.as_str())
                && primary_in_use(n2).await.as_deref() == Some(want.as_str())
        }
    })
    .await
}

/// `from` (on one node) sends a probe into `chat` every 200 ms until `to` (on the
/// other node) receives one of them, pushed: how long that took from `since`.
async fn cross_node_delivery(
    from: &mut Conn,
    to: &mut Conn,
    chat: u64,
    tag: &str,
    since: Instant,
) -> Duration {
    let mut n = 0;
    loop {
        assert!(
            since.elapsed() < RESUME_LIMIT + Duration::from_secs(5),
            "{tag}: no cross-node delivery {:?} after the kill",
            since.elapsed()
        );
        n += 1;
        let cid = format!("{tag}-{n}");
        from.send(json!({"event": "message:send", "ref": cid, "data": {
            "chatId": chat, "clientId": cid, "kind": "text", "content": format!("probe {cid}")}}));
        let until = Instant::now() + Duration::from_millis(200);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match to.recv_within(left).await {
                Some(Event::Frame(v))
                    if v["event"] == "message:received"
                        && v["data"]["content"]
                            .as_str()
                            .is_some_and(|c| c.starts_with(&format!("probe {tag}-"))) =>
                {
                    return since.elapsed();
                }
                Some(Event::Frame(_)) => {}
                Some(other) => panic!("{tag}: the receiving socket ended: {other:?}"),
                None => break,
            }
        }
    }
}

/// `subject` connects to `subject_node` and leaves again; `watcher` (a contact on
/// the other node) must see both within `limit`.
async fn presence_round_trip(
    watcher: &mut Conn,
    subject: &User,
    subject_node: &Parley,
    limit: Duration,
) {
    let (c, _) = Conn::ready(&ws_url(&subject_node.ws_base(), &subject.token)).await;
    let on = watcher.wait_event("user:online", limit).await.unwrap();
    assert_eq!(on["data"]["userId"], subject.id, "{on}");
    c.close();
    let off = watcher.wait_event("user:offline", limit).await.unwrap();
    assert_eq!(off["data"]["userId"], subject.id, "{off}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_mid_burst_sentinel_promotes_and_nothing_is_lost() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let mut set = SentinelSet::start().await;
    let first = set.primary_port().await;
    let (n1, n2) = two_nodes(&db.url, &set).await;
    wait_on_primary(&n1, &n2, first, Duration::from_secs(5)).await;

    // Users 0-2 on node one, 3-5 on node two: chats 2→3 and 5→0 cross the nodes.
    let ring = Ring::create(&n1, 6, "sn", &secrets).await;
    let node = |i: usize| if i < 3 { n1.ws_base() } else { n2.ws_base() };
    let ctl = Ctl::default();
    let cfgs = (0..6)
        .map(|i| {
            let mut c = ring.peer(i, vec![node(i)], usize::MAX);
            c.pace = Duration::from_millis(20);
            c.window = 4;
            c
        })
        .collect();
    let peers = spawn_all(cfgs, &ctl);
    // Probes: a sender on node one, its contact on node two (and back for presence).
    let pa = n1.register("snpa", &secrets).await;
    let pb = n1.register("snpb", &secrets).await;
    let probe_chat = n1.direct_chat(&pa, &pb).await;
    let (mut a, _) = Conn::ready(&ws_url(&n1.ws_base(), &pa.token)).await;
    let (mut b, _) = Conn::ready(&ws_url(&n2.ws_base(), &pb.token)).await;
    wait_acked(&peers, 60, Duration::from_secs(20)).await;

    // Mid-burst: kill -9 the primary.
    let killed = Instant::now();
    let old = set.kill9_primary().await;
    assert_eq!(old, first);
    let new = set.wait_promoted(Duration::from_secs(20)).await;
    let promoted = killed.elapsed();
    let delivered = cross_node_delivery(&mut a, &mut b, probe_chat, "after-kill", killed).await;
    let switched = killed.elapsed() + wait_on_primary(&n1, &n2, new, RESUME_LIMIT).await;
    // Presence both ways across the nodes, on the new primary.
    a.close();
    let (mut a, _) = Conn::ready(&ws_url(&n1.ws_base(), &pa.token)).await;
    b.close();
    let off = a
        .wait_event("user:offline", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(off["data"]["userId"], pb.id, "{off}");
    presence_round_trip(&mut a, &pb, &n2, Duration::from_secs(5)).await;
    let presence = killed.elapsed();
    assert!(
        delivered <= RESUME_LIMIT && switched <= RESUME_LIMIT && presence <= RESUME_LIMIT,
        "after the kill: delivery {delivered:?}, both nodes on the new primary {switched:?}, \
         presence {presence:?} (limit {RESUME_LIMIT:?})"
    );

    // The old primary comes back empty, is made a replica; Parley stays on the new
    // primary (past a full Sentinel poll) and cross-node delivery still works.
    set.restart(old).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(set.primary_port().await, new);
    wait_on_primary(&n1, &n2, new, Duration::from_secs(1)).await;
    let (mut b, _) = Conn::ready(&ws_url(&n2.ws_base(), &pb.token)).await;
    let again = Instant::now();
    let after_restart =
        cross_node_delivery(&mut a, &mut b, probe_chat, "after-restart", again).await;
    assert!(
        after_restart < Duration::from_secs(2),
        "cross-node delivery after the old primary returned took {after_restart:?}"
    );
    a.close();
    b.close();

    ctl.stop_sending
        .store(true, std::sync::atomic::Ordering::Release);
    let logs = crate::peer::settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;
    let report = reconcile_db("redis-failover", &db.url, &logs).await;
    let acked_during: usize = logs
        .iter()
        .map(|l| l.acked_between(killed, killed + switched))
        .sum();
    let mut fields = vec![
        ("promoted", ms(promoted)),
        ("delivery_resumed", ms(delivered)),
        ("nodes_switched", ms(switched)),
        ("presence_round_trip_done", ms(presence)),
        ("acked_during", acked_during.to_string()),
    ];
    fields.extend(report.fields());
    reliability("redis-failover", &fields);
    n1.assert_logs_clean(&secrets);
    n2.assert_logs_clean(&secrets);
    // Every message reached its online recipients as a push, none only through their
    // own `sync`: the switch is followed by the replay after each node's floor.
    report.assert_pushed("redis-failover");
}
