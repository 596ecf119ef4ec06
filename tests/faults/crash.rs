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
