//! The scenarios except `idle`: throughput, latency, fanout, login-storm, history.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use crate::common::{
    count_messages, dummy_hash, hash_password, hist, insert_direct_chats, insert_group,
    insert_users, max_ms, ms, username, Ctx, Hist, Report,
};
use crate::engine::{self, Member, Mode, Outcome, Plan};

const MIB: f64 = 1024.0 * 1024.0;

/// Pairs of users (sender, receiver), each pair a direct chat, as engine members.
async fn prepare_pairs(ctx: &Ctx, tag: &str, pairs: usize) -> Result<(Vec<Member>, Vec<u64>)> {
    let ids = insert_users(ctx, tag, pairs * 2, &dummy_hash()).await?;
    let pair_ids: Vec<(u64, u64)> = (0..pairs).map(|i| (ids[2 * i], ids[2 * i + 1])).collect();
    let chats = insert_direct_chats(ctx, &pair_ids).await?;
    let mut members = Vec::with_capacity(pairs * 2);
    for (i, &(s, r)) in pair_ids.iter().enumerate() {
        members.push(Member {
            user_id: s,
            send_chat: Some(chats[i]),
            expect_from: vec![],
        });
        members.push(Member {
            user_id: r,
            send_chat: None,
            expect_from: vec![s],
        });
    }
    Ok((members, chats))
}

/// Correctness of one engine run, plus the MySQL row count, into `report`.
async fn check_outcome(
    ctx: &Ctx,
    report: &mut Report,
    out: &Outcome,
    chats: &[u64],
    label: &str,
) -> Result<()> {
    for p in out.verdict.problems() {
        report.problem(format!("{label}{p}"));
    }
    for e in out.errors.iter().take(5) {
        report.problem(format!("{label}{e}"));
    }
    if out.errors.len() > 5 {
        report.problem(format!(
            "{label}{} more errors (connections or error frames)",
            out.errors.len() - 5
        ));
    }
    let rows = count_messages(ctx, chats).await?;
    report.fig(&format!("{label}rows in MySQL"), rows as f64, "rows");
    if rows != out.verdict.acked {
        report.problem(format!(
            "{label}{rows} rows in MySQL but {} messages acknowledged",
            out.verdict.acked
        ));
    }
    if out.receipts_expected > 0 && out.receipts < out.receipts_expected {
        report.problem(format!(
            "{label}{} delivery receipts reached senders, {} expected",
            out.receipts, out.receipts_expected
        ));
    }
    if out.verdict.sent == 0 {
        report.problem(format!("{label}nothing was sent"));
    }
    Ok(())
}

fn counts(report: &mut Report, out: &Outcome, label: &str) {
    report.fig(&format!("{label}sent"), out.verdict.sent as f64, "msgs");
    report.fig(&format!("{label}acked"), out.verdict.acked as f64, "msgs");
    report.fig(
        &format!("{label}deliveries"),
        out.verdict.delivered as f64,
        "msgs",
    );
}

// ------------------------------------------------------------------ throughput

#[derive(Args, Debug, Clone)]
pub struct ThroughputArgs {
    /// Sender→receiver pairs (each a direct chat).
    #[arg(long, short = 'p', default_value_t = 100)]
    pub pairs: usize,
    /// Messages in flight per sender.
    #[arg(long, short = 'w', default_value_t = 10)]
    pub window: usize,
    /// Every receiver sends message:delivered for each message.
    #[arg(long)]
    pub delivered: bool,
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Seconds allowed after the window for the last acks and deliveries.
    #[arg(long, default_value_t = 15.0)]
    pub drain: f64,
    /// Extra bytes of content per message.
    #[arg(long, default_value_t = 32)]
    pub pad: usize,
}

