//! The soak: mixed traffic (a ring of direct chats, a group, typing, receipts, calls)
//! with forced reconnects, for `PARLEY_SOAK_MINUTES` (default 0.1 = 6 s, so CI runs a
//! short but real soak with the same assertions). RSS, open file descriptors and the
//! live counts of /metrics are sampled every minute (every 2 s in a run under two
//! minutes) and must stay flat: after every client leaves, connections, online users
//! and in-flight sends are back to 0 and fds near their start value.
//!
//!     PARLEY_SOAK_MINUTES=30 cargo nextest run --test faults -E 'test(soak)' --no-capture

use std::time::{Duration, Instant};

use serde_json::json;

use crate::peer::{settle_and_finish, ws_url, Conn, Ctl, Peer};
use crate::scenario::{reconcile_db, Ring};
use crate::support::{reliability, Parley, Secrets, TestDb};

#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    connections: f64,
    online: f64,
    in_flight: f64,
}

async fn sample(p: &Parley) -> Sample {
    let m = p.metrics().await;
    Sample {
        rss_kib: p.rss_kib(),
        fds: p.fds(),
        connections: m["parley_websocket_connections"],
        online: m["parley_online_users"],
        in_flight: m["parley_messages_in_flight"],
    }
}

/// One full call between two users: ring, answer, a candidate each way, hang up.
async fn call_cycle(ca: &mut Conn, cb: &mut Conn, chat: u64, n: usize) {
    let id = format!("soak-{n}");
    let wait = Duration::from_secs(10);
    ca.send(json!({"event": "call:initiate", "ref": "i", "data": {"callId": id, "chatId": chat, "video": true, "sdp": {"type": "offer"}}}));
    assert_eq!(ca.reply("i", wait).await.unwrap()["event"], "ack");
    cb.wait_event("call:incoming", wait).await.unwrap();
    cb.send(json!({"event": "call:answer", "ref": "a", "data": {"callId": id, "sdp": {"type": "answer"}}}));
    assert_eq!(cb.reply("a", wait).await.unwrap()["event"], "ack");
    ca.wait_event("call:answer", wait).await.unwrap();
    cb.send(json!({"event": "call:ice-candidate", "data": {"callId": id, "candidate": {"candidate": "c"}}}));
    ca.wait_event("call:ice-candidate", wait).await.unwrap();
    ca.send(json!({"event": "call:end", "ref": "e", "data": {"callId": id}}));
    assert_eq!(ca.reply("e", wait).await.unwrap()["event"], "ack");
    cb.wait_event("call:end", wait).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let _one_at_a_time = crate::support::exclusive().await;
    let minutes: f64 = std::env::var("PARLEY_SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.1);
    let length = Duration::from_secs_f64(minutes * 60.0);
    let long = minutes >= 2.0;
    let every = if long {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(2)
    };
    let churn = if long {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(2)
    };

    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let ring = Ring::create(&p, 6, "soak", &secrets).await;
    let grp = p.register("soakgrp", &secrets).await;
    let group = p
        .group_chat(&grp, &[&ring.users[0], &ring.users[1], &ring.users[2]])
        .await;
    let ca = p.register("soakcalla", &secrets).await;
    let cb = p.register("soakcallb", &secrets).await;
    let call_chat = p.direct_chat(&ca, &cb).await;
    p.wait_ready(Duration::from_secs(10)).await;
    let start = sample(&p).await;

    let ctl = Ctl::default();
    let mut cfgs: Vec<_> = (0..6)
        .map(|i| {
            let mut c = ring.peer(i, vec![p.ws_base()], usize::MAX);
            c.pace = Duration::from_millis(30);
            c.window = 4;
            c.typing = true;
            // Staggered forced reconnects.
            c.churn = Some(churn + Duration::from_millis(300 * i as u64));
            if i < 3 {
                c.member_chats.push(group);
            }
            c
        })
        .collect();
    let mut g = crate::peer::PeerCfg::new(&grp.username, grp.id, &grp.token, vec![p.ws_base()]);
    g.chat = Some(group);
    g.member_chats = vec![group];
    g.total = usize::MAX;
    g.pace = Duration::from_millis(50);
    g.churn = Some(churn + Duration::from_millis(150));
    cfgs.push(g);
    let peers: Vec<Peer> = cfgs.into_iter().map(|c| Peer::spawn(c, &ctl)).collect();

    let (mut wa, _) = Conn::ready(&ws_url(&p.ws_base(), &ca.token)).await;
    let (mut wb, _) = Conn::ready(&ws_url(&p.ws_base(), &cb.token)).await;
    let began = Instant::now();
    let mut samples = vec![];
    let mut calls = 0;
    while began.elapsed() < length {
        let next = Instant::now() + every.min(length.saturating_sub(began.elapsed()));
        call_cycle(&mut wa, &mut wb, call_chat, calls).await;
        calls += 1;
        tokio::time::sleep_until(next.into()).await;
        let s = sample(&p).await;
        println!("soak sample at {:?}: {s:?}", began.elapsed());
        samples.push(s);
    }
    ctl.stop_sending
        .store(true, std::sync::atomic::Ordering::Release);
    let logs = settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;
    wa.close();
    wb.close();
    let report = reconcile_db("soak", &db.url, &logs).await;
    let reconnects: usize = logs.iter().map(|l| l.connects).sum();

    // Everyone left: the live counts go back to zero, fds back near the start.
    let t = Instant::now();
    let mut end = sample(&p).await;
    while (end.connections != 0.0 || end.online != 0.0 || end.in_flight != 0.0)
        && t.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        end = sample(&p).await;
    }
    let peak_rss = samples
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(start.rss_kib);
    let peak_conn = samples.iter().map(|s| s.connections).fold(0.0, f64::max);
    // RSS after the warm-up (first sample) vs the last: growth in steady state.
    let steady_growth = samples
        .last()
        .map(|l| l.rss_kib.saturating_sub(samples[0].rss_kib))
        .unwrap_or(0);
    let mut fields = vec![
        ("minutes", format!("{minutes}")),
        ("calls", calls.to_string()),
        ("connects", reconnects.to_string()),
        ("rss_start", format!("{}MiB", start.rss_kib / 1024)),
        ("rss_peak", format!("{}MiB", peak_rss / 1024)),
        ("rss_end", format!("{}MiB", end.rss_kib / 1024)),
        ("fds_start", start.fds.to_string()),
        ("fds_end", end.fds.to_string()),
        ("connections_start", start.connections.to_string()),
        ("connections_peak", peak_conn.to_string()),
        ("connections_end", end.connections.to_string()),
        ("online_end", end.online.to_string()),
        ("in_flight_end", end.in_flight.to_string()),
    ];
    fields.extend(report.fields());
    reliability("soak", &fields);
    assert_eq!(end.connections, 0.0, "sessions leaked");
    assert_eq!(end.online, 0.0, "online users leaked");
    assert_eq!(end.in_flight, 0.0, "in-flight sends leaked");
    // The MySQL pool (at most 16 connections) may hold more than at the start.
    assert!(end.fds <= start.fds + 16, "fds {} → {}", start.fds, end.fds);
    assert!(
        end.rss_kib.saturating_sub(start.rss_kib) < 100 * 1024,
        "RSS {} → {} KiB",
        start.rss_kib,
        end.rss_kib
    );
    if long {
        assert!(
            steady_growth < 64 * 1024,
            "RSS kept growing: +{steady_growth} KiB after warm-up"
        );
    }
    report.assert_pushed("soak");
    p.assert_logs_clean(&secrets);
}
