//! `idle`: N authenticated idle connections, spread over source addresses
//! 127.0.0.2, 127.0.0.3, … and over worker processes (this binary re-executed as
//! `idle-worker`), so neither the client's open-files limit nor ephemeral ports
//! bound N. Measures the server's RSS and CPU per connection and the set-up rate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{
    cpu_secs, dummy_hash, insert_users, mint_token, rss_bytes, ws_connect, Ctx, Report,
};

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 19_000)]
    pub connections: usize,
    /// Connections per worker process.
    #[arg(long, default_value_t = 4000)]
    pub per_worker: usize,
    /// Connections per local source address (127.0.0.2, 127.0.0.3, …).
    #[arg(long, default_value_t = 10_000)]
    pub per_address: usize,
    /// Connection attempts in flight per worker.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Seconds to hold the connections before measuring RSS again.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
}

#[derive(Serialize, Deserialize)]
struct WorkerConfig {
    server: SocketAddr,
    ws_base: String,
    secret: String,
    user_ids: Vec<u64>,
    /// The sign-in session of each of `user_ids`, in the same order.
    sids: Vec<u64>,
    /// Global index of this worker's first connection (for source addresses).
    first_index: usize,
    per_address: usize,
    concurrency: usize,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct WorkerReport {
    connected: u64,
    failed: u64,
    first_error: Option<String>,
    secs: f64,
    /// Connections the server closed while idle (reported at exit).
    dropped: u64,
}

fn source_for(index: usize, per_address: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    IpAddr::V4(Ipv4Addr::from(base + (index / per_address.max(1)) as u32))
}

pub async fn idle(ctx: &Ctx, a: &IdleArgs) -> Result<Report> {
    let mut r = Report::new(
        "idle",
        json!({"connections": a.connections, "perWorker": a.per_worker,
               "perAddress": a.per_address, "concurrency": a.concurrency}),
    );
    let pid = ctx.server_pid();
    if pid.is_none() {
        r.problem("server pid not found (pass --server-pid): RSS and CPU not measured");
    }
    let ids = insert_users(ctx, "i", a.connections, &dummy_hash()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = pid.and_then(rss_bytes);
    let cpu0 = pid.and_then(cpu_secs);

    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    let t = Instant::now();
    for (w, chunk) in ids.chunks(a.per_worker.max(1)).enumerate() {
        let mut child = tokio::process::Command::new(&exe)
            .arg("idle-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn idle-worker")?;
        let cfg = WorkerConfig {
            server: ctx.server,
            ws_base: ctx.ws_base.clone(),
            secret: ctx.common.jwt_secret.clone(),
            user_ids: chunk.to_vec(),
            sids: chunk
                .iter()
                .map(|&u| ctx.sid(u))
                .collect::<Result<Vec<u64>>>()?,
            first_index: w * a.per_worker.max(1),
            per_address: a.per_address,
            concurrency: a.concurrency,
        };
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        stdin
            .write_all(format!("{}\n", serde_json::to_string(&cfg)?).as_bytes())
            .await?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        workers.push((child, stdin, stdout.lines()));
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    pb.set_message(format!(
        "opening {} connections in {} workers",
        a.connections,
        workers.len()
    ));
    let mut connected = 0;
    let mut failed = 0;
    let mut first_error = None;
    for (_, _, lines) in workers.iter_mut() {
        let line = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
            .await
            .map_err(|_| anyhow!("idle worker did not report within 300 s"))??
            .ok_or_else(|| anyhow!("idle worker ended without a report"))?;
        let rep: WorkerReport = serde_json::from_str(&line).with_context(|| line.clone())?;
        connected += rep.connected;
        failed += rep.failed;
        if first_error.is_none() {
            first_error = rep.first_error;
        }
        pb.tick();
    }
    let setup_secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let cpu1 = pid.and_then(cpu_secs);
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let rss1 = pid.and_then(rss_bytes);

    // Release the workers and collect what the server dropped meanwhile.
    let mut dropped = 0;
    for (mut child, mut stdin, mut lines) in workers {
        let _ = stdin.write_all(b"exit\n").await;
        drop(stdin);
        if let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await
        {
            if let Ok(rep) = serde_json::from_str::<WorkerReport>(&line) {
                dropped += rep.dropped;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }

    let n = connected.max(1) as f64;
    r.fig("connections open", connected as f64, "conns");
    r.fig("connections failed", failed as f64, "conns");
    r.fig("set-up rate", connected as f64 / setup_secs, "conns/s");
    r.fig("set-up time", setup_secs, "s");
    if let (Some(a0), Some(a1)) = (rss0, rss1) {
        let per = (a1 as f64 - a0 as f64) / n;
        r.fig("server RSS before", a0 as f64 / 1048576.0, "MiB");
        r.fig("server RSS after", a1 as f64 / 1048576.0, "MiB");
        r.fig("server RSS per connection", per / 1024.0, "KiB");
        r.target(
            &format!("idle {} conns RSS per conn (KiB)", a.connections),
            per / 1024.0,
            "<=",
            8.0,
        );
    }
    if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
        r.fig(
            "server CPU per connection set-up",
            (c1 - c0) * 1000.0 / n,
            "ms",
        );
    }
    r.target(
        "idle set-up rate (conns/s)",
        connected as f64 / setup_secs,
        ">=",
        5000.0,
    );
    r.fig("closed by server while idle", dropped as f64, "conns");
    if failed > 0 {
        r.problem(format!(
            "{failed} of {} connections failed, first: {}",
            a.connections,
            first_error.unwrap_or_default()
        ));
    }
    if dropped > 0 {
        r.problem(format!(
            "{dropped} idle connections were closed by the server"
        ));
    }
    Ok(r)
}

/// The hidden `idle-worker`: reads its config line on stdin, opens its connections,
/// reports one JSON line, holds them until stdin says `exit`, reports again, exits.
pub async fn worker() -> Result<()> {
    crate::common::raise_nofile();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin
        .next_line()
        .await?
        .ok_or_else(|| anyhow!("no config on stdin"))?;
    let cfg: WorkerConfig = serde_json::from_str(&line)?;
    let t = Instant::now();
    let dropped = Arc::new(AtomicU64::new(0));
    let cfg = Arc::new(cfg);
    let results = crate::common::bounded(cfg.user_ids.len(), cfg.concurrency, |i| {
        let cfg = cfg.clone();
        let dropped = dropped.clone();
        async move {
            let token = mint_token(&cfg.secret, cfg.user_ids[i], cfg.sids[i])?;
            let src = source_for(cfg.first_index + i, cfg.per_address);
            let mut ws = tokio::time::timeout(
                Duration::from_secs(60),
                ws_connect(cfg.server, &cfg.ws_base, &token, Some(src)),
            )
            .await
            .map_err(|_| anyhow!("connect timed out"))??;
            // Authenticated and registered: wait for `ready`.
            loop {
                match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.contains("\"ready\"") => break,
                    Ok(Some(Ok(Message::Close(c)))) => bail!("closed before ready: {c:?}"),
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => bail!("from {src}: {e}"),
                    Ok(None) => bail!("ended before ready"),
                    Err(_) => bail!("no ready within 60 s"),
                }
            }
            // Read from now on (answering the server's pings), however long the rest
            // of the set-up takes; count server closes.
            let dropped = dropped.clone();
            let reader = tokio::spawn(async move {
                let mut ws = ws;
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        _ => {}
                    }
                }
            });
            Ok::<_, anyhow::Error>(reader)
        }
    })
    .await;
    let mut rep = WorkerReport {
        secs: t.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for res in results {
        match res {
            Ok(reader) => {
                rep.connected += 1;
                tasks.push(reader);
            }
            Err(e) => {
                rep.failed += 1;
                if rep.first_error.is_none() {
                    rep.first_error = Some(e.to_string());
                }
            }
        }
    }
    println!("{}", serde_json::to_string(&rep)?);
    // Hold until the parent says so (or goes away).
    while let Ok(Some(l)) = stdin.next_line().await {
        if l.trim() == "exit" {
            break;
        }
    }
    rep.dropped = dropped.load(Ordering::SeqCst);
    println!("{}", serde_json::to_string(&rep)?);
    for t in &tasks {
        t.abort();
    }
    Ok(())
}