pub async fn throughput(ctx: &Ctx, a: &ThroughputArgs) -> Result<Report> {
    let mut r = Report::new(
        "throughput",
        json!({"pairs": a.pairs, "window": a.window, "delivered": a.delivered,
               "duration": a.duration, "warmup": a.warmup, "pad": a.pad}),
    );
    let tag = if a.delivered { "td" } else { "t" };
    let (members, chats) = prepare_pairs(ctx, tag, a.pairs).await?;
    let out = engine::run(
        ctx,
        Plan {
            members,
            mode: Mode::Closed { window: a.window },
            delivered: a.delivered,
            hidden: false,
            warmup: a.warmup,
            duration: a.duration,
            drain: a.drain,
            pad: a.pad,
        },
    )
    .await?;
    let rate = out.received_in_window as f64 / out.window_secs;
    r.fig("messages/s (stored+acked+received)", rate, "msg/s");
    r.fig(
        "acks/s",
        out.acked_in_window as f64 / out.window_secs,
        "msg/s",
    );
    r.fig("send→received p50", ms(&out.latency, 0.5), "ms");
    r.fig("send→received p99", ms(&out.latency, 0.99), "ms");
    r.fig("send→ack p50", ms(&out.ack_latency, 0.5), "ms");
    r.fig("send→ack p99", ms(&out.ack_latency, 0.99), "ms");
    if a.delivered {
        r.fig(
            "receipts/s",
            out.receipts as f64 / (a.warmup + a.duration),
            "receipts/s",
        );
        r.fig("receipts", out.receipts as f64, "receipts");
    }
    counts(&mut r, &out, "");
    if let Some(rss) = out.server_rss_max {
        r.fig("server RSS max", rss as f64 / MIB, "MiB");
        r.target(
            "server RSS during throughput (MiB)",
            rss as f64 / MIB,
            "<=",
            150.0,
        );
    }
    let goal = if a.delivered { 10_000.0 } else { 17_000.0 };
    r.target(
        &format!(
            "throughput P={} W={}{} (msg/s)",
            a.pairs,
            a.window,
            if a.delivered { " --delivered" } else { "" }
        ),
        rate,
        ">=",
        goal,
    );
    check_outcome(ctx, &mut r, &out, &chats, "").await?;
    Ok(r)
}

// ------------------------------------------------------------------ latency

#[derive(Args, Debug, Clone)]
pub struct LatencyArgs {
    /// Offered rate, messages per second across all senders.
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    /// Sender→receiver pairs.
    #[arg(long, short = 'p', default_value_t = 50)]
    pub pairs: usize,
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    #[arg(long, default_value_t = 15.0)]
    pub drain: f64,
    #[arg(long, default_value_t = 32)]
    pub pad: usize,
    /// Every member hides its tab (`client:state {visible: false}`) and holds a Web
    /// Push subscription at a loopback endpoint that accepts connections and never
    /// answers: the send path beside a dead push service. The server needs a VAPID
    /// key and `push.allow_insecure_endpoints` (PARLEY_SERVER_ENV, see run.sh).
    #[arg(long)]
    pub push_hang: bool,
}

/// A push service that never answers: accepts connections and holds them. Returns
/// its port and a counter of the connections the server opened to it.
async fn hanging_push_service() -> Result<(u16, Arc<AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let opened = Arc::new(AtomicU64::new(0));
    let count = opened.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            held.push(socket);
        }
    });
    Ok((port, opened))
}

/// One push subscription per member at `http://127.0.0.1:{port}/…`, tied to the
/// member's sign-in session. The keys are RFC 8291 appendix A's user agent keys
/// (a valid P-256 point and auth secret; nobody decrypts here).
async fn subscribe_all(ctx: &Ctx, members: &[Member], port: u16) -> Result<()> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let p256dh = URL_SAFE_NO_PAD.decode(
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
    )?;
    let auth = URL_SAFE_NO_PAD.decode("BTBZMqHH6r4Tts7J_aSIgg")?;
    let mut conn = ctx.pool.get_conn().await?;
    for m in members {
        let endpoint = format!("http://127.0.0.1:{port}/push/{}/{}", ctx.run_id, m.user_id);
        conn.exec_drop(
            "INSERT INTO push_subscriptions (user_id, auth_session_id, endpoint, p256dh, auth) \
             VALUES (?, ?, ?, ?, ?)",
            (m.user_id, ctx.sid(m.user_id)?, endpoint, &p256dh, &auth),
        )
        .await?;
    }
    Ok(())
}

