//! What every scenario shares: the target server, its database, tokens, users and
//! chats made straight in MySQL, the WebSocket dialer, process probes and reports.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use mysql_async::prelude::Queryable;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::WebSocketStream;

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Base URL of the Parley server.
    #[arg(long, global = true, default_value = "http://127.0.0.1:30000")]
    pub url: String,
    /// The database the server uses (users and chats are inserted there).
    #[arg(
        long,
        global = true,
        default_value = "mysql://root@127.0.0.1:3306/parley"
    )]
    pub database_url: String,
    /// The server's auth.jwt_secret (tokens are minted with it); or PARLEY_BENCH_JWT_SECRET.
    #[arg(long, global = true, default_value = "")]
    pub jwt_secret: String,
    /// The server's process id (for RSS and CPU); found from the listening port if unset.
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Append the JSON line of figures to this file.
    #[arg(long, global = true)]
    pub json_out: Option<std::path::PathBuf>,
    /// The server's auth.pbkdf2_iterations (hashes the bench stores for login users).
    #[arg(long, global = true, default_value_t = 600_000)]
    pub pbkdf2_iterations: u32,
}

/// A prepared run: clients, database pool, a run id that prefixes every name.
pub struct Ctx {
    pub common: Common,
    pub http: reqwest::Client,
    pub pool: mysql_async::Pool,
    pub run_id: String,
    pub server: SocketAddr,
    pub ws_base: String,
    pub t0: Instant,
    /// The sign-in session made for each user `insert_users` created (user → sid):
    /// the server refuses a token whose `sid` names no live session.
    pub sessions: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
}

impl Ctx {
    pub async fn new(mut common: Common) -> Result<Ctx> {
        if common.jwt_secret.is_empty() {
            common.jwt_secret = std::env::var("PARLEY_BENCH_JWT_SECRET").unwrap_or_default();
        }
        if common.jwt_secret.is_empty() {
            bail!("--jwt-secret (or PARLEY_BENCH_JWT_SECRET) is required");
        }
        let url = reqwest::Url::parse(&common.url).context("--url")?;
        let host = url.host_str().ok_or_else(|| anyhow!("--url has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let server = tokio::net::lookup_host((host, port))
            .await?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| anyhow!("cannot resolve {host}"))?;
        let ws_scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        let ws_base = format!("{ws_scheme}://{host}:{port}/ws");
        let opts = mysql_async::Opts::from_url(&common.database_url).context("--database-url")?;
        let pool = mysql_async::Pool::new(mysql_async::OptsBuilder::from_opts(opts).pool_opts(
            mysql_async::PoolOpts::default().with_constraints(
                mysql_async::PoolConstraints::new(0, 8).expect("pool constraints"),
            ),
        ));
        let run_id = format!("{:08x}", rand::random::<u32>());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Ctx {
            common,
            http,
            pool,
            run_id,
            server,
            ws_base,
            t0: Instant::now(),
            sessions: Default::default(),
        })
    }

    pub fn ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{}", self.common.url.trim_end_matches('/'), path)
    }

    pub fn token(&self, user_id: u64) -> Result<String> {
        mint_token(&self.common.jwt_secret, user_id, self.sid(user_id)?)
    }

    /// The sign-in session `insert_users` made for `user_id`.
    pub fn sid(&self, user_id: u64) -> Result<u64> {
        self.sessions
            .lock()
            .map_err(|_| anyhow!("sessions lock poisoned"))?
            .get(&user_id)
            .copied()
            .ok_or_else(|| anyhow!("user {user_id} has no session (users come from insert_users)"))
    }

    pub async fn conn(&self) -> Result<mysql_async::Conn> {
        Ok(self.pool.get_conn().await?)
    }

    pub fn server_pid(&self) -> Option<u32> {
        self.common
            .server_pid
            .or_else(|| pid_listening_on(self.server.port()))
    }
}

pub fn mint_token(secret: &str, user_id: u64, sid: u64) -> Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": user_id.to_string(), "sid": sid, "iat": now, "exp": now + 86_400});
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// A PBKDF2 PHC string for `password`, as the server stores them.
pub fn hash_password(password: &str, iterations: u32) -> Result<String> {
    use pbkdf2::password_hash::phc::PasswordHash;
    use pbkdf2::password_hash::CustomizedPasswordHasher;
    let params = pbkdf2::Params::new(iterations).map_err(|e| anyhow!("{e}"))?;
    let salt = pbkdf2::password_hash::generate_salt();
    let hash: PasswordHash = pbkdf2::Pbkdf2::default()
        .hash_password_customized(password.as_bytes(), &salt, None, None, params)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(hash.to_string())
}

/// A real PHC string of a password nobody knows, for users that never log in.
pub fn dummy_hash() -> String {
    hash_password("nobody-knows-this-bench-password", 1000).unwrap_or_else(|_| "x".into())
}

// ------------------------------------------------------------------ database set-up

