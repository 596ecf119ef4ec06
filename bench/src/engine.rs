//! The messaging engine behind `throughput`, `latency` and `fanout`: one WebSocket
//! per user, senders closed-loop (W in flight) or open-loop (a fixed schedule),
//! every recipient checking what it gets as it arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message;

use crate::check::{make_content, parse_content, AckBook, Inbox, Verdict};
use crate::common::{hist, rss_bytes, ws_connect, Ctx, Hist};

/// One connected user: what it sends (if anything) and whom it hears from.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: u64,
    pub send_chat: Option<u64>,
    pub expect_from: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Each sender keeps `window` messages in flight.
    Closed { window: usize },
    /// All senders together offer `rate` messages per second on a fixed schedule.
    Open { rate: f64 },
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub members: Vec<Member>,
    pub mode: Mode,
    pub delivered: bool,
    /// Every member reports `client:state {visible: false}` after `ready` (a hidden
    /// tab: the server offers its messages to Web Push).
    pub hidden: bool,
    pub warmup: f64,
    pub duration: f64,
    pub drain: f64,
    pub pad: usize,
}

#[derive(Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Scheduled (or sent) → received, messages sent inside the window, µs.
    pub latency: Hist,
    /// Sent → acknowledged, inside the window, µs.
    pub ack_latency: Hist,
    pub received_in_window: u64,
    pub acked_in_window: u64,
    pub sent_in_window: u64,
    pub receipts_expected: u64,
    pub receipts: u64,
    pub window_secs: f64,
    pub server_rss_max: Option<u64>,
    pub errors: Vec<String>,
}

struct Shared {
    start_ns: AtomicU64,
    abort: AtomicBool,
    ready: AtomicUsize,
    senders_total: usize,
    senders_done: AtomicUsize,
    /// Members that have everything they expect; all stay connected until every
    /// member is finished (a client does not hang up the moment it is satisfied).
    finished: AtomicUsize,
    members: usize,
    final_sent: HashMap<u64, AtomicU64>,
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(rename = "ref", default, borrow)]
    reference: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Msg<'a> {
    id: u64,
    sender_id: u64,
    #[serde(borrow)]
    content: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    #[serde(default)]
    message_ids: Vec<u64>,
}

#[derive(Default)]
struct TaskOut {
    user_id: u64,
    book: Option<AckBook>,
    inbox: Inbox,
    latency: Option<Hist>,
    ack_latency: Option<Hist>,
    received_in_window: u64,
    acked_in_window: u64,
    sent_in_window: u64,
    receipts: u64,
    error: Option<String>,
}

struct Times {
    warm_end: u64,
    stop: u64,
    hard: u64,
}