/// Runs the open loop; with `--push-hang`, also how many connections the server
/// opened to the hanging push service.
async fn latency_run(
    ctx: &Ctx,
    a: &LatencyArgs,
    tag: &str,
) -> Result<(Outcome, Vec<u64>, Option<u64>)> {
    let (members, chats) = prepare_pairs(ctx, tag, a.pairs).await?;
    let hang = if a.push_hang {
        let (port, opened) = hanging_push_service().await?;
        subscribe_all(ctx, &members, port).await?;
        Some(opened)
    } else {
        None
    };
    let out = engine::run(
        ctx,
        Plan {
            members,
            mode: Mode::Open { rate: a.rate },
            delivered: false,
            hidden: a.push_hang,
            warmup: a.warmup,
            duration: a.duration,
            drain: a.drain,
            pad: a.pad,
        },
    )
    .await?;
    Ok((out, chats, hang.map(|n| n.load(Ordering::Relaxed))))
}

fn latency_figures(r: &mut Report, out: &Outcome, label: &str) {
    let h = &out.latency;
    r.fig(
        &format!("{label}offered→received msgs/s"),
        out.received_in_window as f64 / out.window_secs,
        "msg/s",
    );
    r.fig(&format!("{label}latency p50"), ms(h, 0.5), "ms");
    r.fig(&format!("{label}latency p90"), ms(h, 0.9), "ms");
    r.fig(&format!("{label}latency p99"), ms(h, 0.99), "ms");
    r.fig(&format!("{label}latency p99.9"), ms(h, 0.999), "ms");
    r.fig(&format!("{label}latency max"), max_ms(h), "ms");
}

pub async fn latency(ctx: &Ctx, a: &LatencyArgs) -> Result<Report> {
    let mut r = Report::new(
        "latency",
        json!({"rate": a.rate, "pairs": a.pairs, "duration": a.duration, "warmup": a.warmup, "pad": a.pad}),
    );
    let (out, chats, push_connections) = latency_run(ctx, a, "l").await?;
    latency_figures(&mut r, &out, "");
    if let Some(n) = push_connections {
        // The server did try the dead service (else the run measured nothing).
        r.fig(
            "connections opened to the hanging push service",
            n as f64,
            "",
        );
        if n == 0 {
            r.problem("--push-hang: the server never tried the push service (push settings?)");
        }
    }
    counts(&mut r, &out, "");
    r.target(
        &format!("latency at {}/s p99 (ms)", a.rate),
        ms(&out.latency, 0.99),
        "<=",
        15.0,
    );
    r.target(
        &format!("latency at {}/s p99.9 (ms)", a.rate),
        ms(&out.latency, 0.999),
        "<=",
        50.0,
    );
    check_outcome(ctx, &mut r, &out, &chats, "").await?;
    Ok(r)
}

// ------------------------------------------------------------------ fanout

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Number of groups.
    #[arg(long, default_value_t = 5)]
    pub groups: usize,
    /// Members per group (G), all online.
    #[arg(long, short = 'g', default_value_t = 100)]
    pub size: usize,
    /// Senders per group.
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
    /// Messages per second across all senders.
    #[arg(long, default_value_t = 1100.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    #[arg(long, default_value_t = 20.0)]
    pub drain: f64,
    #[arg(long, default_value_t = 32)]
    pub pad: usize,
}

