//! Dependencies go away under traffic: MariaDB for 10 s, Redis under two nodes, and
//! one of two nodes killed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::peer::{ws_url, Conn, Ctl, Event};
use crate::scenario::{reconcile_db, recovery_after, spawn_all, wait_acked, Ring};
use crate::support::{ms, reliability, wait_until, Mariadb, Parley, Redis, Secrets, TestDb};

/// Sends a probe message and waits for its reply; (reply, how long it took).
async fn probe_send(
    c: &mut Conn,
    chat: u64,
    client_id: &str,
) -> (Result<serde_json::Value, String>, Duration) {
    let t = Instant::now();
    c.send(json!({"event": "message:send", "ref": client_id, "data": {
        "chatId": chat, "clientId": client_id, "kind": "text", "content": format!("probe {client_id}")}}));
    let r = c.reply(client_id, Duration::from_secs(15)).await;
    (r, t.elapsed())
}

/// Resends `client_id` until it is acknowledged (retrying on `unavailable`).
async fn send_until_acked(
    c: &mut Conn,
    chat: u64,
    client_id: &str,
    limit: Duration,
) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        let (r, _) = probe_send(c, chat, client_id).await;
        match r {
            Ok(v) if v["event"] == "ack" => return Ok(t.elapsed()),
            Ok(v) if v["data"]["code"] == "unavailable" && t.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(300)).await
            }
            other => return Err(format!("after {:?}: {other:?}", t.elapsed())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_stopped_for_10s_gives_unavailable_and_parley_recovers_by_itself() {
    let _one_at_a_time = crate::support::exclusive().await;
    let mut mdb = Mariadb::start().await;
    let url = mdb.url("parley_fault");
    let secrets = Secrets::default();
    let p = Parley::start(&url, &[]).await;
    let ring = Ring::create(&p, 4, "db", &secrets).await;
    // A chat nobody uses before the outage: its room first starts while MySQL is down.
    let cold_a = p.register("cold0", &secrets).await;
    let cold_b = p.register("cold1", &secrets).await;
    let cold_chat = p.direct_chat(&cold_a, &cold_b).await;

    let ctl = Ctl::default();
    let cfgs = (0..4)
        .map(|i| {
            let mut c = ring.peer(i, vec![p.ws_base()], usize::MAX);
            c.pace = Duration::from_millis(20);
            c.window = 4;
            c
        })
        .collect();
    let peers = spawn_all(cfgs, &ctl);
    wait_acked(&peers, 40, Duration::from_secs(20)).await;
    // A second session of user 0 (its chat's room is warm) and the cold chat's user.
    let (mut warm, _) = Conn::ready(&ws_url(&p.ws_base(), &ring.users[0].token)).await;
    let (mut cold, _) = Conn::ready(&ws_url(&p.ws_base(), &cold_a.token)).await;

    let down = Instant::now();
    mdb.stop().await;
    let stopped = Instant::now();
    let mut ready_503 = 0;
    let mut ready_other = Vec::new();
    let mut slowest_reply = Duration::ZERO;
    let mut n = 0;
    while down.elapsed() < Duration::from_secs(10) {
        match p.status("/api/ready").await {
            503 => ready_503 += 1,
            s => ready_other.push(s),
        }
        n += 1;
        let (r, took) = probe_send(&mut warm, ring.chats[0], &format!("warm-{n}")).await;
        slowest_reply = slowest_reply.max(took);
        let r = r.unwrap_or_else(|e| panic!("send while MySQL is down: {e}"));
        assert_eq!(r["event"], "error", "acknowledged while MySQL is down: {r}");
        assert_eq!(r["data"]["code"], "unavailable", "{r}");
        let (r, took) = probe_send(&mut cold, cold_chat, &format!("cold-{n}")).await;
        slowest_reply = slowest_reply.max(took);
        let r = r.unwrap_or_else(|e| panic!("send to a cold chat while MySQL is down: {e}"));
        assert_eq!(r["event"], "error", "{r}");
        assert_eq!(r["data"]["code"], "unavailable", "{r}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(
        ready_503 >= 3 && ready_other.is_empty(),
        "/api/ready while down: {ready_503} × 503, others {ready_other:?}"
    );
    assert!(
        slowest_reply < Duration::from_secs(5),
        "a send waited {slowest_reply:?} for its error"
    );
    assert_eq!(p.status("/api/health").await, 200);

    let restarting = Instant::now();
    mdb.launch().await;
    let db_up = Instant::now();
    let ready_after = p.wait_ready(Duration::from_secs(30)).await;
    // The warm chat takes messages again, with no restart of Parley.
    let warm_recovery = send_until_acked(
        &mut warm,
        ring.chats[0],
        "warm-after",
        Duration::from_secs(20),
    )
    .await
    .expect("a warm chat accepts messages again");
    tokio::time::sleep(Duration::from_secs(2)).await;
    ctl.stop_sending
        .store(true, std::sync::atomic::Ordering::Release);
    let acked_during: usize = peers
        .iter()
        .map(|x| x.snapshot().acked_between(stopped, restarting))
        .sum();
    let unavailable: usize = peers
        .iter()
        .map(|x| x.snapshot().errors.get("unavailable").copied().unwrap_or(0))
        .sum();
    let hangs: usize = peers.iter().map(|x| x.snapshot().hangs).sum();
    let logs = crate::peer::settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;
    let report = reconcile_db("mariadb", &url, &logs).await;
    assert_eq!(hangs, 0, "sends left without an answer for 15 s");
    assert!(unavailable > 0, "peers were told `unavailable`");
    assert_eq!(
        acked_during, 0,
        "nothing can be acknowledged (stored) while MySQL is down"
    );
    let mut fields = vec![
        ("acked_during", acked_during.to_string()),
        ("unavailable_errors", unavailable.to_string()),
        ("ready_503", ready_503.to_string()),
        ("slowest_error", ms(slowest_reply)),
        ("outage", ms(db_up - down)),
        ("ready_after", ms(ready_after)),
        ("recovery", ms(recovery_after(&logs, db_up))),
        ("warm_chat_recovery", ms(warm_recovery)),
    ];
    fields.extend(report.fields());
    p.assert_logs_clean(&secrets);
    report.assert_pushed("mariadb-outage");

    // A chat whose room first started during the outage must work again too.
    let cold_recovery =
        send_until_acked(&mut cold, cold_chat, "cold-after", Duration::from_secs(20)).await;
    fields.push((
        "cold_chat_recovery",
        cold_recovery
            .as_ref()
            .map(|d| ms(*d))
            .unwrap_or_else(|_| "never".into()),
    ));
    reliability("mariadb-outage", &fields);
    cold_recovery.expect("a chat first used during the outage accepts messages after it");
}

/// Two real nodes on one database and a private Redis.
async fn two_nodes(db: &str, redis: &Redis, ttl: u64) -> (Parley, Parley) {
    let env = [
        ("PARLEY__REDIS__URL", redis.url()),
        ("PARLEY__PRESENCE__NODE_TTL_SECS", ttl.to_string()),
    ];
    let n1 = Parley::start(db, &env).await;
    let n2 = Parley::start(db, &env).await;
    n1.wait_ready(Duration::from_secs(20)).await;
    n2.wait_ready(Duration::from_secs(20)).await;
    // Both heartbeats are in Redis before anyone connects.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (n1, n2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_local_delivery_and_cross_node_delivery_resumes() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let mut redis = Redis::start();
    let (n1, n2) = two_nodes(&db.url, &redis, 3).await;
    // Users 0-2 on node one, 3-5 on node two: chats 0→1, 1→2, 3→4, 4→5 are local,
    // 2→3 and 5→0 cross the nodes.
    let ring = Ring::create(&n1, 6, "rd", &secrets).await;
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
    wait_acked(&peers, 60, Duration::from_secs(20)).await;

    let down = Instant::now();
    redis.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        n1.status("/api/ready").await,
        503,
        "node one not ready without Redis"
    );
    assert_eq!(
        n2.status("/api/ready").await,
        503,
        "node two not ready without Redis"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.launch();
    let up = Instant::now();
    let r1 = n1.wait_ready(Duration::from_secs(30)).await;
    let r2 = n2.wait_ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ctl.stop_sending
        .store(true, std::sync::atomic::Ordering::Release);
    let snaps: Vec<_> = peers.iter().map(|x| x.snapshot()).collect();
    let logs = crate::peer::settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;

    // Local chats kept delivering live during the outage.
    let window = (
        down + Duration::from_millis(300),
        up - Duration::from_millis(300),
    );
    let mut acked_during = 0;
    let mut local_live = 0;
    for (sender, recipient) in [(0, 1), (1, 2), (3, 4), (4, 5)] {
        let acked: Vec<u64> = snaps[sender]
            .sent
            .iter()
            .filter_map(|s| {
                s.acked
                    .filter(|(_, t)| *t >= window.0 && *t <= window.1)
                    .map(|(id, _)| id)
            })
            .collect();
        assert!(
            !acked.is_empty(),
            "user {sender} had messages acknowledged during the outage"
        );
        acked_during += acked.len();
        for id in acked {
            let got = logs[recipient].received.iter().find(|m| m.id == id);
            assert!(
                got.is_some_and(|m| m.at <= up),
                "local message {id} ({sender}→{recipient}) was not delivered during the outage"
            );
            local_live += 1;
        }
    }
    for (sender, _) in [(2, 3), (5, 0)] {
        acked_during += snaps[sender].acked_between(window.0, window.1);
    }
    let report = reconcile_db("redis", &db.url, &logs).await;

    // Presence settles: user 3 (node two) coming and going is seen once by user 2 (node one).
    let (mut watcher, _) = Conn::ready(&ws_url(&n1.ws_base(), &ring.users[2].token)).await;
    let (subject, _) = Conn::ready(&ws_url(&n2.ws_base(), &ring.users[3].token)).await;
    let on = watcher
        .wait_event("user:online", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(on["data"]["userId"], ring.users[3].id);
    subject.close();
    let off = watcher
        .wait_event("user:offline", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(off["data"]["userId"], ring.users[3].id);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        match watcher.recv_within(Duration::from_millis(200)).await {
            Some(Event::Frame(v)) => assert!(
                v["event"] != "user:offline" && v["event"] != "user:online",
                "presence repeated: {v}"
            ),
            Some(other) => panic!("{other:?}"),
            None => {}
        }
    }
    let mut fields = vec![
        ("acked_during", acked_during.to_string()),
        ("local_delivered_live", local_live.to_string()),
        ("outage", ms(up - down)),
        ("ready_after", ms(r1.max(r2))),
        ("recovery", ms(recovery_after(&logs, up))),
    ];
    fields.extend(report.fields());
    reliability("redis-outage", &fields);
    n1.assert_logs_clean(&secrets);
    n2.assert_logs_clean(&secrets);
    // Every message reached its online recipients as a push, none only through their
    // own `sync`: after re-registering, each node replays what was stored since its
    // last healthy heartbeat (the gap between Redis returning empty and a node
    // listing its users again is covered).
    report.assert_pushed("redis-outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_users_go_offline_within_the_ttl_and_miss_nothing() {
    let _one_at_a_time = crate::support::exclusive().await;
    let ttl = 3;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let redis = Redis::start();
    let (n1, mut n2) = two_nodes(&db.url, &redis, ttl).await;
    let ring = Ring::create(&n1, 6, "nk", &secrets).await;
    let ctl = Ctl::default();
    let cfgs = (0..6)
        .map(|i| {
            let urls = if i < 3 {
                vec![n1.ws_base()]
            } else {
                vec![n2.ws_base(), n1.ws_base()]
            };
            let mut c = ring.peer(i, urls, usize::MAX);
            c.pace = Duration::from_millis(20);
            c.window = 4;
            // Away long enough for their contacts to see them go offline.
            c.first_pause = Duration::from_secs(ttl + 3);
            c
        })
        .collect();
    let peers = spawn_all(cfgs, &ctl);
    wait_acked(&peers, 60, Duration::from_secs(20)).await;
    let killed = Instant::now();
    n2.kill9();
    // Contacts on node one: user 2 watches user 3, user 0 watches user 5.
    let mut offline_after = Duration::ZERO;
    for (watcher, subject) in [(2usize, 3usize), (0, 5)] {
        let subject_id = ring.users[subject].id;
        wait_until(
            Duration::from_secs(ttl + 4),
            "user:offline after the kill",
            || {
                let l = peers[watcher].snapshot();
                async move {
                    l.presence
                        .iter()
                        .any(|p| p.0 >= killed && p.1 == "user:offline" && p.2 == subject_id)
                }
            },
        )
        .await;
        let l = peers[watcher].snapshot();
        let at = l
            .presence
            .iter()
            .find(|p| p.0 >= killed && p.1 == "user:offline" && p.2 == subject_id)
            .unwrap()
            .0;
        offline_after = offline_after.max(at - killed);
        assert!(
            at - killed <= Duration::from_secs(ttl + 2),
            "offline after {:?} (ttl {ttl}s)",
            at - killed
        );
    }
    // They come back (on node one) and are online once more.
    for (watcher, subject) in [(2usize, 3usize), (0, 5)] {
        let subject_id = ring.users[subject].id;
        wait_until(Duration::from_secs(20), "back online on node one", || {
            let l = peers[watcher].snapshot();
            async move {
                l.presence
                    .iter()
                    .any(|p| p.0 >= killed && p.1 == "user:online" && p.2 == subject_id)
            }
        })
        .await;
    }
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    ctl.stop_sending
        .store(true, std::sync::atomic::Ordering::Release);
    // From here peers close one by one, and those still open rightly hear of it.
    let finishing = Instant::now();
    let logs = crate::peer::settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;
    for l in &logs {
        let offs = l
            .presence
            .iter()
            .filter(|p| p.0 >= killed && p.0 < finishing && p.1 == "user:offline")
            .count();
        assert!(
            offs <= 2,
            "{}: user:offline repeated: {:?}",
            l.name,
            l.presence
        );
    }
    let report = reconcile_db("node-kill", &db.url, &logs).await;
    for l in &logs[3..] {
        assert!(l.connects >= 2, "{} reconnected to node one", l.name);
    }
    let acked_during: usize = logs.iter().map(|l| l.acked_between(killed, back)).sum();
    let mut fields = vec![
        ("acked_during", acked_during.to_string()),
        ("offline_seen_after", ms(offline_after)),
        ("ttl", format!("{ttl}s")),
        (
            "recovery",
            ms(recovery_after(&logs, killed + Duration::from_secs(ttl + 3))),
        ),
    ];
    fields.extend(report.fields());
    reliability("node-kill", &fields);
    n1.assert_logs_clean(&secrets);
    report.assert_pushed("node-kill");
}