pub async fn run(ctx: &Ctx, plan: Plan) -> Result<Outcome> {
    let senders: Vec<u64> = plan
        .members
        .iter()
        .filter(|m| m.send_chat.is_some())
        .map(|m| m.user_id)
        .collect();
    let shared = Arc::new(Shared {
        start_ns: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        ready: AtomicUsize::new(0),
        senders_total: senders.len(),
        senders_done: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        members: plan.members.len(),
        final_sent: senders.iter().map(|&s| (s, AtomicU64::new(0))).collect(),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let n = plan.members.len();
    let connect_limit = Arc::new(tokio::sync::Semaphore::new(64));
    let (start_tx, start_rx) = tokio::sync::watch::channel(false);
    let plan = Arc::new(plan);
    let mut handles = Vec::with_capacity(n);
    let sender_index: HashMap<u64, usize> =
        senders.iter().enumerate().map(|(i, &s)| (s, i)).collect();
    for m in plan.members.iter().cloned() {
        let token = ctx.token(m.user_id)?;
        let shared = shared.clone();
        let plan = plan.clone();
        let limit = connect_limit.clone();
        let mut start_rx = start_rx.clone();
        let server = ctx.server;
        let ws_base = ctx.ws_base.clone();
        let t0 = ctx.t0;
        let run_id = ctx.run_id.clone();
        let idx = m.send_chat.map(|_| sender_index[&m.user_id]);
        handles.push(tokio::spawn(async move {
            let mut out = TaskOut {
                user_id: m.user_id,
                ..Default::default()
            };
            let ws = {
                let _permit = limit.acquire().await;
                match connect_ready(server, &ws_base, &token, plan.hidden).await {
                    Ok(ws) => ws,
                    Err(e) => {
                        out.error = Some(format!("user {}: connect: {e}", m.user_id));
                        shared.abort.store(true, Ordering::SeqCst);
                        return out;
                    }
                }
            };
            shared.ready.fetch_add(1, Ordering::SeqCst);
            while !*start_rx.borrow() {
                if start_rx.changed().await.is_err() {
                    return out;
                }
            }
            if shared.abort.load(Ordering::SeqCst) {
                return out;
            }
            member_loop(ws, m, idx, &plan, &shared, t0, &run_id, &mut out).await;
            out
        }));
    }
    drop(start_rx);

    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    loop {
        let r = shared.ready.load(Ordering::SeqCst);
        pb.set_message(format!("connecting {r}/{n}"));
        if r == n || shared.abort.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = ctx.ns() + 50_000_000;
    shared.start_ns.store(start, Ordering::SeqCst);
    let _ = start_tx.send(true);
    let aborted = shared.abort.load(Ordering::SeqCst);

    // Progress and the server's RSS while the run goes on.
    let pid = ctx.server_pid();
    let mut rss_max = pid.and_then(rss_bytes);
    let total_secs = plan.warmup + plan.duration;
    let mut done = 0;
    while done < handles.len() {
        done = handles.iter().filter(|h| h.is_finished()).count();
        if let Some(p) = pid {
            rss_max = rss_max.max(rss_bytes(p));
        }
        let el = (ctx.ns().saturating_sub(start)) as f64 / 1e9;
        pb.set_message(format!(
            "{:.1}/{:.0}s sent {} acked {} received {} (tasks done {done}/{n})",
            el,
            total_secs,
            shared.sent.load(Ordering::Relaxed),
            shared.acked.load(Ordering::Relaxed),
            shared.received.load(Ordering::Relaxed)
        ));
        pb.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pb.finish_and_clear();

    let mut books = HashMap::new();
    let mut inboxes = Vec::new();
    let mut latency = hist();
    let mut ack_latency = hist();
    let mut out = Outcome {
        verdict: Verdict::default(),
        latency: hist(),
        ack_latency: hist(),
        received_in_window: 0,
        acked_in_window: 0,
        sent_in_window: 0,
        receipts_expected: 0,
        receipts: 0,
        window_secs: plan.duration,
        server_rss_max: rss_max,
        errors: Vec::new(),
    };
    for h in handles {
        let t = h.await.map_err(|e| anyhow!("task: {e}"))?;
        if let Some(e) = t.error {
            out.errors.push(e);
        }
        if let Some(l) = &t.latency {
            latency.add(l).ok();
        }
        if let Some(l) = &t.ack_latency {
            ack_latency.add(l).ok();
        }
        out.received_in_window += t.received_in_window;
        out.acked_in_window += t.acked_in_window;
        out.sent_in_window += t.sent_in_window;
        out.receipts += t.receipts;
        if let Some(b) = t.book {
            books.insert(t.user_id, b);
        }
        inboxes.push(t.inbox);
    }
    if aborted && out.errors.is_empty() {
        out.errors.push("run aborted".into());
    }
    out.verdict = Verdict::compute(&books, &inboxes);
    if plan.delivered {
        out.receipts_expected = out.verdict.delivered;
    }
    out.latency = latency;
    out.ack_latency = ack_latency;
    Ok(out)
}

/// Connects and waits for `ready` (nothing is pending for fresh users).
async fn connect_ready(
    server: std::net::SocketAddr,
    ws_base: &str,
    token: &str,
    hidden: bool,
) -> Result<crate::common::Ws> {
    let mut ws = ws_connect(server, ws_base, token, None).await?;
    if hidden {
        // Sent before `ready` arrives: the server handles frames in order, so the
        // session is hidden before the run starts.
        let state = r#"{"event":"client:state","data":{"visible":false}}"#;
        ws.send(Message::Text(state.into())).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let f = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no ready within 30 s"))?;
        match f {
            Some(Ok(Message::Text(t))) => {
                if t.contains("\"ready\"") {
                    let v: serde_json::Value = serde_json::from_str(&t)?;
                    if v["event"] == "ready" {
                        return Ok(ws);
                    }
                }
            }
            Some(Ok(Message::Close(c))) => return Err(anyhow!("closed before ready: {c:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(anyhow!("ended before ready")),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn member_loop(
    mut ws: crate::common::Ws,
    m: Member,
    sender_idx: Option<usize>,
    plan: &Plan,
    shared: &Shared,
    t0: std::time::Instant,
    run_id: &str,
    out: &mut TaskOut,
) {
    let ns = || t0.elapsed().as_nanos() as u64;
    let start = shared.start_ns.load(Ordering::SeqCst);
    let times = Times {
        warm_end: start + (plan.warmup * 1e9) as u64,
        stop: start + ((plan.warmup + plan.duration) * 1e9) as u64,
        hard: start + ((plan.warmup + plan.duration + plan.drain) * 1e9) as u64,
    };
    let in_window = |t: u64| t >= times.warm_end && t < times.stop;
    for &s in &m.expect_from {
        out.inbox.expect(s);
    }
    let mut lat = hist();
    let mut ack_lat = hist();
    let mut book = AckBook::default();
    let mut send_ns: Vec<u64> = Vec::new();
    let mut answered: u64 = 0;
    let mut sending = m.send_chat.is_some();
    let mut published = m.send_chat.is_none();
    let mut counted = false;
    let expected_receipts_needed = plan.delivered && m.send_chat.is_some();

    // Open loop: this sender's schedule.
    let n_senders = shared.senders_total.max(1) as f64;
    let (interval_ns, offset_ns) = match (plan.mode, sender_idx) {
        (Mode::Open { rate }, Some(i)) => {
            let iv = (n_senders / rate.max(0.001) * 1e9) as u64;
            (iv, iv * i as u64 / n_senders as u64)
        }
        _ => (0, 0),
    };
    let mut k: u64 = 0;
    let chat = m.send_chat.unwrap_or(0);
    let uid = m.user_id;
    let make_frame = |seq: u64, ns_val: u64| -> Message {
        Message::Text(
            format!(
                r#"{{"event":"message:send","ref":"s{seq}","data":{{"chatId":{chat},"clientId":"{run_id}-{uid}-{seq}","kind":"text","content":"{}"}}}}"#,
                make_content(seq, ns_val, plan.pad)
            )
            .into(),
        )
    };

    // Wait for the common start.
    let start_at = t0 + Duration::from_nanos(start);
    tokio::time::sleep_until(start_at.into()).await;

    if let (Mode::Closed { window }, true) = (plan.mode, sending) {
        for _ in 0..window {
            let now = ns();
            let seq = book.on_send();
            send_ns.push(now);
            if in_window(now) {
                out.sent_in_window += 1;
            }
            shared.sent.fetch_add(1, Ordering::Relaxed);
            if ws.feed(make_frame(seq, now)).await.is_err() {
                break;
            }
        }
        if let Err(e) = ws.flush().await {
            out.error = Some(format!("user {uid}: send: {e}"));
        }
    }

    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let open = matches!(plan.mode, Mode::Open { .. });
    loop {
        let next_send = t0 + Duration::from_nanos(start + offset_ns + k * interval_ns);
        tokio::select! {
            biased;
            f = ws.next() => {
                let text = match f {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => {
                        out.error = Some(format!("user {uid}: server closed: {c:?}"));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        out.error = Some(format!("user {uid}: socket: {e}"));
                        break;
                    }
                    None => {
                        out.error = Some(format!("user {uid}: socket ended"));
                        break;
                    }
                };
                let now = ns();
                let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
                    out.error.get_or_insert_with(|| format!("user {uid}: bad frame {text}"));
                    continue;
                };
                match frame.event.as_ref() {
                    "ack" => {
                        let Some(seq) = frame.reference.as_deref().and_then(|r| r.strip_prefix('s')).and_then(|s| s.parse::<u64>().ok()) else { continue };
                        book.on_ack(seq);
                        answered += 1;
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                        if let Some(&t) = send_ns.get(seq as usize) {
                            if in_window(t) {
                                ack_lat.saturating_record(((now - t) / 1000).max(1));
                            }
                        }
                        if in_window(now) {
                            out.acked_in_window += 1;
                        }
                        if sending && !open {
                            if now >= times.stop {
                                sending = false;
                            } else {
                                let seq = book.on_send();
                                send_ns.push(now);
                                if in_window(now) {
                                    out.sent_in_window += 1;
                                }
                                shared.sent.fetch_add(1, Ordering::Relaxed);
                                if let Err(e) = ws.send(make_frame(seq, now)).await {
                                    out.error = Some(format!("user {uid}: send: {e}"));
                                    break;
                                }
                            }
                        }
                    }
                    "error" => {
                        if let Some(seq) = frame.reference.as_deref().and_then(|r| r.strip_prefix('s')).and_then(|s| s.parse::<u64>().ok()) {
                            book.on_error(seq);
                            answered += 1;
                        }
                        out.error.get_or_insert_with(|| format!("user {uid}: error frame {text}"));
                        if sending && !open && now < times.stop {
                            let seq = book.on_send();
                            send_ns.push(now);
                            shared.sent.fetch_add(1, Ordering::Relaxed);
                            if ws.send(make_frame(seq, now)).await.is_err() {
                                break;
                            }
                        }
                    }
                    "message:received" => {
                        let Some(msg) = frame.data.and_then(|d| serde_json::from_str::<Msg>(d.get()).ok()) else { continue };
                        let Some((seq, sent_at)) = parse_content(&msg.content) else {
                            out.inbox.strangers += 1;
                            continue;
                        };
                        if out.inbox.on_receive(msg.sender_id, seq) {
                            shared.received.fetch_add(1, Ordering::Relaxed);
                            if in_window(sent_at) {
                                lat.saturating_record((now.saturating_sub(sent_at) / 1000).max(1));
                            }
                            if in_window(now) {
                                out.received_in_window += 1;
                            }
                        }
                        if plan.delivered {
                            let f = format!(r#"{{"event":"message:delivered","data":{{"messageIds":[{}]}}}}"#, msg.id);
                            if let Err(e) = ws.send(Message::Text(f.into())).await {
                                out.error = Some(format!("user {uid}: send receipt: {e}"));
                                break;
                            }
                        }
                    }
                    "message:delivered" => {
                        if let Some(r) = frame.data.and_then(|d| serde_json::from_str::<Receipt>(d.get()).ok()) {
                            out.receipts += r.message_ids.len() as u64;
                        }
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(next_send.into()), if sending && open => {
                // Send every message whose scheduled time has come (catching up if late).
                let now = ns();
                let mut failed = false;
                loop {
                    let sched = start + offset_ns + k * interval_ns;
                    if sched > now || sched >= times.stop {
                        break;
                    }
                    k += 1;
                    let seq = book.on_send();
                    send_ns.push(sched);
                    if in_window(sched) {
                        out.sent_in_window += 1;
                    }
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    if ws.feed(make_frame(seq, sched)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || ws.flush().await.is_err() {
                    out.error = Some(format!("user {uid}: send failed"));
                    break;
                }
                if start + offset_ns + k * interval_ns >= times.stop {
                    sending = false;
                }
            }
            _ = tick.tick() => {}
        }
        let now = ns();
        if sending && now >= times.stop {
            sending = false;
        }
        if !sending && !published && (answered >= book.sent || now >= times.hard) {
            if let Some(a) = shared.final_sent.get(&uid) {
                a.store(book.acked(), Ordering::SeqCst);
            }
            shared.senders_done.fetch_add(1, Ordering::SeqCst);
            published = true;
        }
        if now >= times.hard {
            break;
        }
        if !counted
            && published
            && (!expected_receipts_needed || out.receipts >= book.acked())
            && shared.senders_done.load(Ordering::SeqCst) == shared.senders_total
            && out.inbox.streams.iter().all(|(s, st)| {
                st.received
                    >= shared
                        .final_sent
                        .get(s)
                        .map(|a| a.load(Ordering::SeqCst))
                        .unwrap_or(0)
            })
        {
            shared.finished.fetch_add(1, Ordering::SeqCst);
            counted = true;
        }
        if counted && shared.finished.load(Ordering::SeqCst) >= shared.members {
            break;
        }
    }
    if !counted {
        shared.finished.fetch_add(1, Ordering::SeqCst);
    }
    if !published {
        if let Some(a) = shared.final_sent.get(&uid) {
            a.store(book.acked(), Ordering::SeqCst);
        }
        shared.senders_done.fetch_add(1, Ordering::SeqCst);
    }
    let _ = ws.close(None).await;
    if m.send_chat.is_some() {
        out.book = Some(book);
    }
    out.latency = Some(lat);
    out.ack_latency = Some(ack_lat);
}
