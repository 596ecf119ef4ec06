//! A stalled reader must not starve the database pool (issue 15, item 1).
//!
//! The attack: a client opens `/ws`, writes 40 `sync {afterId:0}` frames in one go
//! into a chat of a few hundred long messages, and never reads. On the old server
//! each sync's query was polled inside the session actor, which stopped being polled
//! while its socket write was blocked: every pooled connection ended up held by a
//! stalled query, and everyone else's login, history and connect hung.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::{raw_ws, text_frame};
use crate::peer::{ws_url, Conn};
use crate::support::{ms, percentile, reliability, Parley, Secrets, TestDb, User};

/// One honest user's round: log in, list chats, load history, send a message and
/// wait for its ack. Latency of each step, or what went wrong.
struct Honest {
    user: User,
    chat: u64,
    conn: Conn,
    seq: usize,
}

impl Honest {
    async fn round(&mut self, p: &Parley) -> Result<Vec<Duration>, String> {
        let limit = Duration::from_secs(10);
        let mut took = Vec::new();
        let t = Instant::now();
        let res = p
            .http
            .post(p.url("/api/auth/login"))
            .timeout(limit)
            .json(&json!({"email": self.user.username, "password": self.user.password}))
            .send()
            .await
            .map_err(|e| format!("login: {e}"))?;
        if res.status() != 200 {
            return Err(format!("login: {}", res.status()));
        }
        took.push(t.elapsed());
        for path in [
            "/api/chats".to_string(),
            format!("/api/messages?chatId={}&limit=50", self.chat),
        ] {
            let t = Instant::now();
            let res = p
                .http
                .get(p.url(&path))
                .timeout(limit)
                .bearer_auth(&self.user.token)
                .send()
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            if res.status() != 200 {
                return Err(format!("{path}: {}", res.status()));
            }
            took.push(t.elapsed());
        }
        self.seq += 1;
        let reference = format!("r{}", self.seq);
        let t = Instant::now();
        self.conn
            .send(json!({"event": "message:send", "ref": reference, "data": {
            "chatId": self.chat, "clientId": format!("h{}-{}", self.user.id, self.seq),
            "kind": "text", "content": "an honest message"}}));
        let reply = self.conn.reply(&reference, limit).await?;
        if reply["event"] != "ack" {
            return Err(format!("send: {reply}"));
        }
        took.push(t.elapsed());
        Ok(took)
    }
}