pub async fn fanout(ctx: &Ctx, a: &FanoutArgs) -> Result<Report> {
    if a.size < 2 || a.senders == 0 || a.senders > a.size {
        bail!("fanout needs --size >= 2 and 1 <= --senders <= --size");
    }
    let mut r = Report::new(
        "fanout",
        json!({"groups": a.groups, "size": a.size, "senders": a.senders, "rate": a.rate,
               "duration": a.duration, "warmup": a.warmup}),
    );
    let ids = insert_users(ctx, "f", a.groups * a.size, &dummy_hash()).await?;
    let mut members = Vec::new();
    let mut chats = Vec::new();
    for g in 0..a.groups {
        let group = &ids[g * a.size..(g + 1) * a.size];
        let chat = insert_group(ctx, &format!("bench {} group {g}", ctx.run_id), group).await?;
        chats.push(chat);
        let senders = &group[..a.senders];
        for (i, &u) in group.iter().enumerate() {
            members.push(Member {
                user_id: u,
                send_chat: (i < a.senders).then_some(chat),
                expect_from: senders.iter().copied().filter(|&s| s != u).collect(),
            });
        }
    }
    let out = engine::run(
        ctx,
        Plan {
            members,
            mode: Mode::Open { rate: a.rate },
            delivered: false,
            hidden: false,
            warmup: a.warmup,
            duration: a.duration,
            drain: a.drain,
            pad: a.pad,
        },
    )
    .await?;
    let dps = out.received_in_window as f64 / out.window_secs;
    r.fig("deliveries/s", dps, "deliveries/s");
    r.fig(
        "messages/s sent",
        out.sent_in_window as f64 / out.window_secs,
        "msg/s",
    );
    r.fig("delivery latency p50", ms(&out.latency, 0.5), "ms");
    r.fig("delivery latency p99", ms(&out.latency, 0.99), "ms");
    r.fig("delivery latency max", max_ms(&out.latency), "ms");
    counts(&mut r, &out, "");
    r.target(
        &format!("fanout groups of {} (deliveries/s)", a.size),
        dps,
        ">=",
        100_000.0,
    );
    check_outcome(ctx, &mut r, &out, &chats, "").await?;
    Ok(r)
}

// ------------------------------------------------------------------ login storm

#[derive(Args, Debug, Clone)]
pub struct LoginStormArgs {
    /// Logins in flight during the storm.
    #[arg(long, default_value_t = 200)]
    pub in_flight: usize,
    /// Registered users the storm logs in as (with a known password).
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// A login answered later than this counts as a timeout (seconds).
    #[arg(long, default_value_t = 10.0)]
    pub login_timeout: f64,
    /// The messaging load measured with and without the storm.
    #[command(flatten)]
    pub latency: LatencyArgs,
}

#[derive(Default)]
struct StormCounts {
    ok: AtomicU64,
    r429: AtomicU64,
    r503: AtomicU64,
    other: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
}

