//! A client that behaves like the web client under faults: it sends numbered
//! messages (content `p:<user>:<seq>`), reconnects with backoff after any drop,
//! catches up with `sync`, resends every unacknowledged message with the same
//! `clientId`, acknowledges what it receives, and records everything it saw for the
//! reconciler.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

// ------------------------------------------------------------------ one connection

/// One WebSocket connection: the kit's protocol client, by the name these tests use.
#[allow(unused_imports)]
pub use parley_testkit::client::{ws_url, Event, Refused, WsClient as Conn};

// ------------------------------------------------------------------ the peer

#[derive(Clone)]
pub struct PeerCfg {
    pub name: String,
    pub user_id: u64,
    pub token: String,
    /// `ws://host:port` of the nodes to try, in order (the next after a failure).
    pub urls: Arc<Mutex<Vec<String>>>,
    /// Where this peer sends (None: it only receives).
    pub chat: Option<u64>,
    /// Every chat this peer is a member of (for its `sync` watermark).
    pub member_chats: Vec<u64>,
    /// How many messages to send; `usize::MAX` with `stop_sending` for "until told".
    pub total: usize,
    /// Most messages sent and not yet answered.
    pub window: usize,
    /// Time between two new messages.
    pub pace: Duration,
    /// Characters of padding after the sequence number.
    pub pad: usize,
    /// Wait this long before reconnecting after the first unexpected close.
    pub first_pause: Duration,
    /// Close and reconnect by itself this often (soak).
    pub churn: Option<Duration>,
    /// Send a `typing` now and then (soak).
    pub typing: bool,
}

