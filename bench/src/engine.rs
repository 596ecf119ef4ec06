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
use crate::common::{cpu_secs, hist, rss_bytes, ws_connect, Ctx, Hist};

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
    /// Every sender offers `rate` messages per second on a timer of its own: a
    /// random phase and each interval drawn from 0.5–1.5× the mean, so senders do
    /// not fall into step. Each frame is written and flushed on its own (one
    /// `write` per frame, never two frames in one), like a person's client.
    PerClient { rate: f64 },
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
    /// Count the server's system calls for this many seconds in the middle of the
    /// measured window (`perf stat` on the syscall tracepoints).
    pub count_syscalls: Option<f64>,
    /// Another run to start with: every member of both is connected and `ready`
    /// before either starts (`big-group` runs its 1:1 load beside the group).
    pub gate: Option<Arc<tokio::sync::Barrier>>,
    /// Also record, for every message sent inside the window, when its *last*
    /// recipient got it (`Outcome::last_latency`).
    pub track_last: bool,
}

/// The server's system calls over part of the window, and the messages sent meanwhile.
#[derive(Debug, Clone)]
pub struct Syscalls {
    pub total: u64,
    /// The most frequent ones, most first.
    pub top: Vec<(String, u64)>,
    /// Messages sent per second while they were counted.
    pub sent_per_sec: f64,
    pub secs: f64,
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
    /// The server's user+system CPU seconds over the measured window.
    pub server_cpu_secs: Option<f64>,
    pub syscalls: Option<Syscalls>,
    /// With `track_last`: per message sent inside the window, scheduled → received
    /// by the last of its recipients, µs.
    pub last_latency: Hist,
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
    /// With `track_last`: (sender, seq, latency µs) of each in-window arrival.
    arrivals: Vec<(u64, u64, u64)>,
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
    if let Some(gate) = &plan.gate {
        pb.set_message(format!("{n} connected; waiting for the other run"));
        gate.wait().await;
    }
    let start = ctx.ns() + 50_000_000;
    shared.start_ns.store(start, Ordering::SeqCst);
    let _ = start_tx.send(true);
    let aborted = shared.abort.load(Ordering::SeqCst);
    // Progress and the server's RSS while the run goes on.
    let pid = ctx.server_pid();
    let probe = tokio::spawn(window_probe(
        pid,
        ctx.t0,
        start + (plan.warmup * 1e9) as u64,
        start + ((plan.warmup + plan.duration) * 1e9) as u64,
        plan.count_syscalls,
        shared.clone(),
    ));
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
        server_cpu_secs: None,
        syscalls: None,
        last_latency: hist(),
        errors: Vec::new(),
    };
    let (cpu, syscalls) = probe.await.map_err(|e| anyhow!("probe: {e}"))?;
    out.server_cpu_secs = cpu;
    out.syscalls = syscalls;
    let mut last: HashMap<(u64, u64), u64> = HashMap::new();
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
        for (sender, seq, us) in t.arrivals {
            let e = last.entry((sender, seq)).or_insert(0);
            *e = (*e).max(us);
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
    for us in last.into_values() {
        out.last_latency.saturating_record(us);
    }
    out.latency = latency;
    out.ack_latency = ack_latency;
    Ok(out)
}

/// The server's CPU seconds between `from` and `to` (ns since `t0`), sampled at
/// those instants; with `syscalls`, its system calls over that many seconds in the
/// middle of the window.
async fn window_probe(
    pid: Option<u32>,
    t0: std::time::Instant,
    from: u64,
    to: u64,
    syscalls: Option<f64>,
    shared: Arc<Shared>,
) -> (Option<f64>, Option<Syscalls>) {
    let Some(pid) = pid else {
        return (None, None);
    };
    let at = |ns: u64| t0 + Duration::from_nanos(ns);
    tokio::time::sleep_until(at(from).into()).await;
    let c0 = cpu_secs(pid);
    let mut counted = None;
    if let Some(secs) = syscalls {
        let window = (to - from) as f64 / 1e9;
        let secs = secs.min(window);
        let begin = from + ((window - secs) / 2.0 * 1e9) as u64;
        tokio::time::sleep_until(at(begin).into()).await;
        match count_syscalls(pid, secs, &shared).await {
            Ok(s) => counted = Some(s),
            Err(e) => eprintln!("parley-bench: counting system calls: {e:#}"),
        }
    }
    tokio::time::sleep_until(at(to).into()).await;
    let c1 = cpu_secs(pid);
    (c0.zip(c1).map(|(a, b)| b - a), counted)
}