/// Every honest user runs rounds for `span`; all latencies, and every failure.
async fn honest_load(
    p: &Parley,
    users: &mut [Honest],
    span: Duration,
) -> (Vec<Duration>, Vec<String>) {
    let until = Instant::now() + span;
    let mut all = Vec::new();
    let mut failures = Vec::new();
    let results = futures_util::future::join_all(users.iter_mut().map(|h| async move {
        let mut took = Vec::new();
        let mut failed = Vec::new();
        while Instant::now() < until {
            match h.round(p).await {
                Ok(t) => took.extend(t),
                Err(e) => failed.push(e),
            }
        }
        (took, failed)
    }))
    .await;
    for (t, f) in results {
        all.extend(t);
        failures.extend(f);
    }
    (all, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_syncs_cannot_starve_the_pool() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(
        &db.url,
        &[
            ("PARLEY__DATABASE__POOL_MAX", "32".into()),
            // Twenty logins at once queue for the hasher instead of being refused.
            ("PARLEY__AUTH__HASH_QUEUE", "64".into()),
            // Every honest operation signs in again and then uses the token of the
            // first sign-in: past the per-account cap (50) that one would be revoked
            // (401), which is the cap working, not the pool starving.
            ("PARLEY__AUTH__MAX_SESSIONS_PER_USER", "100000".into()),
            ("PARLEY__PRESENCE__PING_INTERVAL_SECS", "1".into()),
            ("PARLEY__PRESENCE__CLIENT_TIMEOUT_SECS", "6".into()),
        ],
    )
    .await;

    // The attacker's chat: 400 long messages.
    let mallory = p.register("mallory", &secrets).await;
    let accomplice = p.register("accomplice", &secrets).await;
    let loot = p.direct_chat(&mallory, &accomplice).await;
    {
        let mut conn = crate::support::mysql(&db.url).await;
        let long = "x".repeat(6000);
        let rows: Vec<(u64, u64, String, &str, &str)> = (0..400)
            .map(|i| {
                (
                    loot,
                    accomplice.id,
                    format!("seed-{i}"),
                    "text",
                    long.as_str(),
                )
            })
            .collect();
        conn.exec_batch(
            "INSERT INTO messages (chat_id, sender_id, client_id, kind, content) VALUES (?,?,?,?,?)",
            rows,
        )
        .await
        .unwrap();
    }

    // Twenty honest users in ten chats.
    let mut honest = Vec::new();
    for i in 0..10 {
        let a = p.register(&format!("honest{i}a"), &secrets).await;
        let b = p.register(&format!("honest{i}b"), &secrets).await;
        let chat = p.direct_chat(&a, &b).await;
        for u in [a, b] {
            let (conn, _) = Conn::ready(&ws_url(&p.ws_base(), &u.token)).await;
            honest.push(Honest {
                user: u,
                chat,
                conn,
                seq: 0,
            });
        }
    }

    let (warm, _) = honest_load(&p, &mut honest, Duration::from_secs(1)).await;
    assert!(!warm.is_empty());
    let (before, failed_before) = honest_load(&p, &mut honest, Duration::from_secs(5)).await;
    assert!(
        failed_before.is_empty(),
        "baseline failures: {failed_before:?}"
    );

    // RSS sampled through the attack.
    let pid = p.pid();
    let rss_start = crate::support::proc_rss_kib(pid);
    let rss_max = Arc::new(AtomicU64::new(rss_start));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (on, max) = (sampling.clone(), rss_max.clone());
        tokio::spawn(async move {
            while on.load(Ordering::Relaxed) {
                max.fetch_max(crate::support::proc_rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Four attacking sockets: 40 syncs in one write each, then never a read.
    let burst: Vec<u8> = (0..40)
        .flat_map(|i| {
            text_frame(
                &json!({"event": "sync", "ref": format!("s{i}"), "data": {"afterId": 0}})
                    .to_string(),
            )
        })
        .collect();
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let mut s = raw_ws(p.port, &mallory.token, Some(4096)).await;
        s.write_all(&burst).await.unwrap();
        attackers.push(s);
    }
    let attack_started = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (during, failed_during) = honest_load(&p, &mut honest, Duration::from_secs(5)).await;
    let ready = p.status("/api/ready").await;
    let sockets_during = p.metrics().await["parley_websocket_connections"];

    // The stalled sockets are dropped by the server (no pong: the client reads
    // nothing), and nothing they started is left holding anything.
    crate::support::wait_until(Duration::from_secs(20), "attackers cut off", || {
        let p = &p;
        async move { p.metrics().await["parley_websocket_connections"] <= honest_count() as f64 }
    })
    .await;
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let rss_growth_kib = rss_max.load(Ordering::Relaxed).saturating_sub(rss_start);
    let after_attack = attack_started.elapsed();

    let p99_before = percentile(&before, 99.0);
    let p99_during = percentile(&during, 99.0);
    let worst_during = percentile(&during, 100.0);
    reliability(
        "stalled_sync_reader",
        &[
            ("attackers", "4x40 syncs of 400x6KB".into()),
            ("honest_ops_before", before.len().to_string()),
            ("honest_ops_during", during.len().to_string()),
            ("p99_before", ms(p99_before)),
            ("p99_during", ms(p99_during)),
            ("worst_during", ms(worst_during)),
            ("failures_during", failed_during.len().to_string()),
            ("ready_during", ready.to_string()),
            ("rss_growth", format!("{}MiB", rss_growth_kib / 1024)),
            ("attackers_cut_off_after", ms(after_attack)),
            ("sockets_during", sockets_during.to_string()),
        ],
    );
    assert!(
        failed_during.is_empty(),
        "honest users failed during the attack: {:?}",
        &failed_during[..failed_during.len().min(5)]
    );
    assert_eq!(ready, 200, "/api/ready during the attack");
    // Two shared cores: compare against a floor so a 3 ms baseline's jitter is not
    // taken for starvation; the old server's honest users waited 10 s and failed.
    let limit = p99_before.max(Duration::from_millis(25)) * 2;
    assert!(
        p99_during <= limit,
        "honest p99 {p99_during:?} during the attack, {p99_before:?} before (limit {limit:?})"
    );
    assert!(
        rss_growth_kib < 64 * 1024,
        "RSS grew {rss_growth_kib} KiB under four stalled sockets"
    );
    drop(attackers);
    for h in &honest {
        h.conn.close();
    }
    p.assert_logs_clean(&secrets);
}

fn honest_count() -> usize {
    20
}

/// The attacker's reads go nowhere, so what it is sent never grows the server: a
/// second sync while one streams waits its turn, a fourth is told `busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_run_one_at_a_time_per_connection_and_extra_ones_are_busy() {
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let a = p.register("syncer", &secrets).await;
    let b = p.register("other", &secrets).await;
    let chat = p.direct_chat(&a, &b).await;
    {
        let mut conn = crate::support::mysql(&db.url).await;
        let rows: Vec<(u64, u64, String, &str, &str)> = (0..1200)
            .map(|i| (chat, b.id, format!("seed-{i}"), "text", "hello"))
            .collect();
        conn.exec_batch(
            "INSERT INTO messages (chat_id, sender_id, client_id, kind, content) VALUES (?,?,?,?,?)",
            rows,
        )
        .await
        .unwrap();
    }
    let (mut c, _) = Conn::ready(&ws_url(&p.ws_base(), &a.token)).await;
    for i in 0..6 {
        c.send(json!({"event": "sync", "ref": format!("s{i}"), "data": {"afterId": 0}}));
    }
    // Replies in order: the running one and two queued are answered in full, the
    // rest at once with `busy`.
    let mut acks = Vec::new();
    let mut busy = Vec::new();
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while acks.len() + busy.len() < 6 && Instant::now() < deadline {
        let Some(crate::peer::Event::Frame(v)) = c.recv_within(Duration::from_secs(10)).await
        else {
            panic!("connection ended");
        };
        match v["event"].as_str() {
            Some("message:received") => received += 1,
            Some("ack") => acks.push(v),
            Some("error") => {
                assert_eq!(v["data"]["code"], "busy", "{v}");
                busy.push(v["ref"].as_str().unwrap().to_string());
            }
            _ => {}
        }
    }
    assert_eq!(acks.len(), 3, "one running and two queued");
    assert_eq!(busy, vec!["s3", "s4", "s5"]);
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack["ref"], format!("s{i}"));
        assert_eq!(ack["data"]["count"], 500, "{ack}");
        assert_eq!(ack["data"]["hasMore"], true, "{ack}");
    }
    assert_eq!(received, 1500);
    // Paging on from lastId reaches the end with hasMore false.
    let mut after: Value = acks[0]["data"]["lastId"].clone();
    let mut total = 500;
    loop {
        c.send(json!({"event": "sync", "ref": "next", "data": {"afterId": after}}));
        let ack = c.reply("next", Duration::from_secs(10)).await.unwrap();
        total += ack["data"]["count"].as_u64().unwrap();
        if ack["data"]["hasMore"] == false {
            break;
        }
        after = ack["data"]["lastId"].clone();
    }
    assert_eq!(total, 1200, "every message once");
    p.assert_logs_clean(&secrets);
}

/// A database that accepts connections and never answers (or a pool that is all
/// taken) costs a request `database.acquire_timeout_ms`, then `unavailable`: no
/// request hangs on the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_cannot_be_had_is_unavailable_in_time_not_a_hang() {
    // A "database" that accepts and then says nothing.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = blackhole.local_addr().unwrap().port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((s, _)) = blackhole.accept().await {
            keep.lock().unwrap().push(s);
        }
    });
    let url = format!("mysql://root@127.0.0.1:{port}/parley_blackhole");
    let p = Parley::start(
        &url,
        &[
            ("PARLEY__DATABASE__ACQUIRE_TIMEOUT_MS", "400".into()),
            ("PARLEY__DATABASE__CREATE_IF_MISSING", "false".into()),
        ],
    )
    .await;
    // Its session is unknown to the node, so checking it needs the database too.
    let token = crate::support::sign_token(
        crate::helpers::JWT_SECRET.as_bytes(),
        1,
        1,
        crate::support::unix_now(),
        crate::support::unix_now() + 600,
    );
    let mut slowest = Duration::ZERO;
    for path in ["/api/users/me", "/api/chats", "/api/messages?chatId=1"] {
        let t = Instant::now();
        let res = p
            .http
            .get(p.url(path))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} hung: {e}"));
        slowest = slowest.max(t.elapsed());
        assert_eq!(res.status(), 503, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unavailable", "{path}: {body}");
    }
    assert_eq!(p.status("/api/ready").await, 503);
    reliability(
        "pool_acquire_timeout",
        &[
            ("acquire_timeout", "400ms".into()),
            ("slowest_answer", ms(slowest)),
        ],
    );
    assert!(
        slowest < Duration::from_secs(3),
        "answered after {slowest:?}"
    );
    acceptor.abort();
}