impl PeerCfg {
    pub fn new(name: &str, user_id: u64, token: &str, urls: Vec<String>) -> PeerCfg {
        PeerCfg {
            name: name.into(),
            user_id,
            token: token.into(),
            urls: Arc::new(Mutex::new(urls)),
            chat: None,
            member_chats: Vec::new(),
            total: 0,
            window: 8,
            pace: Duration::from_millis(5),
            pad: 0,
            first_pause: Duration::ZERO,
            churn: None,
            typing: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub seq: usize,
    pub client_id: String,
    pub content: String,
    pub chat: u64,
    pub first_sent: Instant,
    pub last_sent: Option<Instant>,
    pub sends: usize,
    /// Ack: (message id, when).
    pub acked: Option<(u64, Instant)>,
    /// Every id an ack for this clientId carried (must be one).
    pub ack_ids: HashSet<u64>,
    /// Sent on the current connection and not answered yet.
    pub awaiting: bool,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub epoch: usize,
    pub id: u64,
    pub chat: u64,
    pub sender: u64,
    pub client_id: String,
    pub content: String,
    pub at: Instant,
    /// Part of a `sync` reply (the `count` frames written just before its ack),
    /// not a push.
    pub during_sync: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PeerLog {
    pub name: String,
    pub user_id: u64,
    pub sent: Vec<Sent>,
    pub received: Vec<Received>,
    /// (epoch, close code or error, when).
    pub closes: Vec<(usize, String, Instant)>,
    /// Error codes by count (`ref`-less ones under "-:<code>").
    pub errors: BTreeMap<String, usize>,
    /// Replies that were not retryable errors for a send (with the frame).
    pub fatal: Vec<String>,
    /// (when, event, userId) for user:online / user:offline.
    pub presence: Vec<(Instant, String, u64)>,
    pub connects: usize,
    pub failed_connects: usize,
    /// Messages sent again after a reconnect or a retryable error.
    pub resent: usize,
    /// Sends that had no answer on a live connection for 15 s.
    pub hangs: usize,
    /// Time from the first failed attempt to the next `ready`, per outage.
    pub reconnect_gaps: Vec<Duration>,
    pub done: bool,
}

impl PeerLog {
    pub fn acked_count(&self) -> usize {
        self.sent.iter().filter(|s| s.acked.is_some()).count()
    }
    pub fn unacked(&self) -> usize {
        self.sent.iter().filter(|s| s.acked.is_none()).count()
    }
    pub fn acked_between(&self, from: Instant, to: Instant) -> usize {
        self.sent
            .iter()
            .filter(|s| s.acked.is_some_and(|(_, t)| t >= from && t <= to))
            .count()
    }
    pub fn acks_after(&self, t: Instant) -> Option<Instant> {
        self.sent
            .iter()
            .filter_map(|s| s.acked.map(|(_, at)| at))
            .filter(|at| *at >= t)
            .min()
    }
}

/// Shared controls: stop sending new messages, finish (final sync, close).
#[derive(Clone, Default)]
pub struct Ctl {
    pub stop_sending: Arc<AtomicBool>,
    pub finish: Arc<AtomicBool>,
}

pub struct Peer {
    pub cfg: PeerCfg,
    pub log: Arc<Mutex<PeerLog>>,
    pub handle: tokio::task::JoinHandle<()>,
}

impl Peer {
    pub fn spawn(cfg: PeerCfg, ctl: &Ctl) -> Peer {
        let log = Arc::new(Mutex::new(PeerLog {
            name: cfg.name.clone(),
            user_id: cfg.user_id,
            ..Default::default()
        }));
        let handle = tokio::spawn(run(cfg.clone(), log.clone(), ctl.clone()));
        Peer { cfg, log, handle }
    }

    pub fn snapshot(&self) -> PeerLog {
        self.log.lock().unwrap().clone()
    }

    /// Sent everything it was to send, and all of it was acknowledged.
    pub fn settled(&self, ctl: &Ctl) -> bool {
        let l = self.log.lock().unwrap();
        let target_reached =
            l.sent.len() >= self.cfg.total || ctl.stop_sending.load(Ordering::Acquire);
        target_reached && l.sent.iter().all(|s| s.acked.is_some())
    }
}

/// Waits until every peer settled (all sent and acknowledged), then lets them finish
/// (final sync) and returns their logs.
pub async fn settle_and_finish(peers: Vec<Peer>, ctl: &Ctl, limit: Duration) -> Vec<PeerLog> {
    let t = Instant::now();
    while !peers.iter().all(|p| p.settled(ctl)) {
        if t.elapsed() > limit {
            let state: Vec<String> = peers
                .iter()
                .map(|p| {
                    let l = p.snapshot();
                    format!(
                        "{}: sent {} unacked {} errors {:?} closes {:?} fatal {:?}",
                        l.name,
                        l.sent.len(),
                        l.unacked(),
                        l.errors,
                        l.closes.iter().map(|c| &c.1).collect::<Vec<_>>(),
                        l.fatal
                    )
                })
                .collect();
            panic!("peers did not settle within {limit:?}: {state:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everything is stored and acknowledged: let in-flight deliveries land, then finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctl.finish.store(true, Ordering::Release);
    let mut logs = Vec::new();
    for p in peers {
        let r = tokio::time::timeout(Duration::from_secs(30), p.handle).await;
        assert!(r.is_ok(), "peer {} did not finish", p.cfg.name);
        logs.push(p.log.lock().unwrap().clone());
    }
    logs
}

const RETRYABLE: &[&str] = &["unavailable", "shutting_down", "rate_limited", "busy"];

#[derive(PartialEq)]
enum Phase {
    AwaitReady,
    Syncing,
    Running,
    FinalSync,
}

async fn run(cfg: PeerCfg, log: Arc<Mutex<PeerLog>>, ctl: Ctl) {
    let mut epoch = 0usize;
    let mut url_index = 0usize;
    let mut backoff = Duration::from_millis(100);
    let mut paused_once = false;
    let mut outage_started: Option<Instant> = None;
    // Highest id received per chat (messages of one chat arrive in id order).
    let mut high: HashMap<u64, u64> = HashMap::new();
    let mut next_send = Instant::now();
    let mut sync_n = 0usize;
    let mut finished = false;
    let mut serial = false;
    let mut serial_resume = Instant::now();

    while !finished {
        let urls = cfg.urls.lock().unwrap().clone();
        let url = ws_url(&urls[url_index % urls.len()], &cfg.token);
        let mut conn = match Conn::try_connect(&url).await {
            Ok(c) => c,
            Err(e) => {
                {
                    let mut l = log.lock().unwrap();
                    l.failed_connects += 1;
                    *l.errors
                        .entry(format!("connect:{}", e.status.unwrap_or(0)))
                        .or_default() += 1;
                }
                outage_started.get_or_insert_with(Instant::now);
                url_index += 1;
                // Backoff with a little jitter so clients do not come back in lockstep.
                let jitter = Duration::from_millis(rand::random::<u64>() % 50);
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        epoch += 1;
        {
            let mut l = log.lock().unwrap();
            l.connects += 1;
            for s in l.sent.iter_mut() {
                s.awaiting = false;
            }
        }
        let connected_at = Instant::now();
        let mut phase = Phase::AwaitReady;
        let mut sync_ref = String::new();
        let mut receipts: Vec<u64> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let mut last_typing = Instant::now();
        let ready_deadline = Instant::now() + Duration::from_secs(15);

        let closed: String = 'conn: loop {
            tokio::select! {
                ev = conn.recv() => {
                    let v = match ev {
                        Some(Event::Frame(v)) => v,
                        Some(Event::Closed(code)) => break 'conn format!("closed:{}", code.map(|c| c.to_string()).unwrap_or_else(|| "eof".into())),
                        Some(Event::Error(e)) => break 'conn format!("error:{e}"),
                        None => break 'conn "closed:eof".into(),
                    };
                    let event = v["event"].as_str().unwrap_or_default().to_string();
                    match event.as_str() {
                        "message:received" => {
                            let d = &v["data"];
                            let r = Received {
                                epoch,
                                id: d["id"].as_u64().unwrap_or(0),
                                chat: d["chatId"].as_u64().unwrap_or(0),
                                sender: d["senderId"].as_u64().unwrap_or(0),
                                client_id: d["clientId"].as_str().unwrap_or_default().into(),
                                content: d["content"].as_str().unwrap_or_default().into(),
                                at: Instant::now(),
                                during_sync: false,
                            };
                            let h = high.entry(r.chat).or_default();
                            *h = (*h).max(r.id);
                            if r.sender != cfg.user_id {
                                receipts.push(r.id);
                            }
                            log.lock().unwrap().received.push(r);
                        }
                        "ready" if phase == Phase::AwaitReady => {
                            if let Some(t) = outage_started.take() {
                                log.lock().unwrap().reconnect_gaps.push(t.elapsed());
                            }
                            backoff = Duration::from_millis(100);
                            phase = Phase::Syncing;
                            sync_n += 1;
                            sync_ref = format!("sync-{epoch}-{sync_n}");
                            conn.send(json!({"event": "sync", "ref": sync_ref, "data": {"afterId": watermark(&cfg, &high)}}));
                        }
                        "user:online" | "user:offline" => {
                            let who = v["data"]["userId"].as_u64().unwrap_or(0);
                            log.lock().unwrap().presence.push((Instant::now(), event.clone(), who));
                        }
                        "ack" | "error" => {
                            let reference = v["ref"].as_str().unwrap_or_default().to_string();
                            if event == "error" {
                                let code = v["data"]["code"].as_str().unwrap_or("?").to_string();
                                let key = if reference.is_empty() { format!("-:{code}") } else { code.clone() };
                                *log.lock().unwrap().errors.entry(key).or_default() += 1;
                            }
                            if !reference.is_empty() && reference == sync_ref {
                                if event == "ack" {
                                    // The page is written as one block right before its ack.
                                    let n = v["data"]["count"].as_u64().unwrap_or(0) as usize;
                                    let mut l = log.lock().unwrap();
                                    let len = l.received.len();
                                    for m in &mut l.received[len.saturating_sub(n)..] {
                                        m.during_sync = true;
                                    }
                                }
                                if event == "error" {
                                    // The store is not answering: try the sync again shortly.
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    sync_n += 1;
                                    sync_ref = format!("sync-{epoch}-{sync_n}");
                                    conn.send(json!({"event": "sync", "ref": sync_ref, "data": {"afterId": watermark(&cfg, &high)}}));
                                    continue;
                                }
                                if v["data"]["hasMore"] == true {
                                    sync_n += 1;
                                    sync_ref = format!("sync-{epoch}-{sync_n}");
                                    let after = v["data"]["lastId"].as_u64().unwrap_or(0);
                                    conn.send(json!({"event": "sync", "ref": sync_ref, "data": {"afterId": after}}));
                                    continue;
                                }
                                if phase == Phase::FinalSync {
                                    finished = true;
                                    break 'conn "finished".into();
                                }
                                phase = Phase::Running;
                                // Everything not acknowledged goes again, same clientId, in
                                // order (one at a time while recovering from an error).
                                let mut l = log.lock().unwrap();
                                let mut n = 0;
                                if !serial {
                                    for s in l.sent.iter_mut().filter(|s| s.acked.is_none()) {
                                        send_message(&conn, s);
                                        n += 1;
                                    }
                                }
                                l.resent += n;
                                continue;
                            }
                            let mut l = log.lock().unwrap();
                            if let Some(s) = l.sent.iter_mut().find(|s| s.client_id == reference) {
                                s.awaiting = false;
                                if event == "ack" {
                                    let id = v["data"]["id"].as_u64().unwrap_or(0);
                                    s.ack_ids.insert(id);
                                    if s.acked.is_none() {
                                        s.acked = Some((id, Instant::now()));
                                    }
                                    if v["data"]["clientId"] != s.client_id.as_str() || v["data"]["content"] != s.content.as_str() {
                                        let f = format!("ack does not match the message: {v}");
                                        l.fatal.push(f);
                                    }
                                } else {
                                    let code = v["data"]["code"].as_str().unwrap_or("?");
                                    if RETRYABLE.contains(&code) {
                                        // Resend one at a time from the oldest, so a
                                        // later message cannot be stored before it.
                                        serial = true;
                                        serial_resume = Instant::now() + Duration::from_millis(250);
                                    } else {
                                        let f = format!("send {} refused: {v}", s.client_id);
                                        l.fatal.push(f);
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if phase == Phase::AwaitReady && now > ready_deadline {
                        break 'conn "no ready".into();
                    }
                    if phase != Phase::Running {
                        continue;
                    }
                    if !receipts.is_empty() {
                        conn.send(json!({"event": "message:delivered", "data": {"messageIds": std::mem::take(&mut receipts)}}));
                    }
                    if ctl.finish.load(Ordering::Acquire) {
                        let all = log.lock().unwrap().sent.iter().all(|s| s.acked.is_some());
                        if all {
                            phase = Phase::FinalSync;
                            sync_n += 1;
                            sync_ref = format!("sync-{epoch}-{sync_n}");
                            conn.send(json!({"event": "sync", "ref": sync_ref, "data": {"afterId": watermark(&cfg, &high)}}));
                            continue;
                        }
                    }
                    if let Some(every) = cfg.churn {
                        if connected_at.elapsed() > every && !ctl.finish.load(Ordering::Acquire) {
                            conn.close();
                            break 'conn "churn".into();
                        }
                    }
                    let mut l = log.lock().unwrap();
                    // Sends with no answer for 15 s on a live connection: a hang.
                    let mut hangs = 0;
                    for s in l.sent.iter_mut().filter(|s| s.awaiting && s.last_sent.is_some_and(|t| now - t > Duration::from_secs(15))) {
                        hangs += 1;
                        send_message(&conn, s);
                    }
                    l.hangs += hangs;
                    l.resent += hangs;
                    // Recovering from a retryable error: the oldest unacknowledged
                    // message alone, once nothing else is awaiting an answer.
                    if serial && now >= serial_resume && !l.sent.iter().any(|s| s.awaiting) {
                        match l.sent.iter_mut().find(|s| s.acked.is_none()) {
                            Some(s) => {
                                send_message(&conn, s);
                                l.resent += 1;
                            }
                            None => serial = false,
                        }
                    }
                    let outstanding = l.sent.iter().filter(|s| s.acked.is_none()).count();
                    if let Some(chat) = cfg.chat {
                        if !serial && l.sent.len() < cfg.total
                            && !ctl.stop_sending.load(Ordering::Acquire)
                            && outstanding < cfg.window
                            && now >= next_send
                        {
                            let seq = l.sent.len();
                            let mut s = Sent {
                                seq,
                                client_id: format!("{}-{}", cfg.name, seq),
                                content: content(cfg.user_id, seq, cfg.pad),
                                chat,
                                first_sent: now,
                                last_sent: None,
                                sends: 0,
                                acked: None,
                                ack_ids: HashSet::new(),
                                awaiting: false,
                            };
                            send_message(&conn, &mut s);
                            l.sent.push(s);
                            next_send = now + cfg.pace;
                        }
                        if cfg.typing && last_typing.elapsed() > Duration::from_millis(700) {
                            last_typing = now;
                            conn.send(json!({"event": "typing", "data": {"chatId": chat, "active": true}}));
                        }
                    }
                }
            }
        };
        conn.close();
        if finished {
            break;
        }
        log.lock()
            .unwrap()
            .closes
            .push((epoch, closed.clone(), Instant::now()));
        if closed != "churn" {
            outage_started.get_or_insert_with(Instant::now);
            if !paused_once && !cfg.first_pause.is_zero() {
                paused_once = true;
                tokio::time::sleep(cfg.first_pause).await;
            }
            // A close from the server usually means it is going away: the next node.
            if urls.len() > 1 && !closed.starts_with("closed:1013") {
                url_index += 1;
            }
            let jitter = Duration::from_millis(rand::random::<u64>() % 50);
            tokio::time::sleep(Duration::from_millis(50) + jitter).await;
        }
    }
    log.lock().unwrap().done = true;
}

pub fn content(user: u64, seq: usize, pad: usize) -> String {
    let mut c = format!("p:{user}:{seq}");
    if pad > 0 {
        c.push(':');
        c.push_str(&"x".repeat(pad));
    }
    c
}

/// (user, seq) of a peer message's content.
pub fn parse_content(c: &str) -> Option<(u64, usize)> {
    let mut it = c.split(':');
    if it.next()? != "p" {
        return None;
    }
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn send_message(conn: &Conn, s: &mut Sent) {
    conn.send(
        json!({"event": "message:send", "ref": s.client_id, "data": {
        "chatId": s.chat, "clientId": s.client_id, "kind": "text", "content": s.content}}),
    );
    s.sends += 1;
    s.awaiting = true;
    s.last_sent = Some(Instant::now());
}

/// The `afterId` that cannot skip a message: the lowest of the per-chat highs.
fn watermark(cfg: &PeerCfg, high: &HashMap<u64, u64>) -> u64 {
    cfg.member_chats
        .iter()
        .map(|c| high.get(c).copied().unwrap_or(0))
        .min()
        .unwrap_or(0)
}
