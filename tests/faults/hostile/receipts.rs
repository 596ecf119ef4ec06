//! Hostile users: see mod.rs. One user's receipts against everyone's: several
//! sessions each keep `message:delivered` frames of 1,000 ids in flight. The receipt
//! lane used to mark everything queued in one statement, so their ids pushed it past
//! MySQL's 65,535 placeholders and every honest receipt in the same batch failed too.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::peer::{ws_url, Conn, Event};
use crate::support::{mysql, percentile, reliability, Parley, Secrets, TestDb};

const ATTACKERS: u64 = 3;
const SESSIONS_PER_ATTACKER: u64 = 8;
/// Frames each attacking session keeps unanswered (8 × 8 = the per-user cap of 64).
const WINDOW: usize = 8;
/// Ids per attacking frame: the documented maximum.
const IDS_PER_FRAME: u64 = 1000;
const PAIRS: usize = 8;
const MESSAGES_PER_PAIR: usize = 25;

#[derive(Default, Debug)]
struct FloodTally {
    frames: u64,
    acked: u64,
    refused: u64,
    other: Vec<Value>,
}

/// Keeps `WINDOW` frames of 1,000 never-seen ids unanswered until `stop`.
async fn flood(mut conn: Conn, base: u64, stop: Arc<AtomicBool>) -> FloodTally {
    let mut t = FloodTally::default();
    let mut outstanding = 0;
    loop {
        while outstanding < WINDOW && !stop.load(Ordering::Relaxed) {
            let first = base + t.frames * IDS_PER_FRAME;
            let ids: Vec<u64> = (first..first + IDS_PER_FRAME).collect();
            conn.send(
                json!({"event": "message:delivered", "ref": format!("a{}", t.frames),
                "data": {"messageIds": ids}}),
            );
            t.frames += 1;
            outstanding += 1;
        }
        if outstanding == 0 {
            return t;
        }
        match conn.recv_within(Duration::from_secs(30)).await {
            Some(Event::Frame(v)) if v["ref"].as_str().is_some_and(|r| r.starts_with('a')) => {
                outstanding -= 1;
                match (v["event"].as_str(), v["data"]["code"].as_str()) {
                    (Some("ack"), _) => t.acked += 1,
                    (Some("error"), Some("unavailable")) => t.refused += 1,
                    _ => t.other.push(v),
                }
            }
            Some(Event::Frame(_)) => {}
            other => panic!("attacking session ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_floods_of_1000_ids_per_frame_do_not_fail_anyone_elses_receipts() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;

    // Honest pairs: each sender has messages waiting for its reader.
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    let mut chats = Vec::new();
    for i in 0..PAIRS {
        let s = p.register(&format!("sender{i}"), &secrets).await;
        let r = p.register(&format!("reader{i}"), &secrets).await;
        chats.push(p.direct_chat(&s, &r).await);
        senders.push(s);
        readers.push(r);
    }
    let mut sender_conns = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        let (mut c, _) = Conn::ready(&ws_url(&p.ws_base(), &s.token)).await;
        for m in 0..MESSAGES_PER_PAIR {
            c.send(json!({"event": "message:send", "ref": format!("m{m}"),
                "data": {"chatId": chats[i], "clientId": format!("c{m}"), "kind": "text", "content": format!("hello {m}")}}));
        }
        for m in 0..MESSAGES_PER_PAIR {
            let r = c
                .reply(&format!("m{m}"), Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(r["event"], "ack", "{r}");
        }
        sender_conns.push(c);
    }
    let mut reader_conns = Vec::new();
    let mut waiting: Vec<Vec<u64>> = Vec::new();
    for r in &readers {
        let (c, pushed) = Conn::ready(&ws_url(&p.ws_base(), &r.token)).await;
        let ids: Vec<u64> = pushed
            .iter()
            .filter(|f| f["event"] == "message:received")
            .map(|f| f["data"]["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), MESSAGES_PER_PAIR);
        reader_conns.push(c);
        waiting.push(ids);
    }

    // The attack: several accounts, several sessions each, 1,000 ids per frame.
    let stop = Arc::new(AtomicBool::new(false));
    let mut floods = Vec::new();
    for a in 0..ATTACKERS {
        let attacker = p.register(&format!("attacker{a}"), &secrets).await;
        for s in 0..SESSIONS_PER_ATTACKER {
            let (conn, _) = Conn::ready(&ws_url(&p.ws_base(), &attacker.token)).await;
            let base = 1_000_000_000_000 + (a * SESSIONS_PER_ATTACKER + s) * 1_000_000_000;
            floods.push(tokio::spawn(flood(conn, base, stop.clone())));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Meanwhile every reader acknowledges its messages, one frame each, as the web
    // client does when they arrive.
    let started = Instant::now();
    let mut honest = Vec::new();
    for (mut conn, ids) in reader_conns.into_iter().zip(waiting.clone()) {
        honest.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                let reference = format!("h{i}");
                conn.send(json!({"event": "message:delivered", "ref": reference,
                    "data": {"messageIds": [id]}}));
                let t = Instant::now();
                let reply = conn.reply(&reference, Duration::from_secs(20)).await;
                out.push((t.elapsed(), reply));
            }
            (conn, out)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut _keep = Vec::new();
    for h in honest {
        let (conn, out) = h.await.unwrap();
        _keep.push(conn);
        for (d, reply) in out {
            latencies.push(d);
            match reply {
                Ok(v) if v["event"] == "ack" && v["data"]["count"] == 1 => {}
                other => failures.push(format!("{other:?}")),
            }
        }
    }
    let honest_took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut tally = FloodTally::default();
    for f in floods {
        let t = f.await.unwrap();
        tally.frames += t.frames;
        tally.acked += t.acked;
        tally.refused += t.refused;
        tally.other.extend(t.other);
    }
    assert!(
        failures.is_empty(),
        "{} of {} honest receipts failed, e.g. {:?}",
        failures.len(),
        PAIRS * MESSAGES_PER_PAIR,
        failures.first()
    );
    assert!(
        tally.other.is_empty(),
        "attacking frames got neither an ack nor `unavailable`: {:?}",
        tally.other.first()
    );
    assert!(
        tally.acked >= 100,
        "the attack ran (acked {} of {} frames)",
        tally.acked,
        tally.frames
    );

    // Stored: each reader's watermark is its newest message; each sender was told.
    let mut c = mysql(&db.url).await;
    for (i, r) in readers.iter().enumerate() {
        use mysql_async::prelude::Queryable;
        let up_to: Option<u64> = c
            .exec_first(
                "SELECT delivered_up_to FROM chat_members WHERE chat_id = ? AND user_id = ?",
                (chats[i], r.id),
            )
            .await
            .unwrap();
        assert_eq!(up_to, waiting[i].iter().max().copied(), "reader {i}");
    }
    let _ = c.disconnect().await;
    for (i, conn) in sender_conns.iter_mut().enumerate() {
        let mut told: HashSet<u64> = HashSet::new();
        let want: HashSet<u64> = waiting[i].iter().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while told != want {
            let left = deadline.saturating_duration_since(Instant::now());
            match conn.recv_within(left).await {
                Some(Event::Frame(v)) if v["event"] == "message:delivered" => {
                    for id in v["data"]["messageIds"].as_array().unwrap() {
                        told.insert(id.as_u64().unwrap());
                    }
                }
                Some(Event::Frame(_)) => {}
                other => panic!(
                    "sender {i}: {} of {} receipts, then {other:?}",
                    told.len(),
                    want.len()
                ),
            }
        }
    }
    p.assert_logs_clean(&secrets);

    reliability(
        "hostile_receipt_flood",
        &[
            (
                "attacking_sessions",
                (ATTACKERS * SESSIONS_PER_ATTACKER).to_string(),
            ),
            ("ids_per_frame", IDS_PER_FRAME.to_string()),
            ("attack_frames", tally.frames.to_string()),
            ("attack_acked", tally.acked.to_string()),
            ("attack_refused", tally.refused.to_string()),
            ("honest_receipts", latencies.len().to_string()),
            ("honest_failed", failures.len().to_string()),
            (
                "honest_p50",
                crate::support::ms(percentile(&latencies, 50.0)),
            ),
            (
                "honest_p99",
                crate::support::ms(percentile(&latencies, 99.0)),
            ),
            (
                "honest_max",
                crate::support::ms(percentile(&latencies, 100.0)),
            ),
            ("honest_total", crate::support::ms(honest_took)),
        ],
    );
}