/// Inserts `n` users named `<prefix><i>` and returns their ids in index order.
pub async fn insert_users(ctx: &Ctx, tag: &str, n: usize, hash: &str) -> Result<Vec<u64>> {
    let prefix = format!("b{}{}_", ctx.run_id, tag);
    if prefix.len() + 7 > 32 {
        bail!("user name prefix too long: {prefix}");
    }
    let mut conn = ctx.conn().await?;
    let hash = hash.replace('\'', "");
    for start in (0..n).step_by(2000) {
        let end = (start + 2000).min(n);
        let mut sql = String::from("INSERT INTO users (email, username, password_hash) VALUES ");
        for i in start..end {
            if i > start {
                sql.push(',');
            }
            sql.push_str(&format!(
                "('{prefix}{i}@bench.test','{prefix}{i}','{hash}')"
            ));
        }
        conn.query_drop(sql).await.context("insert users")?;
    }
    let rows: Vec<(u64, String)> = conn
        .exec(
            "SELECT id, username FROM users WHERE username LIKE ?",
            (format!("{}%", prefix.replace('_', "\\_")),),
        )
        .await?;
    let mut ids = vec![0u64; n];
    for (id, name) in rows {
        let i: usize = name[prefix.len()..].parse()?;
        if i < n {
            ids[i] = id;
        }
    }
    if ids.contains(&0) {
        bail!("not every inserted user was found");
    }
    // One sign-in session each, as a login would make: tokens name it.
    let like = format!("{}%", prefix.replace('_', "\\_"));
    conn.exec_drop(
        "INSERT INTO auth_sessions (user_id, device) \
         SELECT id, 'bench' FROM users WHERE username LIKE ?",
        (&like,),
    )
    .await
    .context("insert sessions")?;
    let sessions: Vec<(u64, u64)> = conn
        .exec(
            "SELECT s.user_id, s.id FROM auth_sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.username LIKE ? AND s.revoked_at IS NULL",
            (&like,),
        )
        .await?;
    let mut map = ctx
        .sessions
        .lock()
        .map_err(|_| anyhow!("sessions lock poisoned"))?;
    map.extend(sessions);
    Ok(ids)
}

pub fn username(ctx: &Ctx, tag: &str, i: usize) -> String {
    format!("b{}{}_{i}", ctx.run_id, tag)
}

/// Inserts direct chats for `pairs` and their members; returns chat ids in order.
pub async fn insert_direct_chats(ctx: &Ctx, pairs: &[(u64, u64)]) -> Result<Vec<u64>> {
    let mut conn = ctx.conn().await?;
    let key = |a: u64, b: u64| format!("{}:{}", a.min(b), a.max(b));
    let mut ids = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(1000) {
        let mut sql = String::from("INSERT INTO chats (kind, direct_key, created_by) VALUES ");
        for (i, &(a, b)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("('direct','{}',{a})", key(a, b)));
        }
        conn.query_drop(sql).await.context("insert chats")?;
        let keys: Vec<String> = chunk
            .iter()
            .map(|&(a, b)| format!("'{}'", key(a, b)))
            .collect();
        let rows: Vec<(u64, String)> = conn
            .query(format!(
                "SELECT id, direct_key FROM chats WHERE direct_key IN ({})",
                keys.join(",")
            ))
            .await?;
        let map: std::collections::HashMap<String, u64> =
            rows.into_iter().map(|(id, k)| (k, id)).collect();
        let mut members = String::from("INSERT INTO chat_members (chat_id, user_id) VALUES ");
        for (i, &(a, b)) in chunk.iter().enumerate() {
            let id = *map
                .get(&key(a, b))
                .ok_or_else(|| anyhow!("inserted chat not found"))?;
            ids.push(id);
            if i > 0 {
                members.push(',');
            }
            members.push_str(&format!("({id},{a}),({id},{b})"));
        }
        conn.query_drop(members).await.context("insert members")?;
    }
    Ok(ids)
}

/// Inserts one group chat with these members; returns its id.
pub async fn insert_group(ctx: &Ctx, title: &str, members: &[u64]) -> Result<u64> {
    let mut conn = ctx.conn().await?;
    conn.exec_drop(
        "INSERT INTO chats (kind, title, created_by) VALUES ('group', ?, ?)",
        (title, members[0]),
    )
    .await?;
    let id = conn
        .last_insert_id()
        .ok_or_else(|| anyhow!("no insert id"))?;
    for chunk in members.chunks(2000) {
        let values: Vec<String> = chunk.iter().map(|u| format!("({id},{u})")).collect();
        conn.query_drop(format!(
            "INSERT INTO chat_members (chat_id, user_id) VALUES {}",
            values.join(",")
        ))
        .await?;
    }
    Ok(id)
}

/// Rows in `messages` for these chats.
pub async fn count_messages(ctx: &Ctx, chats: &[u64]) -> Result<u64> {
    let mut conn = ctx.conn().await?;
    let mut total = 0;
    for chunk in chats.chunks(1000) {
        let list: Vec<String> = chunk.iter().map(|c| c.to_string()).collect();
        let n: Option<u64> = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM messages WHERE chat_id IN ({})",
                list.join(",")
            ))
            .await?;
        total += n.unwrap_or(0);
    }
    Ok(total)
}

// ------------------------------------------------------------------ WebSocket