pub async fn login_storm(ctx: &Ctx, a: &LoginStormArgs) -> Result<Report> {
    let mut r = Report::new(
        "login-storm",
        json!({"inFlight": a.in_flight, "users": a.users, "rate": a.latency.rate,
               "pairs": a.latency.pairs, "duration": a.latency.duration, "warmup": a.latency.warmup}),
    );
    // Real users with a known password, hashed as the server hashes.
    let password = format!("bench-password-{}", ctx.run_id);
    let hash = hash_password(&password, ctx.common.pbkdf2_iterations)?;
    let ids = insert_users(ctx, "s", a.users.max(1), &hash).await?;
    let names: Arc<Vec<String>> = Arc::new((0..ids.len()).map(|i| username(ctx, "s", i)).collect());

    // A check that the password works at all (so 401s are not mistaken for load).
    let res = ctx
        .http
        .post(ctx.api("/api/auth/login"))
        .json(&json!({"email": names[0], "password": password}))
        .send()
        .await?;
    if res.status() != 200 {
        bail!(
            "login as a bench user answered {}: {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
    }

    eprintln!("login-storm: baseline messaging without the storm");
    let (base, base_chats, _) = latency_run(ctx, &a.latency, "sa").await?;

    eprintln!(
        "login-storm: messaging with {} logins in flight",
        a.in_flight
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.in_flight)
        .timeout(Duration::from_secs_f64(a.login_timeout))
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(StormCounts::default());
    let mut tasks = Vec::new();
    let url = ctx.api("/api/auth/login");
    let other_example = Arc::new(std::sync::Mutex::new(None::<String>));
    for i in 0..a.in_flight {
        let (http, stop, c, url, names, password, other_example) = (
            http.clone(),
            stop.clone(),
            c.clone(),
            url.clone(),
            names.clone(),
            password.clone(),
            other_example.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut fast = hist();
            let mut ok_lat = hist();
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let name = &names[n % names.len()];
                n += 7;
                let t = Instant::now();
                let res = http
                    .post(&url)
                    .json(&json!({"email": name, "password": password}))
                    .send()
                    .await;
                let us = (t.elapsed().as_micros() as u64).max(1);
                match res {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let body = res.bytes().await;
                        match status {
                            200 => {
                                c.ok.fetch_add(1, Ordering::Relaxed);
                                ok_lat.saturating_record(us);
                            }
                            429 => {
                                c.r429.fetch_add(1, Ordering::Relaxed);
                                fast.saturating_record(us);
                            }
                            503 => {
                                c.r503.fetch_add(1, Ordering::Relaxed);
                                fast.saturating_record(us);
                            }
                            _ => {
                                c.other.fetch_add(1, Ordering::Relaxed);
                                let mut ex =
                                    other_example.lock().unwrap_or_else(|e| e.into_inner());
                                if ex.is_none() {
                                    *ex = Some(format!(
                                        "{status} {}",
                                        body.map(|b| String::from_utf8_lossy(&b).into_owned())
                                            .unwrap_or_default()
                                    ));
                                }
                            }
                        }
                        if status == 429 || status == 503 {
                            // A well-behaved client would back off; the storm does not,
                            // but a tiny pause keeps it from becoming a pure CPU spin.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    Err(e) if e.is_timeout() => {
                        c.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (fast, ok_lat)
        }));
    }
    let storm_start = Instant::now();
    let storm_run = latency_run(ctx, &a.latency, "sb").await;
    stop.store(true, Ordering::SeqCst);
    let storm_secs = storm_start.elapsed().as_secs_f64();
    let mut fast = hist();
    let mut ok_lat = hist();
    for t in tasks {
        let (f, o) = t.await.map_err(|e| anyhow!("storm task: {e}"))?;
        fast.add(&f).ok();
        ok_lat.add(&o).ok();
    }
    let (storm, storm_chats, _) = storm_run?;

    let b99 = ms(&base.latency, 0.99);
    let s99 = ms(&storm.latency, 0.99);
    r.fig("baseline messaging p99", b99, "ms");
    r.fig("storm messaging p99", s99, "ms");
    r.fig("storm messaging p99.9", ms(&storm.latency, 0.999), "ms");
    r.fig("storm messaging max", max_ms(&storm.latency), "ms");
    let ratio = if b99 > 0.0 { s99 / b99 } else { 0.0 };
    r.fig("p99 ratio storm/baseline", ratio, "x");
    let l = |x: &AtomicU64| x.load(Ordering::SeqCst);
    r.fig("logins 200", l(&c.ok) as f64, "logins");
    r.fig("logins 429", l(&c.r429) as f64, "logins");
    r.fig("logins 503", l(&c.r503) as f64, "logins");
    r.fig("logins other status", l(&c.other) as f64, "logins");
    r.fig("login timeouts", l(&c.timeouts) as f64, "logins");
    r.fig("login connection errors", l(&c.errors) as f64, "logins");
    r.fig(
        "logins 200 per second",
        l(&c.ok) as f64 / storm_secs,
        "logins/s",
    );
    r.fig("login 200 p50", ms(&ok_lat, 0.5), "ms");
    r.fig("login 200 p99", ms(&ok_lat, 0.99), "ms");
    r.fig("login 429/503 p50", ms(&fast, 0.5), "ms");
    r.fig("login 429/503 p99", ms(&fast, 0.99), "ms");
    counts(&mut r, &base, "baseline ");
    counts(&mut r, &storm, "storm ");
    r.target("login-storm messaging p99 / baseline p99", ratio, "<=", 2.0);
    r.target("login-storm timeouts", l(&c.timeouts) as f64, "==", 0.0);
    if l(&c.timeouts) > 0 {
        r.problem(format!(
            "{} logins timed out (> {} s)",
            l(&c.timeouts),
            a.login_timeout
        ));
    }
    if l(&c.other) > 0 {
        let ex = other_example
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        r.problem(format!(
            "{} logins answered neither 200, 429 nor 503, e.g. {}",
            l(&c.other),
            ex.unwrap_or_default()
        ));
    }
    if l(&c.errors) > 0 {
        r.problem(format!(
            "{} logins failed at the connection level",
            l(&c.errors)
        ));
    }
    if l(&c.ok) == 0 {
        r.problem("no login succeeded during the storm");
    }
    check_outcome(ctx, &mut r, &base, &base_chats, "baseline ").await?;
    check_outcome(ctx, &mut r, &storm, &storm_chats, "storm ").await?;
    Ok(r)
}

// ------------------------------------------------------------------ history

#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Messages in the one chat (inserted in bulk).
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: usize,
    /// Rows per multi-row INSERT.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Requests per page position (newest, middle, oldest).
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
    /// Chats of the user whose chat list is measured.
    #[arg(long, default_value_t = 1000)]
    pub chats: usize,
    /// Chat list requests.
    #[arg(long, default_value_t = 100)]
    pub list_requests: usize,
}