/// `perf stat` on every `syscalls:sys_enter_*` tracepoint of `pid` for `secs`.
async fn count_syscalls(pid: u32, secs: f64, shared: &Shared) -> Result<Syscalls> {
    let sent0 = shared.sent.load(Ordering::Relaxed);
    let t = std::time::Instant::now();
    let out = tokio::process::Command::new("perf")
        .args(["stat", "-x", ",", "-e", "syscalls:sys_enter_*", "-p"])
        .arg(pid.to_string())
        .args(["--", "sleep", &format!("{secs:.3}")])
        .output()
        .await?;
    let wall = t.elapsed().as_secs_f64();
    let sent = shared.sent.load(Ordering::Relaxed) - sent0;
    if !out.status.success() {
        return Err(anyhow!(
            "perf stat: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // CSV lines: count,unit,event,… ("<not counted>" for none).
    let mut top: Vec<(String, u64)> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let n = f.next()?.trim().parse::<u64>().ok()?;
            let name = f.nth(1)?.strip_prefix("syscalls:sys_enter_")?;
            Some((name.to_string(), n))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    if top.is_empty() {
        return Err(anyhow!("perf stat counted nothing"));
    }
    top.sort_by_key(|t| std::cmp::Reverse(t.1));
    let total = top.iter().map(|(_, n)| n).sum();
    Ok(Syscalls {
        total,
        top,
        sent_per_sec: sent as f64 / wall,
        secs,
    })
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
        (Mode::PerClient { rate }, Some(_)) => {
            let iv = (1.0 / rate.max(0.001) * 1e9) as u64;
            (iv, (iv as f64 * rand::random::<f64>()) as u64)
        }
        _ => (0, 0),
    };
    let jitter = matches!(plan.mode, Mode::PerClient { .. });
    // The next message's scheduled time (ns since t0).
    let mut next_sched = start + offset_ns;
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

    // Wakes the loop to notice the end of the run. Thousands of per-client
    // senders tick more slowly: their wake-ups would load the shared machine.
    let tick_ms = if matches!(plan.mode, Mode::PerClient { .. }) {
        250
    } else {
        50
    };
    let mut tick = tokio::time::interval(Duration::from_millis(tick_ms));
    let open = !matches!(plan.mode, Mode::Closed { .. });
    loop {
        let next_send = t0 + Duration::from_nanos(next_sched);
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
                                let us = (now.saturating_sub(sent_at) / 1000).max(1);
                                lat.saturating_record(us);
                                if plan.track_last {
                                    out.arrivals.push((msg.sender_id, seq, us));
                                }
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
                    let sched = next_sched;
                    if sched > now || sched >= times.stop {
                        break;
                    }
                    k += 1;
                    next_sched = if jitter {
                        sched + (interval_ns as f64 * (0.5 + rand::random::<f64>())) as u64
                    } else {
                        start + offset_ns + k * interval_ns
                    };
                    let seq = book.on_send();
                    send_ns.push(sched);
                    if in_window(sched) {
                        out.sent_in_window += 1;
                    }
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                    // Per client: each frame is flushed (one write) before the next.
                    let r = if jitter {
                        ws.send(make_frame(seq, sched)).await
                    } else {
                        ws.feed(make_frame(seq, sched)).await
                    };
                    if r.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || ws.flush().await.is_err() {
                    out.error = Some(format!("user {uid}: send failed"));
                    break;
                }
                if next_sched >= times.stop {
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