pub type Ws = WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket for `token`, from `source` when given (a local address to bind).
pub async fn ws_connect(
    ctx_server: SocketAddr,
    ws_base: &str,
    token: &str,
    source: Option<IpAddr>,
) -> Result<Ws> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(ip) = source {
        bind_address_no_port(&socket);
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(ctx_server).await?;
    stream.set_nodelay(true)?;
    let req = format!("{ws_base}?token={token}").into_client_request()?;
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await?;
    Ok(ws)
}

/// `IP_BIND_ADDRESS_NO_PORT`: binding a source address then picks the port at
/// `connect`, per destination. Without it every `bind` searches the whole port
/// space of that address for a free port — across sockets still in TIME_WAIT from
/// an earlier run too — which cost the load generator most of a core.
fn bind_address_no_port(socket: &tokio::net::TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

// ------------------------------------------------------------------ processes and machine

/// Raises the soft open-files limit to the hard limit.
pub fn raise_nofile() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// The pid of the process with a listening TCP socket on `port`.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let p = cols[1]
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if p == Some(port) {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.to_str() == Some(i)) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// utime + stime of `pid`, in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields after the name start at field 3 (state); utime is field 14, stime 15.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((ut + st) / if hz > 0.0 { hz } else { 100.0 })
}

pub fn machine() -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    json!({"cores": cores, "cpu": cpu, "memMiB": mem})
}

pub fn git_commit() -> String {
    if let Ok(c) = std::env::var("PARLEY_BENCH_COMMIT") {
        if !c.is_empty() {
            return c;
        }
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

// ------------------------------------------------------------------ histograms

pub type Hist = hdrhistogram::Histogram<u64>;

/// Microsecond histogram up to one hour.
pub fn hist() -> Hist {
    Hist::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

pub fn ms(h: &Hist, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn max_ms(h: &Hist) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.max() as f64 / 1000.0
}

// ------------------------------------------------------------------ reports

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub value: f64,
    pub op: &'static str,
    pub limit: f64,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub passed: bool,
    pub problems: Vec<String>,
    /// Figures in display order: (name, value, unit).
    #[serde(skip)]
    pub figures: Vec<(String, f64, String)>,
    pub settings: Value,
    pub targets: Vec<Target>,
}

impl Report {
    pub fn new(scenario: &str, settings: Value) -> Report {
        Report {
            scenario: scenario.into(),
            passed: true,
            problems: Vec::new(),
            figures: Vec::new(),
            settings,
            targets: Vec::new(),
        }
    }

    pub fn fig(&mut self, name: &str, value: f64, unit: &str) {
        self.figures.push((name.into(), value, unit.into()));
    }

    pub fn problem(&mut self, p: impl Into<String>) {
        self.passed = false;
        self.problems.push(p.into());
    }

    /// A target is reported, never a failure: correctness decides `passed`.
    pub fn target(&mut self, name: &str, value: f64, op: &'static str, limit: f64) {
        let met = match op {
            ">=" => value >= limit,
            "<=" => value <= limit,
            "==" => value == limit,
            _ => false,
        };
        self.targets.push(Target {
            name: name.into(),
            value,
            op,
            limit,
            met,
        });
    }

    pub fn json(&self) -> Value {
        let figures: serde_json::Map<String, Value> = self
            .figures
            .iter()
            .map(|(k, v, _)| (k.clone(), json!(round3(*v))))
            .collect();
        json!({
            "scenario": self.scenario,
            "passed": self.passed,
            "problems": self.problems,
            "commit": git_commit(),
            "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "machine": machine(),
            "settings": self.settings,
            "figures": figures,
            "units": self.figures.iter().map(|(k, _, u)| (k.clone(), json!(u))).collect::<serde_json::Map<_, _>>(),
            "targets": self.targets,
        })
    }

    pub fn print(&self) {
        println!();
        println!(
            "== {} — {}",
            self.scenario,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        println!("settings: {}", self.settings);
        let w = self
            .figures
            .iter()
            .map(|f| f.0.len())
            .max()
            .unwrap_or(6)
            .max(6);
        println!("  {:<w$}  {:>14}  unit", "figure", "value");
        for (k, v, u) in &self.figures {
            println!("  {:<w$}  {:>14}  {u}", k, fmt_num(*v));
        }
        for t in &self.targets {
            println!(
                "  target {}: {} {} {} — {}",
                t.name,
                fmt_num(t.value),
                t.op,
                fmt_num(t.limit),
                if t.met { "met" } else { "NOT met" }
            );
        }
        for p in &self.problems {
            println!("  PROBLEM: {p}");
        }
        let line = self.json().to_string();
        println!("{line}");
    }

    pub fn write_json(&self, path: Option<&std::path::Path>) -> Result<()> {
        if let Some(p) = path {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            writeln!(f, "{}", self.json())?;
        }
        Ok(())
    }
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Runs `n` futures made by `f` with at most `limit` at once, in index order of results.
pub async fn bounded<T, F, Fut>(n: usize, limit: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter((0..n).map(f))
        .buffered(limit.max(1))
        .collect()
        .await
}
