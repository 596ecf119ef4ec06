//! `reconnect-storm`: N clients connected and `ready`; the server is stopped with
//! SIGTERM and started again; every client reconnects as the web client does
//! (`static/js/socket.js`: up to `--jitter` of random delay, then capped exponential
//! backoff with jitter, a 503's `Retry-After` honoured) and syncs from its cursor
//! (`static/js/app.js` `onReady`). Some clients are owed messages stored while the
//! server was down: half find them undelivered (the catch-up pushes them before
//! `ready`), half find them already delivered to another device of theirs (only
//! their `sync` brings them). Every owed message must arrive once, in order.
//!
//! The clients live in worker processes (this binary re-executed as
//! `storm-worker`), spread over source addresses 127.0.0.2, … as in `idle`.
//!
//! Restarting the server: the bench signals the pid it was given (SIGTERM), waits
//! for it to exit, then runs the server command `bench/run.sh` wrote for it
//! (`PARLEY_BENCH_SERVER_CMD`: the same binary, environment and log as the first
//! start) and records the new pid in `PARLEY_BENCH_SERVER_PID_FILE`, where run.sh's
//! clean-up and the next scenario find it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::check::{make_content, parse_content, AckBook, Inbox, Verdict};
use crate::common::{
    cpu_secs, dummy_hash, hist, insert_direct_chats, insert_users, max_ms, mint_token, ms,
    rss_bytes, Ctx, Report, Ws,
};
use crate::idle::source_for;

/// The web client's backoff (`static/js/socket.js`).
const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_CAP_MS: f64 = 10_000.0;