async fn timed_get(ctx: &Ctx, token: &str, path: &str) -> Result<(u64, Value)> {
    let t = Instant::now();
    let res = ctx
        .http
        .get(ctx.api(path))
        .bearer_auth(token)
        .send()
        .await?;
    let status = res.status();
    let body = res.bytes().await?;
    let us = (t.elapsed().as_micros() as u64).max(1);
    if !status.is_success() {
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok((us, serde_json::from_slice(&body)?))
}

pub async fn history(ctx: &Ctx, a: &HistoryArgs) -> Result<Report> {
    let mut r = Report::new(
        "history",
        json!({"messages": a.messages, "batch": a.batch, "requests": a.requests,
               "chats": a.chats, "listRequests": a.list_requests}),
    );
    if a.messages < 150 {
        bail!("history needs at least 150 messages");
    }
    let ids = insert_users(ctx, "h", 2, &dummy_hash()).await?;
    let chat = insert_direct_chats(ctx, &[(ids[0], ids[1])]).await?[0];
    let mut conn = ctx.conn().await?;
    let pb = indicatif::ProgressBar::new(a.messages as u64);
    pb.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    pb.set_message("inserting history");
    let t = Instant::now();
    for start in (0..a.messages).step_by(a.batch.max(1)) {
        let end = (start + a.batch.max(1)).min(a.messages);
        let mut sql = String::with_capacity((end - start) * 64 + 100);
        sql.push_str("INSERT INTO messages (chat_id, sender_id, client_id, kind, content) VALUES ");
        for i in start..end {
            if i > start {
                sql.push(',');
            }
            let sender = ids[i % 2];
            sql.push_str(&format!(
                "({chat},{sender},'h{}-{i}','text','history message {i}')",
                ctx.run_id
            ));
        }
        conn.query_drop(sql).await.context("insert history")?;
        pb.set_position(end as u64);
    }
    pb.finish_and_clear();
    let insert_secs = t.elapsed().as_secs_f64();
    r.fig(
        "bulk insert rate",
        a.messages as f64 / insert_secs,
        "rows/s",
    );
    let (min_id, max_id, count): (u64, u64, u64) = conn
        .exec_first(
            "SELECT MIN(id), MAX(id), COUNT(*) FROM messages WHERE chat_id = ?",
            (chat,),
        )
        .await?
        .ok_or_else(|| anyhow!("no history rows"))?;
    if count != a.messages as u64 {
        r.problem(format!("{count} history rows, {} inserted", a.messages));
    }
    let middle: u64 = conn
        .exec_first(
            "SELECT id FROM messages WHERE chat_id = ? ORDER BY id LIMIT 1 OFFSET ?",
            (chat, a.messages as u64 / 2),
        )
        .await?
        .ok_or_else(|| anyhow!("no middle row"))?;
    let oldest_before: u64 = conn
        .exec_first(
            "SELECT id FROM messages WHERE chat_id = ? ORDER BY id LIMIT 1 OFFSET 50",
            (chat,),
        )
        .await?
        .ok_or_else(|| anyhow!("no 51st row"))?;
    drop(conn);

    let token = ctx.token(ids[0])?;
    let positions: [(&str, Option<u64>); 3] = [
        ("newest", None),
        ("middle", Some(middle)),
        ("oldest", Some(oldest_before)),
    ];
    let paths: Vec<String> = positions
        .iter()
        .map(|(_, before)| match before {
            Some(b) => format!("/api/messages?chatId={chat}&limit=50&before={b}"),
            None => format!("/api/messages?chatId={chat}&limit=50"),
        })
        .collect();
    // Round robin over the three positions, so whatever else the machine does
    // meanwhile (MariaDB still flushing the bulk insert) weighs on all of them alike.
    let mut hists: Vec<_> = positions.iter().map(|_| hist()).collect();
    for i in 0..a.requests + 5 {
        for (k, (name, before)) in positions.iter().enumerate() {
            let (us, body) = timed_get(ctx, &token, &paths[k]).await?;
            if i < 5 {
                // Warm-up requests; check the page once.
                if i == 0 {
                    check_page(&mut r, name, &body, *before, min_id, max_id);
                }
                continue;
            }
            hists[k].saturating_record(us);
        }
    }
    let mut p99s = Vec::new();
    for ((name, _), h) in positions.iter().zip(&hists) {
        r.fig(&format!("{name} page p50"), ms(h, 0.5), "ms");
        r.fig(&format!("{name} page p99"), ms(h, 0.99), "ms");
        p99s.push(ms(h, 0.99));
    }
    r.target("history newest page p99 (ms)", p99s[0], "<=", 10.0);
    r.target("history oldest page p99 (ms)", p99s[2], "<=", 10.0);
    r.target(
        "history oldest p99 / newest p99",
        if p99s[0] > 0.0 {
            p99s[2] / p99s[0]
        } else {
            0.0
        },
        "<=",
        1.5,
    );

    // A user with many chats, each with one message.
    let users = insert_users(ctx, "c", a.chats + 1, &dummy_hash()).await?;
    let lister = users[0];
    let pairs: Vec<(u64, u64)> = users[1..].iter().map(|&u| (lister, u)).collect();
    let chats = insert_direct_chats(ctx, &pairs).await?;
    let mut conn = ctx.conn().await?;
    for (ci, chunk) in chats.chunks(2000).enumerate() {
        let rows: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let i = ci * 2000 + j;
                format!(
                    "({c},{},'c{}-{i}','text','hello {i}')",
                    users[1 + i],
                    ctx.run_id
                )
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO messages (chat_id, sender_id, client_id, kind, content) VALUES {}",
            rows.join(",")
        ))
        .await?;
    }
    drop(conn);
    let token = ctx.token(lister)?;
    let mut h = hist();
    for i in 0..a.list_requests + 3 {
        let (us, body) = timed_get(ctx, &token, "/api/chats?limit=200").await?;
        if i == 0 {
            let n = body["chats"].as_array().map(|v| v.len()).unwrap_or(0);
            if n != a.chats {
                r.problem(format!("chat list has {n} chats, {} expected", a.chats));
            }
        }
        if i >= 3 {
            h.saturating_record(us);
        }
    }
    r.fig(
        &format!("chat list ({} chats) p50", a.chats),
        ms(&h, 0.5),
        "ms",
    );
    r.fig(
        &format!("chat list ({} chats) p99", a.chats),
        ms(&h, 0.99),
        "ms",
    );
    Ok(r)
}

fn check_page(
    r: &mut Report,
    name: &str,
    body: &Value,
    before: Option<u64>,
    min_id: u64,
    max_id: u64,
) {
    let Some(msgs) = body["messages"].as_array() else {
        r.problem(format!("{name} page: no messages array: {body}"));
        return;
    };
    let ids: Vec<u64> = msgs.iter().filter_map(|m| m["id"].as_u64()).collect();
    if ids.len() != 50 {
        r.problem(format!("{name} page: {} messages, 50 expected", ids.len()));
    }
    if ids.windows(2).any(|w| w[0] <= w[1]) {
        r.problem(format!("{name} page: ids not strictly descending"));
    }
    if let Some(b) = before {
        if ids.iter().any(|&i| i >= b) {
            r.problem(format!("{name} page: ids not below before={b}"));
        }
    } else if ids.first() != Some(&max_id) {
        r.problem(format!(
            "{name} page: first id {:?}, newest is {max_id}",
            ids.first()
        ));
    }
    if name == "oldest" && ids.last() != Some(&min_id) {
        r.problem(format!(
            "oldest page: last id {:?}, oldest is {min_id}",
            ids.last()
        ));
    }
}

#[allow(dead_code)]
fn _unused(_: Hist) {}
