//! The process dies mid-burst: SIGKILL (then started again on the same port and
//! database) and SIGTERM (graceful: 1001 to every client, nothing acknowledged lost).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::peer::Ctl;
use crate::scenario::{reconcile_db, recovery_after, spawn_all, total_acked, wait_acked, Ring};
use crate::support::{message_rows, ms, reliability, Parley, Secrets, TestDb};

const USERS: usize = 6;
const PER_USER: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_then_restart_stores_everything_once() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let mut p = Parley::start(&db.url, &[]).await;
    let ring = Ring::create(&p, USERS, "kill", &secrets).await;
    let ctl = Ctl::default();
    let cfgs = (0..USERS)
        .map(|i| {
            let mut c = ring.peer(i, vec![p.ws_base()], PER_USER);
            c.window = 16;
            c.pace = Duration::from_millis(3);
            c
        })
        .collect();
    let peers = spawn_all(cfgs, &ctl);
    wait_acked(&peers, USERS * PER_USER / 3, Duration::from_secs(30)).await;

    let killed = Instant::now();
    p.kill9();
    let acked_at_kill: HashSet<String> = peers
        .iter()
        .flat_map(|peer| {
            peer.snapshot()
                .sent
                .into_iter()
                .filter(|s| s.acked.is_some())
                .map(|s| s.client_id)
        })
        .collect();
    let unacked_at_kill: usize = peers.iter().map(|peer| peer.snapshot().unacked()).sum();
    // Stored by the killed process but never acknowledged: the resend must find them.
    let stored_unacked = message_rows(&db.url)
        .await
        .into_iter()
        .filter(|r| !acked_at_kill.contains(&r.client_id))
        .count();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    p.launch().await;
    let up = Instant::now();

    let logs = crate::peer::settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;
    let report = reconcile_db("sigkill", &db.url, &logs).await;
    assert_eq!(report.acked, USERS * PER_USER, "every message acknowledged");
    for l in &logs {
        assert!(l.connects >= 2, "{} reconnected", l.name);
    }
    let resent: usize = logs.iter().map(|l| l.resent).sum();
    assert!(
        resent >= unacked_at_kill,
        "unacknowledged messages were resent"
    );
    let mut fields = vec![
        ("acked_during", "0".to_string()),
        ("acked_before_kill", acked_at_kill.len().to_string()),
        ("unacked_at_kill", unacked_at_kill.to_string()),
        ("stored_but_unacked_at_kill", stored_unacked.to_string()),
        ("resent", resent.to_string()),
        ("downtime", ms(up - killed)),
        ("recovery", ms(recovery_after(&logs, up))),
    ];
    fields.extend(report.fields());
    reliability("sigkill-restart", &fields);
    p.assert_logs_clean(&secrets);
    report.assert_pushed("sigkill-restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_burst_closes_with_1001_and_loses_nothing() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let mut p = Parley::start(&db.url, &[]).await;
    let ring = Ring::create(&p, USERS, "term", &secrets).await;
    let ctl = Ctl::default();
    let cfgs = (0..USERS)
        .map(|i| {
            let mut c = ring.peer(i, vec![p.ws_base()], PER_USER);
            c.window = 16;
            c.pace = Duration::from_millis(3);
            c
        })
        .collect();
    let peers = spawn_all(cfgs, &ctl);
    wait_acked(&peers, USERS * PER_USER / 3, Duration::from_secs(30)).await;

    let termed = Instant::now();
    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(30)).await;
    let exited = Instant::now();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        p.logs()
            .iter()
            .any(|l| l.contains("closing WebSockets with 1001")),
        "drain logged"
    );
    // Every client saw 1001, after every acknowledgement it was owed.
    let mut acked: HashSet<String> = HashSet::new();
    let mut acked_during = 0;
    for peer in &peers {
        let l = peer.snapshot();
        let first_close = l.closes.first().map(|c| c.1.clone()).unwrap_or_default();
        assert_eq!(first_close, "closed:1001", "{}: {:?}", l.name, l.closes);
        acked_during += l.acked_between(termed, exited);
        acked.extend(
            l.sent
                .iter()
                .filter(|s| s.acked.is_some())
                .map(|s| s.client_id.clone()),
        );
    }
    // Stored == acknowledged: nothing acknowledged is missing, nothing stored unanswered.
    let stored: HashSet<String> = message_rows(&db.url)
        .await
        .into_iter()
        .map(|r| r.client_id)
        .collect();
    let missing: Vec<_> = acked.difference(&stored).collect();
    let unanswered: Vec<_> = stored.difference(&acked).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert!(
        unanswered.is_empty(),
        "stored but never answered: {unanswered:?}"
    );
    let acked_at_exit = total_acked(&peers);

    // Back up: clients reconnect, sync, resend; recipients get everything.
    p.launch().await;
    let up = Instant::now();
    let logs = crate::peer::settle_and_finish(peers, &ctl, Duration::from_secs(60)).await;
    let report = reconcile_db("sigterm", &db.url, &logs).await;
    assert_eq!(report.acked, USERS * PER_USER);
    let mut fields = vec![
        ("acked_during", acked_during.to_string()),
        ("acked_at_exit", acked_at_exit.to_string()),
        ("drain", ms(exited - termed)),
        ("recovery", ms(recovery_after(&logs, up))),
    ];
    fields.extend(report.fields());
    reliability("sigterm", &fields);
    p.assert_logs_clean(&secrets);
    report.assert_pushed("sigterm");
}