#[derive(Args, Debug, Clone)]
pub struct StormArgs {
    /// Clients connected when the server stops.
    #[arg(long, default_value_t = 19_000)]
    pub clients: usize,
    /// Each client's first reconnect waits a random delay up to this many seconds.
    #[arg(long, default_value_t = 1.0)]
    pub jitter: f64,
    /// Clients owed messages stored while the server was down.
    #[arg(long, default_value_t = 2_000)]
    pub owed: usize,
    /// Messages each of those clients is owed.
    #[arg(long, default_value_t = 5)]
    pub owed_messages: usize,
    /// Clients per worker process.
    #[arg(long, default_value_t = 4000)]
    pub per_worker: usize,
    /// Clients per local source address (127.0.0.2, 127.0.0.3, …).
    #[arg(long, default_value_t = 10_000)]
    pub per_address: usize,
    /// Initial connection attempts in flight per worker (before the storm).
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Give up on clients not back and synced this many seconds after the close.
    #[arg(long, default_value_t = 60.0)]
    pub give_up: f64,
    /// The command that starts the server again (default: $PARLEY_BENCH_SERVER_CMD).
    #[arg(long)]
    pub server_cmd: Option<PathBuf>,
    /// Where the new server's pid is written (default: $PARLEY_BENCH_SERVER_PID_FILE).
    #[arg(long)]
    pub server_pid_file: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct WorkerConfig {
    server: SocketAddr,
    ws_base: String,
    secret: String,
    user_ids: Vec<u64>,
    sids: Vec<u64>,
    first_index: usize,
    per_address: usize,
    concurrency: usize,
    jitter: f64,
    give_up: f64,
}

/// What one client went through, from the close to synced.
#[derive(Serialize, Deserialize, Debug, Default, Clone)]
struct ClientLog {
    user: u64,
    /// Unix ns of the close (the server's close frame or the end of the stream).
    close_ns: u64,
    /// Unix ns of `ready` on the new connection (0: never).
    ready_ns: u64,
    /// Unix ns of the last `sync` ack (0: never).
    synced_ns: u64,
    /// Connection attempts after the close.
    attempts: u32,
    /// TCP refused or reset (the server not listening yet): retried.
    refused_tcp: u32,
    /// HTTP 503 answers (with their Retry-After honoured): retried.
    http_503: u32,
    /// Other 5xx answers: retried, but a server fault.
    http_5xx: u32,
    /// 4xx answers: a client cannot retry those.
    http_4xx: u32,
    /// Connections lost after the upgrade, before synced: retried.
    dropped: u32,
    /// `sync` answered `unavailable` or `busy`: retried after a backoff.
    sync_retries: u32,
    /// The close code the server sent (1001 on a restart).
    close_code: u16,
    /// (sender, seq) of every `message:received`, in arrival order.
    got: Vec<(u64, u64)>,
    /// `message:received` frames whose content was not the bench's.
    strangers: u32,
    error: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct WorkerReport {
    connected: u64,
    failed: u64,
    first_error: Option<String>,
    clients: Vec<ClientLog>,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn env_path(v: &Option<PathBuf>, name: &str) -> Option<PathBuf> {
    v.clone()
        .or_else(|| std::env::var_os(name).map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
}

/// Whether `pid` has exited (gone, or a zombie its parent has not reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Connections the server holds to the run's database now (from a connection that
/// uses no database, so it does not count itself).
async fn db_connections(conn: &mut mysql_async::Conn, db: &str) -> Result<u64> {
    let n: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE db = ?",
            (db,),
        )
        .await?;
    Ok(n.unwrap_or(0))
}

pub async fn storm(ctx: &Ctx, a: &StormArgs) -> Result<Report> {
    let mut r = Report::new(
        "reconnect-storm",
        json!({"clients": a.clients, "jitter": a.jitter, "owed": a.owed,
               "owedMessages": a.owed_messages, "perWorker": a.per_worker,
               "perAddress": a.per_address}),
    );
    let cmd = env_path(&a.server_cmd, "PARLEY_BENCH_SERVER_CMD")
        .ok_or_else(|| anyhow!("no server command to restart with (--server-cmd or PARLEY_BENCH_SERVER_CMD; bench/run.sh sets it)"))?;
    let pid_file = env_path(&a.server_pid_file, "PARLEY_BENCH_SERVER_PID_FILE");
    let old_pid = ctx
        .server_pid()
        .ok_or_else(|| anyhow!("server pid not found (pass --server-pid)"))?;
    let owed = a.owed.min(a.clients);

    // Clients in pairs, each pair a direct chat (contacts and presence as real
    // users have them); the owed clients each get a sender who never connects.
    let ids = insert_users(ctx, "r", a.clients, &dummy_hash()).await?;
    let pairs: Vec<(u64, u64)> = ids.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    insert_direct_chats(ctx, &pairs).await?;
    let senders = insert_users(ctx, "q", owed, &dummy_hash()).await?;
    let owed_pairs: Vec<(u64, u64)> = (0..owed).map(|i| (senders[i], ids[i])).collect();
    let owed_chats = insert_direct_chats(ctx, &owed_pairs).await?;

    // Workers connect everyone.
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for (w, chunk) in ids.chunks(a.per_worker.max(1)).enumerate() {
        let mut child = tokio::process::Command::new(&exe)
            .arg("storm-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn storm-worker")?;
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
            jitter: a.jitter,
            give_up: a.give_up,
        };
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        stdin
            .write_all(format!("{}\n", serde_json::to_string(&cfg)?).as_bytes())
            .await?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        workers.push((child, stdin, stdout.lines()));
    }
    let mut connected = 0;
    let mut failed = 0;
    let mut first_error = None;
    for (_, _, lines) in workers.iter_mut() {
        let line = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
            .await
            .map_err(|_| anyhow!("storm worker did not connect within 300 s"))??
            .ok_or_else(|| anyhow!("storm worker ended without a report"))?;
        let rep: WorkerReport = serde_json::from_str(&line).with_context(|| line.clone())?;
        connected += rep.connected;
        failed += rep.failed;
        if first_error.is_none() {
            first_error = rep.first_error;
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} clients did not connect before the storm, first: {}",
            a.clients,
            first_error.unwrap_or_default()
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_bytes(old_pid);

    // The database poller: its own connection, with no database selected.
    let (server_url, db_name) = ctx
        .common
        .database_url
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("database URL without a name"))?;
    let db_name = db_name.split('?').next().unwrap_or_default().to_string();
    let mut probe = mysql_async::Conn::from_url(format!("{server_url}/")).await?;
    let db_before = db_connections(&mut probe, &db_name).await?;

    // Stop.
    let t_kill = unix_ns();
    let kill_at = Instant::now();
    // SAFETY: kill(2) with a pid and a signal number.
    if unsafe { libc::kill(old_pid as libc::pid_t, libc::SIGTERM) } != 0 {
        bail!("could not signal the server (pid {old_pid})");
    }
    // While it drains, the messages of the owed clients are stored (as another node
    // would have stored them): no live delivery reaches anyone.
    let store = async {
        let ids = store_owed(ctx, &owed_pairs, &owed_chats, a.owed_messages).await;
        (ids, kill_at.elapsed())
    };
    let exit = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !exited(old_pid) {
            if Instant::now() > deadline {
                bail!("the server did not exit within 30 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(kill_at.elapsed())
    };
    let ((owed_ids, stored_at), exit_after) = tokio::join!(store, exit);
    let (owed_ids, exit_after) = (owed_ids?, exit_after?);
    // With the server gone, what is left on the database is the bench's own pool.
    let db_own = db_connections(&mut probe, &db_name).await.unwrap_or(0);

    // Start again.
    let mut command = std::process::Command::new(&cmd);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", cmd.display()))?;
    let new_pid = child.id();
    // Reaped by a thread of ours while we run; by init once we are gone.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    if let Some(f) = &pid_file {
        std::fs::write(f, format!("{new_pid}\n"))
            .with_context(|| format!("writing {}", f.display()))?;
    }
    let started_after = kill_at.elapsed();
    let mut listening_after = None;
    let mut peak_rss = 0u64;
    let mut peak_db = 0u64;
    let mut last_poll = Instant::now() - Duration::from_secs(1);
    let cpu0 = cpu_secs(new_pid).unwrap_or(0.0);

    // Poll while the workers run their clients: listening, RSS, DB connections.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<WorkerReport>>(workers.len());
    let mut handles = Vec::new();
    for (child, mut stdin, mut lines) in workers {
        let tx = tx.clone();
        let give_up = a.give_up;
        handles.push(tokio::spawn(async move {
            let rep = async {
                let line = tokio::time::timeout(
                    Duration::from_secs_f64(give_up + 60.0),
                    lines.next_line(),
                )
                .await
                .map_err(|_| anyhow!("storm worker did not report"))??
                .ok_or_else(|| anyhow!("storm worker ended without a report"))?;
                let rep: WorkerReport = serde_json::from_str(&line)?;
                Ok(rep)
            }
            .await;
            let _ = stdin.write_all(b"exit\n").await;
            drop(stdin);
            let mut child = child;
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            let _ = tx.send(rep).await;
        }));
    }
    drop(tx);
    let mut reports = Vec::new();
    let mut cpu1 = cpu0;
    loop {
        tokio::select! {
            rep = rx.recv() => match rep {
                Some(rep) => reports.push(rep?),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        if listening_after.is_none()
            && tokio::time::timeout(
                Duration::from_millis(50),
                tokio::net::TcpStream::connect(ctx.server),
            )
            .await
            .is_ok_and(|c| c.is_ok())
        {
            listening_after = Some(kill_at.elapsed());
        }
        if last_poll.elapsed() >= Duration::from_millis(100) {
            last_poll = Instant::now();
            if let Some(rss) = rss_bytes(new_pid) {
                peak_rss = peak_rss.max(rss);
            }
            if let Some(c) = cpu_secs(new_pid) {
                cpu1 = c;
            }
            if let Ok(n) = db_connections(&mut probe, &db_name).await {
                peak_db = peak_db.max(n);
            }
        }
    }
    for h in handles {
        let _ = h.await;
    }
    if let Some(c) = cpu_secs(new_pid) {
        cpu1 = c;
    }
    let _ = probe.disconnect().await;

    // Figures.
    let clients: Vec<ClientLog> = reports.into_iter().flat_map(|w| w.clients).collect();
    let first_close = clients
        .iter()
        .filter(|c| c.close_ns > 0)
        .map(|c| c.close_ns)
        .min()
        .unwrap_or(t_kill);
    let back: Vec<&ClientLog> = clients.iter().filter(|c| c.synced_ns > 0).collect();
    let last_synced = back
        .iter()
        .map(|c| c.synced_ns)
        .max()
        .unwrap_or(first_close);
    let all_back = back.len() == a.clients;
    let span = (last_synced.saturating_sub(first_close)) as f64 / 1e9;
    let mut per_client = hist();
    let mut to_ready = hist();
    for c in &back {
        per_client.saturating_record((c.synced_ns.saturating_sub(c.close_ns) / 1000).max(1));
        to_ready.saturating_record((c.ready_ns.saturating_sub(c.close_ns) / 1000).max(1));
    }
    let sum = |f: fn(&ClientLog) -> u32| clients.iter().map(|c| f(c) as u64).sum::<u64>();
    let attempts = sum(|c| c.attempts);
    let refused_tcp = sum(|c| c.refused_tcp);
    let http_503 = sum(|c| c.http_503);
    let http_5xx = sum(|c| c.http_5xx);
    let http_4xx = sum(|c| c.http_4xx);
    let dropped = sum(|c| c.dropped);
    let sync_retries = sum(|c| c.sync_retries);
    let not_1001 = clients.iter().filter(|c| c.close_code != 1001).count();

    r.fig("clients", a.clients as f64, "clients");
    r.fig("connected before the storm", connected as f64, "clients");
    r.fig("back and synced", back.len() as f64, "clients");
    r.fig("first close → all synced", span, "s");
    r.fig(
        "SIGTERM → first close",
        first_close.saturating_sub(t_kill) as f64 / 1e6,
        "ms",
    );
    r.fig(
        "SIGTERM → old process exited",
        exit_after.as_secs_f64() * 1000.0,
        "ms",
    );
    r.fig(
        "SIGTERM → new process started",
        started_after.as_secs_f64() * 1000.0,
        "ms",
    );
    if let Some(l) = listening_after {
        r.fig(
            "restart: SIGTERM → listening",
            l.as_secs_f64() * 1000.0,
            "ms",
        );
        r.fig(
            "start → listening",
            (l.saturating_sub(started_after)).as_secs_f64() * 1000.0,
            "ms",
        );
    }
    r.fig(
        "owed messages stored (after SIGTERM)",
        stored_at.as_secs_f64() * 1000.0,
        "ms",
    );
    r.fig("per client close → ready p50", ms(&to_ready, 0.5), "ms");
    r.fig("per client close → synced p50", ms(&per_client, 0.5), "ms");
    r.fig("per client close → synced p99", ms(&per_client, 0.99), "ms");
    r.fig("per client close → synced max", max_ms(&per_client), "ms");
    r.fig("connection attempts", attempts as f64, "attempts");
    r.fig(
        "refused: TCP (not listening yet; retried)",
        refused_tcp as f64,
        "attempts",
    );
    r.fig(
        "refused: HTTP 503 (Retry-After; retried)",
        http_503 as f64,
        "attempts",
    );
    r.fig("refused: other 5xx (retried)", http_5xx as f64, "attempts");
    r.fig("refused: 4xx (cannot retry)", http_4xx as f64, "attempts");
    r.fig("dropped after upgrade (retried)", dropped as f64, "conns");
    r.fig(
        "sync answered unavailable/busy (retried)",
        sync_retries as f64,
        "syncs",
    );
    if let Some(b) = rss_before {
        r.fig("server RSS before (old)", b as f64 / 1048576.0, "MiB");
    }
    r.fig("server peak RSS (new)", peak_rss as f64 / 1048576.0, "MiB");
    r.fig(
        "server CPU during the storm (new)",
        (cpu1 - cpu0) * 1000.0 / back.len().max(1) as f64,
        "ms/client",
    );
    r.fig(
        "DB connections before (server)",
        db_before.saturating_sub(db_own) as f64,
        "conns",
    );
    r.fig(
        "DB connections peak (server, new)",
        peak_db.saturating_sub(db_own) as f64,
        "conns",
    );
    r.target(
        &format!(
            "reconnect-storm {} clients: first close → all synced (s)",
            a.clients
        ),
        // Not everyone back: the give-up time, which misses the target (JSON has no
        // infinity).
        if all_back { span } else { span.max(a.give_up) },
        "<=",
        5.0,
    );
    r.target(
        "reconnect-storm refusals a client cannot retry",
        http_4xx as f64,
        "==",
        0.0,
    );
    r.target(
        "reconnect-storm server peak RSS (MiB)",
        peak_rss as f64 / 1048576.0,
        "<=",
        150.0,
    );

    // Correctness: every owed message once, in order; nothing else.
    let mut books: HashMap<u64, AckBook> = HashMap::new();
    for (i, &(sender, _)) in owed_pairs.iter().enumerate() {
        let mut book = AckBook::default();
        for seq in 0..owed_ids[i].len() as u64 {
            book.on_send();
            book.on_ack(seq);
        }
        books.insert(sender, book);
    }
    let owed_of: HashMap<u64, u64> = owed_pairs.iter().map(|&(s, u)| (u, s)).collect();
    let mut inboxes = Vec::with_capacity(clients.len());
    for c in &clients {
        let mut inbox = Inbox::default();
        if let Some(&s) = owed_of.get(&c.user) {
            inbox.expect(s);
        }
        for &(sender, seq) in &c.got {
            inbox.on_receive(sender, seq);
        }
        inbox.strangers += c.strangers as u64;
        inboxes.push(inbox);
    }
    let seen: std::collections::HashSet<u64> = clients.iter().map(|c| c.user).collect();
    for (&u, &s) in &owed_of {
        if !seen.contains(&u) {
            let mut inbox = Inbox::default();
            inbox.expect(s);
            inboxes.push(inbox);
        }
    }
    let v = Verdict::compute(&books, &inboxes);
    r.fig("owed messages", v.expected_deliveries as f64, "msgs");
    r.fig("owed messages received", v.delivered as f64, "msgs");
    for p in v.problems() {
        r.problem(p);
    }
    if !all_back {
        let first = clients.iter().find_map(|c| c.error.clone());
        r.problem(format!(
            "{} of {} clients not back and synced within {} s, first error: {}",
            a.clients - back.len(),
            a.clients,
            a.give_up,
            first.unwrap_or_default()
        ));
    }
    if http_4xx > 0 {
        r.problem(format!("{http_4xx} reconnects refused with a 4xx"));
    }
    if not_1001 > 0 {
        r.problem(format!("{not_1001} clients were not closed with 1001"));
    }
    if listening_after.is_none() {
        r.problem("the restarted server never listened");
    }
    Ok(r)
}

/// Stores the owed messages (oldest first per chat) and, for every second owed
/// client, marks them delivered — to another device of theirs — so only `sync`
/// brings them. Returns each owed client's message ids in order.
async fn store_owed(
    ctx: &Ctx,
    owed: &[(u64, u64)],
    chats: &[u64],
    per: usize,
) -> Result<Vec<Vec<u64>>> {
    let mut conn = ctx.conn().await?;
    let client = format!("storm-{}", ctx.run_id);
    for start in (0..owed.len()).step_by(1000) {
        let end = (start + 1000).min(owed.len());
        let mut sql = String::from(
            "INSERT INTO messages (chat_id, sender_id, client_id, kind, content) VALUES ",
        );
        let mut first = true;
        // Interleaved across chats, as real traffic is; in order within each.
        for seq in 0..per {
            for i in start..end {
                if !first {
                    sql.push(',');
                }
                first = false;
                sql.push_str(&format!(
                    "({},{},'{client}-{i}-{seq}','text','{}')",
                    chats[i],
                    owed[i].0,
                    make_content(seq as u64, 0, 0)
                ));
            }
        }
        if !first {
            conn.query_drop(sql).await.context("insert owed messages")?;
        }
    }
    let mut ids = vec![Vec::new(); owed.len()];
    let index: HashMap<u64, usize> = chats.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    for chunk in chats.chunks(1000) {
        let list: Vec<String> = chunk.iter().map(|c| c.to_string()).collect();
        let rows: Vec<(u64, u64)> = conn
            .query(format!(
                "SELECT chat_id, id FROM messages WHERE chat_id IN ({}) ORDER BY id",
                list.join(",")
            ))
            .await?;
        for (chat, id) in rows {
            if let Some(&i) = index.get(&chat) {
                ids[i].push(id);
            }
        }
    }
    let delivered: Vec<String> = (0..owed.len())
        .filter(|i| i % 2 == 1)
        .filter_map(|i| {
            let last = ids[i].last()?;
            Some(format!(
                "UPDATE chat_members SET delivered_up_to = {last} WHERE chat_id = {} AND user_id = {}",
                chats[i], owed[i].1
            ))
        })
        .collect();
    for chunk in delivered.chunks(500) {
        conn.query_drop(chunk.join(";"))
            .await
            .context("mark delivered")?;
    }
    Ok(ids)
}

/// Why a connection attempt failed, as a client decides what to do next.
enum Refusal {
    /// Nothing listening, reset: retry with backoff.
    Tcp,
    /// 503: retry, not before `Retry-After` seconds.
    Unavailable(Option<f64>),
    /// Another 5xx: retry with backoff.
    Server(u16),
    /// A 4xx: the client cannot retry.
    Client(u16),
    /// Anything else (timeouts, protocol): retry with backoff.
    Other(String),
}

async fn dial(cfg: &WorkerConfig, token: &str, index: usize) -> Result<Ws, Refusal> {
    let src = source_for(cfg.first_index + index, cfg.per_address);
    let attempt = async {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| Refusal::Other(e.to_string()))?;
        crate::common::bind_address_no_port(&socket);
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(|e| Refusal::Other(format!("bind {src}: {e}")))?;
        let stream = socket.connect(cfg.server).await.map_err(|_| Refusal::Tcp)?;
        let _ = stream.set_nodelay(true);
        let req = format!("{}?token={token}", cfg.ws_base)
            .into_client_request()
            .map_err(|e| Refusal::Other(e.to_string()))?;
        match tokio_tungstenite::client_async(req, stream).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(res)) => {
                let status = res.status().as_u16();
                if status == 503 {
                    let after = res
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok());
                    Err(Refusal::Unavailable(after))
                } else if status >= 500 {
                    Err(Refusal::Server(status))
                } else {
                    Err(Refusal::Client(status))
                }
            }
            Err(tungstenite::Error::Io(_)) | Err(tungstenite::Error::ConnectionClosed) => {
                Err(Refusal::Tcp)
            }
            Err(e) => Err(Refusal::Other(e.to_string())),
        }
    };
    match tokio::time::timeout(Duration::from_secs(20), attempt).await {
        Ok(r) => r,
        Err(_) => Err(Refusal::Other("connect timed out".into())),
    }
}

/// The frames a client reads: the event, the `ref`, and the data it needs.
#[derive(Deserialize)]
struct Frame<'a> {
    event: &'a str,
    #[serde(rename = "ref")]
    reference: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Msg {
    id: u64,
    sender_id: u64,
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncAck {
    last_id: Option<u64>,
    #[serde(default)]
    has_more: bool,
}

/// Reads one connection until `ready` and then through its syncs. Ok(true): synced;
/// Ok(false): the connection ended first (the client reconnects).
async fn ready_and_sync(
    ws: &mut Ws,
    log: &mut ClientLog,
    cursor: &mut u64,
    sync: bool,
) -> Result<bool> {
    let mut ready = false;
    let mut sync_n = 0u32;
    let mut sync_retry = 0i32;
    let send_sync = |after: u64, n: u32| {
        Message::Text(
            format!(r#"{{"event":"sync","ref":"y{n}","data":{{"afterId":{after}}}}}"#).into(),
        )
    };
    loop {
        let next = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .map_err(|_| anyhow!("nothing from the server for 60 s"))?;
        let text = match next {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(false),
            Some(Ok(_)) => continue,
        };
        let frame: Frame = serde_json::from_str(&text).context("frame")?;
        match frame.event {
            "message:received" => {
                let m: Msg = serde_json::from_str(frame.data.map(|d| d.get()).unwrap_or("null"))?;
                *cursor = (*cursor).max(m.id);
                match parse_content(&m.content) {
                    Some((seq, _)) => log.got.push((m.sender_id, seq)),
                    None => log.strangers += 1,
                }
            }
            "ready" if !ready => {
                ready = true;
                log.ready_ns = unix_ns();
                if !sync {
                    return Ok(true);
                }
                ws.send(send_sync(*cursor, sync_n)).await?;
            }
            "ack" if ready && frame.reference.is_some_and(|r| r == format!("y{sync_n}")) => {
                let ack: SyncAck =
                    serde_json::from_str(frame.data.map(|d| d.get()).unwrap_or("{}"))?;
                let moved = ack.last_id.is_some_and(|l| l > *cursor);
                if let Some(l) = ack.last_id {
                    *cursor = (*cursor).max(l);
                }
                if ack.has_more && moved {
                    sync_n += 1;
                    ws.send(send_sync(*cursor, sync_n)).await?;
                } else {
                    log.synced_ns = unix_ns();
                    return Ok(true);
                }
            }
            "error" if ready && frame.reference.is_some_and(|r| r == format!("y{sync_n}")) => {
                // `unavailable` (no database connection in time) and `busy` say
                // retry: after a backoff, as for a connect.
                let code = serde_json::from_str::<serde_json::Value>(
                    frame.data.map(|d| d.get()).unwrap_or("null"),
                )?["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if code != "unavailable" && code != "busy" {
                    bail!("sync refused: {text}");
                }
                log.sync_retries += 1;
                let cap = BACKOFF_CAP_MS.min(BACKOFF_BASE_MS * 2f64.powi(sync_retry));
                sync_retry += 1;
                tokio::time::sleep(Duration::from_secs_f64(
                    (cap / 2.0 + rand::random::<f64>() * cap / 2.0) / 1000.0,
                ))
                .await;
                sync_n += 1;
                ws.send(send_sync(*cursor, sync_n)).await?;
            }
            "error" if ready => bail!("error frame: {text}"),
            _ => {}
        }
    }
}

/// One client through the storm: waits for the close, reconnects as the web client
/// does, syncs; keeps reading afterwards until the worker is told to exit.
async fn client(cfg: Arc<WorkerConfig>, index: usize, mut ws: Ws) -> (ClientLog, Option<Ws>) {
    let mut log = ClientLog {
        user: cfg.user_ids[index],
        ..Default::default()
    };
    // Connected and ready: wait for the server to go.
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(c))) => {
                log.close_code = c.map(|c| u16::from(c.code)).unwrap_or(0);
                break;
            }
            Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    log.close_ns = unix_ns();
    // Answer the close (the library does) and let go of the old socket.
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    drop(ws);
    let give_up = Instant::now() + Duration::from_secs_f64(cfg.give_up);
    let token = match mint_token(&cfg.secret, cfg.user_ids[index], cfg.sids[index]) {
        Ok(t) => t,
        Err(e) => {
            log.error = Some(e.to_string());
            return (log, None);
        }
    };
    let mut cursor = 0u64;
    let mut attempt = 0i32;
    let mut wait = Duration::from_secs_f64(rand::random::<f64>() * cfg.jitter);
    loop {
        tokio::time::sleep(wait).await;
        if Instant::now() > give_up {
            log.error.get_or_insert_with(|| "gave up".into());
            return (log, None);
        }
        log.attempts += 1;
        let cap = BACKOFF_CAP_MS.min(BACKOFF_BASE_MS * 2f64.powi(attempt));
        let backoff =
            Duration::from_secs_f64((cap / 2.0 + rand::random::<f64>() * cap / 2.0) / 1000.0);
        attempt += 1;
        wait = backoff;
        match dial(&cfg, &token, index).await {
            Ok(mut ws) => match ready_and_sync(&mut ws, &mut log, &mut cursor, true).await {
                Ok(true) => return (log, Some(ws)),
                Ok(false) => log.dropped += 1,
                Err(e) => {
                    log.error = Some(e.to_string());
                    return (log, None);
                }
            },
            Err(Refusal::Tcp) => log.refused_tcp += 1,
            Err(Refusal::Unavailable(after)) => {
                log.http_503 += 1;
                if let Some(s) = after {
                    wait = wait.max(Duration::from_secs_f64(s.clamp(0.0, 120.0)));
                }
            }
            Err(Refusal::Server(s)) => {
                log.http_5xx += 1;
                log.error.get_or_insert_with(|| format!("HTTP {s}"));
            }
            Err(Refusal::Client(s)) => {
                log.http_4xx += 1;
                log.error = Some(format!("HTTP {s}: cannot retry"));
                return (log, None);
            }
            Err(Refusal::Other(e)) => {
                log.error.get_or_insert(e);
            }
        }
    }
}

/// The hidden `storm-worker`: reads its config line, connects its clients, reports
/// them connected, rides out the storm, reports every client's log, holds the
/// connections until stdin says `exit`.
pub async fn worker() -> Result<()> {
    crate::common::raise_nofile();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin
        .next_line()
        .await?
        .ok_or_else(|| anyhow!("no config on stdin"))?;
    let cfg: Arc<WorkerConfig> = Arc::new(serde_json::from_str(&line)?);
    let opened = crate::common::bounded(cfg.user_ids.len(), cfg.concurrency, |i| {
        let cfg = cfg.clone();
        async move {
            let token = mint_token(&cfg.secret, cfg.user_ids[i], cfg.sids[i])?;
            let mut ws = dial(&cfg, &token, i).await.map_err(|e| match e {
                Refusal::Tcp => anyhow!("refused"),
                Refusal::Unavailable(_) => anyhow!("HTTP 503"),
                Refusal::Server(s) | Refusal::Client(s) => anyhow!("HTTP {s}"),
                Refusal::Other(e) => anyhow!(e),
            })?;
            let mut log = ClientLog::default();
            let mut cursor = 0;
            // A fresh user has nothing waiting: `ready` is enough.
            if !ready_and_sync(&mut ws, &mut log, &mut cursor, false).await? {
                bail!("closed before ready");
            }
            Ok::<_, anyhow::Error>(ws)
        }
    })
    .await;
    let mut rep = WorkerReport::default();
    let mut tasks = Vec::new();
    for (i, res) in opened.into_iter().enumerate() {
        match res {
            Ok(ws) => {
                rep.connected += 1;
                tasks.push(tokio::spawn(client(cfg.clone(), i, ws)));
            }
            Err(e) => {
                rep.failed += 1;
                rep.first_error.get_or_insert(e.to_string());
            }
        }
    }
    println!("{}", serde_json::to_string(&rep)?);
    let mut kept = Vec::new();
    for t in tasks {
        match t.await {
            Ok((log, ws)) => {
                rep.clients.push(log);
                kept.extend(ws);
            }
            Err(e) => rep.first_error = Some(e.to_string()),
        }
    }
    println!("{}", serde_json::to_string(&rep)?);
    // Hold the connections (so the last ones' close does not count as load on the
    // figures) until the parent says so.
    while let Ok(Some(l)) = stdin.next_line().await {
        if l.trim() == "exit" {
            break;
        }
    }
    drop(kept);
    Ok(())
}
