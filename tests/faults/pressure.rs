//! Bad clients and exhausted resources: a client that stops reading, a client that
//! floods, idle and slowloris sockets, the session and connection caps, a full disk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use parley_testkit::media::{audio_form, files_in, upload_audio, webm, SmallDisk};

use crate::peer::{settle_and_finish, ws_url, Conn, Ctl, Event, Peer, PeerCfg};
use crate::reconcile::reconcile;
use crate::support::{
    chat_members, count, message_rows, ms, percentile, reliability, Mariadb, Parley, Secrets,
    TestDb, User,
};

/// The well-behaved pair: `n` messages at a steady pace; send→ack latencies.
async fn good_pair(p: &Parley, a: &User, b: &User, chat: u64, n: usize) -> Vec<Duration> {
    let ctl = Ctl::default();
    let mut ca = PeerCfg::new(&a.username, a.id, &a.token, vec![p.ws_base()]);
    ca.chat = Some(chat);
    ca.member_chats = vec![chat];
    ca.total = n;
    ca.pace = Duration::from_millis(20);
    ca.window = 64;
    let mut cb = PeerCfg::new(&b.username, b.id, &b.token, vec![p.ws_base()]);
    cb.member_chats = vec![chat];
    let peers = vec![Peer::spawn(ca, &ctl), Peer::spawn(cb, &ctl)];
    let logs = settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;
    assert_eq!(
        logs[0].connects, 1,
        "the good client was never disconnected"
    );
    logs[0]
        .sent
        .iter()
        .map(|s| s.acked.unwrap().1 - s.first_sent)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_and_a_flooder_do_not_slow_others_and_memory_stays_bounded() {
    let _one_at_a_time = crate::support::exclusive().await;
    // A private MariaDB without an fsync per commit: the latencies compared are
    // Parley's, not the shared disk's (other processes' I/O made them jitter).
    let mdb = Mariadb::start_with(&["--innodb-flush-log-at-trx-commit=0"]).await;
    let db = TestDb {
        url: mdb.url("parley_pressure"),
    };
    let secrets = Secrets::default();
    let rate = 100u64;
    let p = Parley::start(
        &db.url,
        &[
            ("PARLEY__LIMITS__WS_EVENTS_PER_SEC", rate.to_string()),
            ("PARLEY__LIMITS__WS_EVENTS_BURST", rate.to_string()),
            ("PARLEY__PRESENCE__PING_INTERVAL_SECS", "1".into()),
            ("PARLEY__PRESENCE__CLIENT_TIMEOUT_SECS", "5".into()),
        ],
    )
    .await;
    let mut u = Vec::new();
    for name in [
        "good0", "good1", "good2", "good3", "slow", "noisy0", "noisy1", "noisy2", "flood", "sink",
        "good4", "good5",
    ] {
        u.push(p.register(name, &secrets).await);
    }
    let (g0, g1, g2, g3, slow, flood, sink) = (&u[0], &u[1], &u[2], &u[3], &u[4], &u[8], &u[9]);
    let chat_a = p.direct_chat(g0, g1).await;
    let chat_b = p.direct_chat(g2, g3).await;
    let chat_c = p.direct_chat(&u[10], &u[11]).await;
    let mut noisy_chats = Vec::new();
    for n in &u[5..8] {
        noisy_chats.push(p.direct_chat(n, slow).await);
    }
    let flood_chat = p.direct_chat(flood, sink).await;

    // Without the bad clients.
    let without = good_pair(&p, g0, g1, chat_a, 300).await;

    // The slow consumer: a tiny receive buffer, and it never reads after the upgrade.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock
        .connect(format!("127.0.0.1:{}", p.port).parse().unwrap())
        .await
        .unwrap();
    let req = ws_url(&p.ws_base(), &slow.token)
        .into_client_request()
        .unwrap();
    let (stalled, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let stall_started = Instant::now();

    // Three well-behaved senders keep writing big messages to it.
    let ctl = Ctl::default();
    let noisy: Vec<Peer> = u[5..8]
        .iter()
        .zip(&noisy_chats)
        .map(|(n, chat)| {
            let mut c = PeerCfg::new(&n.username, n.id, &n.token, vec![p.ws_base()]);
            c.chat = Some(*chat);
            c.member_chats = vec![*chat];
            c.total = usize::MAX;
            c.pace = Duration::from_millis(15);
            c.window = 16;
            c.pad = 9000;
            Peer::spawn(c, &ctl)
        })
        .collect();

    // The flooder: message:send as fast as it can, reading the answers.
    let stop_flood = Arc::new(AtomicBool::new(false));
    let rate_limited = Arc::new(AtomicU64::new(0));
    let flood_acks = Arc::new(AtomicU64::new(0));
    let (mut fconn, _) = Conn::ready(&ws_url(&p.ws_base(), &flood.token)).await;
    let flood_started = Instant::now();
    let flooder = {
        let stop = stop_flood.clone();
        let limited = rate_limited.clone();
        let acks = flood_acks.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                for _ in 0..40 {
                    fconn.send(json!({"event": "message:send", "ref": format!("f{i}"), "data": {
                        "chatId": flood_chat, "clientId": format!("flood-{i}"), "kind": "text", "content": "flood"}}));
                    i += 1;
                }
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(5) {
                    match fconn.recv_within(Duration::from_millis(5)).await {
                        Some(Event::Frame(v)) if v["data"]["code"] == "rate_limited" => {
                            limited.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Event::Frame(v)) if v["event"] == "ack" => {
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Event::Frame(_)) | None => {}
                        Some(other) => return format!("{other:?}"),
                    }
                }
            }
            fconn.close();
            "open".to_string()
        })
    };

    // Memory of the real process while the bad clients run.
    let pid = p.pid();
    let rss_start = crate::support::proc_rss_kib(pid);
    let sampling = Arc::new(AtomicBool::new(true));
    let rss_max = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let (on, max) = (sampling.clone(), rss_max.clone());
        tokio::spawn(async move {
            while on.load(Ordering::Acquire) {
                max.fetch_max(crate::support::proc_rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with = good_pair(&p, g2, g3, chat_b, 300).await;
    // The stall has lasted longer than presence.client_timeout_secs (5 s) by now:
    // is the silent session still held? (3 noisy senders and the flooder are open.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connections_stalled = p.metrics().await["parley_websocket_connections"];
    let stalled_held = connections_stalled > 4.0;
    let stalled_for = stall_started.elapsed();
    stop_flood.store(true, Ordering::Release);
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let flood_end = flooder.await.unwrap();
    ctl.stop_sending.store(true, Ordering::Release);
    sampling.store(false, Ordering::Release);
    sampler.await.unwrap();
    let rss_growth_kib = rss_max.load(Ordering::Relaxed).saturating_sub(rss_start);

    // Without the bad clients again (the machine's own load drifts): the larger of
    // the two baselines is the reference.
    let without_after = good_pair(&p, &u[10], &u[11], chat_c, 300).await;
    let p99_without = percentile(&without, 99.0).max(percentile(&without_after, 99.0));
    let p99_with = percentile(&with, 99.0);
    let bound = (p99_without * 2).max(p99_without + Duration::from_millis(20));
    // The flooder was throttled to the configured rate; its socket still works.
    let flood_stored = count(
        &db.url,
        &format!(
            "SELECT COUNT(*) FROM messages WHERE sender_id = {}",
            flood.id
        ),
    )
    .await;
    let flood_cap = (rate as f64 * flood_secs) as u64 + rate + 50;

    // The slow consumer: reading again, it finds it was cut off with 1013.
    let mut stalled = Conn::from_stream(stalled);
    let mut frames = 0;
    let close = loop {
        match stalled.recv_within(Duration::from_secs(30)).await {
            Some(Event::Frame(_)) => frames += 1,
            Some(Event::Closed(c)) => {
                break format!("closed:{}", c.map(|c| c.to_string()).unwrap_or_default())
            }
            Some(Event::Error(e)) => break format!("error:{e}"),
            None => break "still open".into(),
        }
    };
    // It reconnects and syncs; nothing sent to it is missing.
    let mut sc = PeerCfg::new(&slow.username, slow.id, &slow.token, vec![p.ws_base()]);
    sc.member_chats = noisy_chats.clone();
    let mut all = noisy;
    all.push(Peer::spawn(sc, &ctl));
    let logs = settle_and_finish(all, &ctl, Duration::from_secs(60)).await;
    let rows: Vec<_> = message_rows(&db.url)
        .await
        .into_iter()
        .filter(|r| noisy_chats.contains(&r.chat_id))
        .collect();
    let report = reconcile(&logs, &rows, &chat_members(&db.url).await, true);
    report.assert_clean("slow-consumer");
    let sink_ok = {
        let (mut c, _) = Conn::ready(&ws_url(&p.ws_base(), &sink.token)).await;
        c.send(json!({"event": "ping", "ref": "p"}));
        c.reply("p", Duration::from_secs(5)).await.is_ok()
    };

    let mut fields = vec![
        ("p99_without", ms(p99_without)),
        ("p99_with", ms(p99_with)),
        ("p50_with", ms(percentile(&with, 50.0))),
        ("rss_growth", format!("{}MiB", rss_growth_kib / 1024)),
        ("slow_consumer_close", close.clone()),
        ("slow_frames_read_after", frames.to_string()),
        (
            "stalled_session_held_after_client_timeout",
            stalled_held.to_string(),
        ),
        (
            "flood_rate_limited",
            rate_limited.load(Ordering::Relaxed).to_string(),
        ),
        (
            "flood_acked",
            flood_acks.load(Ordering::Relaxed).to_string(),
        ),
        ("flood_stored", flood_stored.to_string()),
        ("flood_cap", flood_cap.to_string()),
    ];
    fields.extend(report.fields());
    reliability("slow-consumer-and-flood", &fields);
    assert!(
        p99_with <= bound,
        "p99 {p99_with:?} with bad clients vs {p99_without:?} without"
    );
    assert!(rss_growth_kib < 100 * 1024, "RSS grew {rss_growth_kib} KiB");
    assert!(
        rate_limited.load(Ordering::Relaxed) > 0,
        "the flooder was rate limited"
    );
    assert!(
        flood_stored <= flood_cap,
        "{flood_stored} flood messages stored (cap {flood_cap})"
    );
    assert_eq!(
        flood_end, "open",
        "the throttled flooder keeps its connection"
    );
    assert!(sink_ok);
    assert!(
        close == "closed:1013" || close == "closed:" || close.starts_with("error:"),
        "the slow consumer is cut off (1013, or its socket dropped): {close}"
    );
    assert!(
        !stalled_held,
        "a client that stopped reading (and answering pings) was still held after {stalled_for:?} \
         (presence.client_timeout_secs = 5): the server only cuts it off once it reads again"
    );
    p.assert_logs_clean(&secrets);
}

// ------------------------------------------------------------------ exhaustion

/// Reads until EOF, reset or `limit`; the time it took and what was read.
async fn wait_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<(Duration, String)> {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(t.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((t.elapsed(), String::from_utf8_lossy(&got).into()))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_and_slowloris_requests_are_timed_out_while_others_are_served() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let timeout = 2u64;
    let p = Parley::start(
        &db.url,
        &[
            ("PARLEY__SERVER__REQUEST_TIMEOUT_SECS", timeout.to_string()),
            ("PARLEY__SERVER__KEEP_ALIVE_SECS", "2".into()),
        ],
    )
    .await;
    // Warm up (the MySQL pool opens connections lazily: they are fds too).
    p.wait_ready(Duration::from_secs(10)).await;
    let fds_before = p.fds();
    let addr = format!("127.0.0.1:{}", p.port);
    // Idle half-open sockets: connected, never a byte of request.
    let mut idle = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        idle.push(tokio::spawn(async move {
            wait_closed(&mut s, Duration::from_secs(timeout + 6))
                .await
                .map(|r| r.0)
        }));
    }
    // Slowloris: a request head trickled one header every 300 ms, forever.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        slow.push(s);
    }
    for s in &mut slow {
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
    }
    let started = Instant::now();
    let slow_tasks: Vec<_> = slow
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let t = Instant::now();
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                loop {
                    if t.elapsed() > Duration::from_secs(20) {
                        return None;
                    }
                    if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                        return Some((t.elapsed(), String::from_utf8_lossy(&got).to_string()));
                    }
                    match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            return Some((t.elapsed(), String::from_utf8_lossy(&got).to_string()))
                        }
                        Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    // Meanwhile normal requests keep working, promptly.
    let mut worst = Duration::ZERO;
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(timeout + 2) {
        let t = Instant::now();
        let res = reqwest::Client::new()
            .get(p.url("/api/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .expect("a normal request is served while the bad sockets are open");
        assert_eq!(res.status(), 200);
        worst = worst.max(t.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut idle_closed_max = Duration::ZERO;
    for t in idle {
        let took = t
            .await
            .unwrap()
            .expect("an idle socket is closed by the server");
        idle_closed_max = idle_closed_max.max(took);
    }
    let mut slow_closed_max = Duration::ZERO;
    let mut slow_408 = 0;
    for t in slow_tasks {
        let (took, got) = t.await.unwrap().expect("a slowloris request is cut off");
        slow_closed_max = slow_closed_max.max(took);
        if got.starts_with("HTTP/1.1 408") {
            slow_408 += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_after = p.fds();
    reliability(
        "idle-and-slowloris",
        &[
            ("idle_sockets", "200".into()),
            ("slowloris", "20".into()),
            ("request_timeout", format!("{timeout}s")),
            ("idle_closed_within", ms(idle_closed_max)),
            ("slowloris_closed_within", ms(slow_closed_max)),
            ("slowloris_408", slow_408.to_string()),
            ("normal_requests", served.to_string()),
            ("normal_worst", ms(worst)),
            ("fds_before", fds_before.to_string()),
            ("fds_after", fds_after.to_string()),
        ],
    );
    assert!(
        worst < Duration::from_secs(1),
        "a normal request took {worst:?}"
    );
    assert!(
        slow_closed_max <= Duration::from_secs(timeout + 3),
        "slowloris held for {slow_closed_max:?}"
    );
    assert!(
        idle_closed_max <= Duration::from_secs(timeout + 3),
        "idle socket held for {idle_closed_max:?}"
    );
    // No socket leaked (slack: the MySQL pool, at most 16, may open more meanwhile).
    assert!(
        fds_after <= fds_before + 16,
        "fds {fds_before} → {fds_after}"
    );
    p.assert_logs_clean(&secrets);
}

async fn refused(url: &str) -> (u16, Value) {
    match Conn::try_connect(url).await {
        Ok(_) => panic!("connected past the cap"),
        Err(r) => (r.status.unwrap_or(0), r.body.unwrap_or(Value::Null)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_and_connection_caps_answer_with_clear_errors() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(
        &db.url,
        &[
            ("PARLEY__LIMITS__MAX_SESSIONS_PER_USER", "3".into()),
            ("PARLEY__LIMITS__MAX_CONNECTIONS", "5".into()),
        ],
    )
    .await;
    let a = p.register("capa", &secrets).await;
    let b = p.register("capb", &secrets).await;
    let c = p.register("capc", &secrets).await;
    let mut open_a = Vec::new();
    for _ in 0..3 {
        open_a.push(Conn::ready(&ws_url(&p.ws_base(), &a.token)).await.0);
    }
    let (status, body) = refused(&ws_url(&p.ws_base(), &a.token)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_sessions", "{body}");
    let mut open_b = Vec::new();
    for _ in 0..2 {
        open_b.push(Conn::ready(&ws_url(&p.ws_base(), &b.token)).await.0);
    }
    let (status_full, body_full) = refused(&ws_url(&p.ws_base(), &c.token)).await;
    assert_eq!(status_full, 503, "{body_full}");
    assert_eq!(body_full["error"]["code"], "unavailable", "{body_full}");
    // HTTP is not affected by the WebSocket caps.
    assert_eq!(p.status("/api/health").await, 200);
    // A closed session frees its place.
    open_a.pop().unwrap().close();
    let t = Instant::now();
    let freed = loop {
        match Conn::try_connect(&ws_url(&p.ws_base(), &c.token)).await {
            Ok(_) => break t.elapsed(),
            Err(_) if t.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the freed place was not given back: {e:?}"),
        }
    };
    reliability(
        "session-and-connection-caps",
        &[
            ("per_user_cap", "3".into()),
            ("total_cap", "5".into()),
            (
                "over_user_cap",
                format!("{status}:{}", body["error"]["code"].as_str().unwrap_or("")),
            ),
            (
                "over_total_cap",
                format!(
                    "{status_full}:{}",
                    body_full["error"]["code"].as_str().unwrap_or("")
                ),
            ),
            ("place_freed_after", ms(freed)),
        ],
    );
    p.assert_logs_clean(&secrets);
}

async fn upload(p: &Parley, token: &str, chat: u64, bytes: Vec<u8>) -> (u16, Value) {
    let form = audio_form(chat, bytes, "note.webm");
    let res = upload_audio(&p.http, &p.url("/api/messages/upload-audio"), token, form).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_uploads_disk_gives_507_and_leaves_no_partial_file_or_row() {
    let _one_at_a_time = crate::support::exclusive().await;
    let disk = SmallDisk::mount("1m");
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(
        &db.url,
        &[
            (
                "PARLEY__STORAGE__UPLOADS_DIR",
                disk.dir.path().display().to_string(),
            ),
            // The free-space floor (hostile::uploads) would refuse every upload on a
            // 1 MiB disk: this case is about the disk really being full.
            ("PARLEY__STORAGE__MIN_FREE_BYTES", "0".into()),
        ],
    )
    .await;
    let a = p.register("diska", &secrets).await;
    let b = p.register("diskb", &secrets).await;
    let chat = p.direct_chat(&a, &b).await;
    let audio = disk.dir.path().join("audio");
    std::fs::create_dir_all(&audio).unwrap();
    // Fill the disk, leaving ~100 KiB.
    let filler = disk.dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 900 * 1024]).unwrap();

    let (status, body) = upload(&p, &a.token, chat, webm(400 * 1024)).await;
    let left_files = files_in(&audio);
    let rows = count(&db.url, "SELECT COUNT(*) FROM media_files").await;
    // Room again: the same upload goes through.
    std::fs::remove_file(&filler).unwrap();
    let (status_after, body_after) = upload(&p, &a.token, chat, webm(400 * 1024)).await;
    let rows_after = count(&db.url, "SELECT COUNT(*) FROM media_files").await;
    reliability(
        "uploads-disk-full",
        &[
            ("disk", "tmpfs 1MiB".into()),
            (
                "upload_when_full",
                format!("{status}:{}", body["error"]["code"].as_str().unwrap_or("")),
            ),
            ("files_left", left_files.len().to_string()),
            ("rows_left", rows.to_string()),
            ("upload_after_freeing", status_after.to_string()),
        ],
    );
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    assert!(left_files.is_empty(), "partial files left: {left_files:?}");
    assert_eq!(rows, 0, "no audio row for a failed upload");
    assert_eq!(status_after, 201, "{body_after}");
    assert_eq!(rows_after, 1);
    assert_eq!(files_in(&audio).len(), 1);
    assert_eq!(p.status("/api/health").await, 200);
    p.assert_logs_clean(&secrets);
}