/// A client that never waits (it writes frames back to back, as a script piping a
/// file into websocat does, and reads its answers only now and then) still sees the
/// close frame on SIGTERM: the server keeps reading what the client sends until the
/// client's own close frame, then closes. Closing with unread bytes in the kernel's
/// buffer sends a reset instead, which throws away the close frame still waiting in
/// the server's send buffer: the client reports an abnormal closure, not 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reaches_a_client_that_never_stops_sending_as_1001() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;

    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let mut p = Parley::start(&db.url, &[]).await;
    const SENDERS: usize = 4;
    let mut users = Vec::new();
    for i in 0..SENDERS * 2 {
        users.push(p.register(&format!("flood{i}"), &secrets).await);
    }
    let mut chats = Vec::new();
    for i in 0..SENDERS {
        chats.push(p.direct_chat(&users[2 * i], &users[2 * i + 1]).await);
    }
    let mut clients = Vec::new();
    // The clients read nothing until shortly after SIGTERM: the server's answers
    // (and then its close frame) wait in its send buffer, as for a busy client.
    let (start_reading, reading) = tokio::sync::watch::channel(false);
    for (i, &chat) in chats.iter().enumerate() {
        let mut reading = reading.clone();
        let url = format!("{}/ws?token={}", p.ws_base(), users[2 * i].token);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        let writer = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let frame = serde_json::json!({
                    "event": "message:send",
                    "data": {"chatId": chat, "content": format!("flood {n}"), "clientId": format!("f{i}-{n}")},
                    "ref": n.to_string(),
                });
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    return n;
                }
                n += 1;
            }
        });
        let reader = tokio::spawn(async move {
            let _ = reading.wait_for(|go| *go).await;
            loop {
                match stream.next().await {
                    Some(Ok(Message::Close(Some(f)))) => {
                        return format!("close:{}", u16::from(f.code))
                    }
                    Some(Ok(Message::Close(None))) => return "close:none".to_string(),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return format!("error:{e}"),
                    None => return "ended without a close frame".to_string(),
                }
            }
        });
        clients.push((writer, reader));
    }
    // Every client is mid-flood: sent plenty, still sending.
    tokio::time::sleep(Duration::from_millis(700)).await;
    p.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    start_reading.send_replace(true);
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status:?}");
    let mut sent = Vec::new();
    for (writer, reader) in clients {
        let seen = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the reader finished")
            .unwrap();
        assert_eq!(seen, format!("close:{}", u16::from(CloseCode::Away)));
        sent.push(writer.await.unwrap());
    }
    assert!(
        sent.iter().all(|&n| n > 100),
        "the clients were flooding: {sent:?}"
    );
    reliability(
        "sigterm-flooding-client",
        &[
            ("clients", SENDERS.to_string()),
            ("frames_sent", format!("{sent:?}")),
        ],
    );
}
