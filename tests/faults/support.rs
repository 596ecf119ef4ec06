//! Real processes for the fault tests: the `parley` binary (started, SIGKILLed,
//! SIGTERMed and started again on the same port), a private `redis-server`, a private
//! MariaDB, plus what every test needs around them (users, tokens, MySQL rows, log
//! checks, /proc and /metrics samples, the `RELIABILITY:` lines).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use crate::helpers::{closed_port, JWT_SECRET};

pub const BIN: &str = env!("CARGO_BIN_EXE_parley");

/// Prints one `RELIABILITY:` line (the figures RELIABILITY.md is filled from).
pub fn reliability(case: &str, fields: &[(&str, String)]) {
    let mut line = format!("RELIABILITY: case={case}");
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    println!("{line}");
}

pub fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Whether this test process runs as root (mount, `--user=mysql`).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid}");
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "parley-faults-{tag}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------------ databases

/// A database on the shared test server (`PARLEY_TEST_MYSQL`), dropped on drop.
pub struct TestDb {
    pub url: String,
}

impl TestDb {
    pub fn fresh() -> TestDb {
        TestDb {
            url: crate::helpers::fresh_db_url(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database_blocking(self.url.clone());
    }
}

pub fn drop_database_blocking(url: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let _ = parley::db::migrate::drop_database(&url).await;
        })
    })
    .join();
}

/// One row of `messages` as the reconciler sees it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: u64,
    pub chat_id: u64,
    pub sender_id: u64,
    pub client_id: String,
    pub content: String,
}

pub async fn mysql(url: &str) -> mysql_async::Conn {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match mysql_async::Conn::from_url(url).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "mysql {url}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

pub async fn message_rows(url: &str) -> Vec<Row> {
    let mut c = mysql(url).await;
    let rows: Vec<(u64, u64, u64, String, String)> = c
        .query("SELECT id, chat_id, sender_id, client_id, content FROM messages ORDER BY id")
        .await
        .unwrap();
    let _ = c.disconnect().await;
    rows.into_iter()
        .map(|(id, chat_id, sender_id, client_id, content)| Row {
            id,
            chat_id,
            sender_id,
            client_id,
            content,
        })
        .collect()
}

/// chat id → member ids.
pub async fn chat_members(url: &str) -> HashMap<u64, Vec<u64>> {
    let mut c = mysql(url).await;
    let rows: Vec<(u64, u64)> = c
        .query("SELECT chat_id, user_id FROM chat_members")
        .await
        .unwrap();
    let _ = c.disconnect().await;
    let mut m: HashMap<u64, Vec<u64>> = HashMap::new();
    for (chat, user) in rows {
        m.entry(chat).or_default().push(user);
    }
    m
}

pub async fn count(url: &str, sql: &str) -> u64 {
    let mut c = mysql(url).await;
    let n: Option<u64> = c.query_first(sql).await.unwrap();
    let _ = c.disconnect().await;
    n.unwrap_or(0)
}

// ------------------------------------------------------------------ parley

/// The real `parley serve`, JSON logs at debug level, on a fixed loopback port so it
/// can be started again at the same address.
pub struct Parley {
    child: Option<Child>,
    pub port: u16,
    pub metrics_port: u16,
    pub lines: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
    pub uploads: PathBuf,
    _uploads_dir: Option<TempDir>,
}

impl Parley {
    /// Settings every fault test starts from: fast hashing, throttles out of the way
    /// (tests of a limit set it themselves), a private uploads directory.
    pub fn base_env(db_url: &str) -> Vec<(String, String)> {
        let static_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
        [
            ("PARLEY__DATABASE__URL", db_url.to_string()),
            ("PARLEY__AUTH__JWT_SECRET", JWT_SECRET.to_string()),
            ("PARLEY__AUTH__PBKDF2_ITERATIONS", "1000".into()),
            ("PARLEY__LOG__FORMAT", "json".into()),
            ("PARLEY__LOG__LEVEL", "debug".into()),
            ("PARLEY__SERVER__WORKERS", "2".into()),
            ("PARLEY__SERVER__SHUTDOWN_TIMEOUT_SECS", "5".into()),
            ("PARLEY__DATABASE__POOL_MAX", "16".into()),
            ("PARLEY__LIMITS__LOGIN_PER_IP_PER_MIN", "100000".into()),
            ("PARLEY__LIMITS__LOGIN_PER_ACCOUNT_PER_MIN", "100000".into()),
            ("PARLEY__LIMITS__REGISTER_PER_IP_PER_MIN", "100000".into()),
            ("PARLEY__LIMITS__WS_EVENTS_PER_SEC", "100000".into()),
            ("PARLEY__LIMITS__WS_EVENTS_BURST", "100000".into()),
            ("PARLEY__LIMITS__CHATS_PER_MIN", "100000".into()),
            ("PARLEY__STATIC__DIR", static_dir.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub async fn start(db_url: &str, extra: &[(&str, String)]) -> Parley {
        let uploads = TempDir::new("uploads");
        let mut env = Parley::base_env(db_url);
        env.push((
            "PARLEY__STORAGE__UPLOADS_DIR".into(),
            uploads.path().display().to_string(),
        ));
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.clone()));
        }
        let uploads_path = env
            .iter()
            .find(|(k, _)| k == "PARLEY__STORAGE__UPLOADS_DIR")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap();
        let port = closed_port();
        let metrics_port = closed_port();
        let mut p = Parley {
            child: None,
            port,
            metrics_port,
            lines: Arc::new(Mutex::new(Vec::new())),
            env,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            uploads: uploads_path,
            _uploads_dir: Some(uploads),
        };
        p.launch().await;
        p
    }

    /// Starts (again) with the same settings, port and database.
    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PARLEY__SERVER__PORT", self.port.to_string())
            .env(
                "PARLEY__METRICS__LISTEN",
                format!("127.0.0.1:{}", self.metrics_port),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let start = self.lines.lock().unwrap().len();
        let mut child = cmd.spawn().expect("spawn parley");
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = self.lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var("TEST_LOG").is_ok() {
                        eprintln!("{line}");
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let listening = self.lines.lock().unwrap()[start..].iter().any(|l| {
                serde_json::from_str::<Value>(l)
                    .map(|v| v["message"] == "parley listening")
                    .unwrap_or(false)
            });
            if listening {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "parley exited at start ({status}): {:?}",
                    self.lines.lock().unwrap()[start..].to_vec()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no listening line: {:?}",
                self.lines.lock().unwrap()[start..].to_vec()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn sigterm(&self) {
        signal(self.pid(), "TERM");
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "parley did not exit in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_base(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    pub fn rss_kib(&self) -> u64 {
        proc_rss_kib(self.pid())
    }

    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// The gauges and counters of the metrics listener (label-less series only).
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let body = self
            .http
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap();
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.contains('{'))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_string(), it.next()?.parse().ok()?))
            })
            .collect()
    }

    pub async fn status(&self, path: &str) -> u16 {
        match self.http.get(self.url(path)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    pub async fn wait_ready(&self, limit: Duration) -> Duration {
        let t = Instant::now();
        while self.status("/api/ready").await != 200 {
            assert!(t.elapsed() < limit, "not ready within {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        t.elapsed()
    }

    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every line is JSON, nothing panicked, and no secret (password, hash, token
    /// signature) was ever written.
    pub fn assert_logs_clean(&self, secrets: &Secrets) {
        assert_lines_clean(&self.logs(), secrets);
    }

    pub async fn register(&self, name: &str, secrets: &Secrets) -> User {
        register(&self.http, &self.base(), name, secrets).await
    }

    pub async fn direct_chat(&self, a: &User, b: &User) -> u64 {
        let res = self
            .http
            .post(self.url("/api/chats"))
            .bearer_auth(&a.token)
            .json(&json!({"userId": b.id}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "chat: {}", res.status());
        res.json::<Value>().await.unwrap()["id"].as_u64().unwrap()
    }

    pub async fn group_chat(&self, owner: &User, others: &[&User]) -> u64 {
        let ids: Vec<u64> = others.iter().map(|u| u.id).collect();
        let res = self
            .http
            .post(self.url("/api/chats"))
            .bearer_auth(&owner.token)
            .json(&json!({"title": "group", "memberIds": ids}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "group: {}", res.status());
        res.json::<Value>().await.unwrap()["id"].as_u64().unwrap()
    }
}

impl Drop for Parley {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn proc_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// What must never appear in a log line: passwords, token signatures, hashes.
#[derive(Clone, Default)]
pub struct Secrets(Arc<Mutex<Vec<String>>>);

impl Secrets {
    pub fn add(&self, s: impl Into<String>) {
        let s = s.into();
        if s.len() >= 8 {
            self.0.lock().unwrap().push(s);
        }
    }
    pub fn add_token(&self, token: &str) {
        if let Some(sig) = token.rsplit('.').next() {
            self.add(sig);
        }
    }
    pub fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

pub fn assert_lines_clean(lines: &[String], secrets: &Secrets) {
    let mut secrets = secrets.list();
    secrets.push("$pbkdf2".into());
    secrets.push("pbkdf2-sha256".into());
    for line in lines {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
        assert!(!line.contains("panicked"), "panic in the log: {line}");
        for s in &secrets {
            assert!(!line.contains(s.as_str()), "{s:?} leaked into: {line}");
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub password: String,
    pub token: String,
}

pub async fn register(http: &reqwest::Client, base: &str, name: &str, secrets: &Secrets) -> User {
    let password = format!("pw-{name}-{}", uuid::Uuid::new_v4().simple());
    let res = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"email": format!("{name}@example.com"), "username": name, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201, "register {name}");
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    secrets.add(password.clone());
    secrets.add_token(&token);
    User {
        id: body["user"]["id"].as_u64().unwrap(),
        name: name.to_string(),
        password,
        token,
    }
}

/// Signs claims with `secret` (HS256), as a stranger or an old token would be.
pub fn sign_token(secret: &[u8], sub: u64, iat: u64, exp: u64) -> String {
    let keys = parley::auth::JwtKeys::new(secret, Duration::from_secs(60));
    keys.sign_claims(&parley::auth::jwt::Claims {
        sub: sub.to_string(),
        iat,
        exp,
    })
    .unwrap()
}

pub fn unix_now() -> u64 {
    parley::auth::jwt::unix_now()
}

/// An unsigned `alg: none` token for `sub`.
pub fn alg_none_token(sub: u64) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = unix_now();
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64.encode(
        json!({"sub": sub.to_string(), "iat": now, "exp": now + 3600})
            .to_string()
            .as_bytes(),
    );
    format!("{header}.{claims}.")
}

pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.elapsed()
}

// ------------------------------------------------------------------ redis

/// A private redis-server on a free loopback port; stopped on drop.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: closed_port(),
            child: None,
        };
        r.launch();
        r
    }

    pub fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------ mariadb

/// A private MariaDB: its own data directory, port and socket, started as a child
/// process and never the machine's shared server. Root has no password over TCP.
pub struct Mariadb {
    dir: TempDir,
    pub port: u16,
    child: Option<Child>,
    root: bool,
    extra: Vec<String>,
}

impl Mariadb {
    pub async fn start() -> Mariadb {
        Mariadb::start_with(&[]).await
    }

    /// With extra `mariadbd` options.
    pub async fn start_with(extra: &[&str]) -> Mariadb {
        let dir = TempDir::new("mariadb");
        let root = is_root();
        let data = dir.path().join("data");
        if root {
            assert!(Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success());
        }
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if root {
            install.arg("--user=mysql");
        }
        let out = install.output().expect("mariadb-install-db is installed");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = Mariadb {
            dir,
            port: closed_port(),
            child: None,
            root,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        m.launch().await;
        m
    }

    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts mariadbd on the same data directory and port; waits until it answers.
    pub async fn launch(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!(
                "--socket={}",
                self.dir.path().join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.path().join("error.log").display()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--skip-log-bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.root {
            cmd.arg("--user=mysql");
        }
        cmd.args(&self.extra);
        self.child = Some(cmd.spawn().expect("mariadbd is installed"));
        let url = format!("mysql://root@127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = mysql_async::Conn::from_url(url.as_str()).await {
                if c.query_drop("SELECT 1").await.is_ok() {
                    let _ = c.disconnect().await;
                    return;
                }
            }
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mariadbd exited ({s}): {}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not answer: {}",
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// SIGTERM (a clean shutdown), SIGKILL if it takes longer than 20 s.
    pub async fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        signal(c.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------------ stats

/// p-th percentile (0..=100) of durations.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut s = v.to_vec();
    s.sort();
    let i = ((p / 100.0) * (s.len() as f64 - 1.0)).round() as usize;
    s[i.min(s.len() - 1)]
}

// ------------------------------------------------------------------ one case at a time

/// Fault cases measure latencies and timeouts of real processes on a small machine,
/// so they run one at a time even when nextest starts them in parallel: each holds
/// this lock (a directory made atomically, with the holder's pid; a dead holder's
/// lock is taken over).
pub struct SuiteLock(PathBuf);

pub async fn exclusive() -> SuiteLock {
    let dir = std::env::temp_dir().join("parley-faults.lock");
    let me = std::process::id();
    loop {
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::write(dir.join("pid"), me.to_string()).unwrap();
                return SuiteLock(dir);
            }
            Err(_) => {
                let holder = std::fs::read_to_string(dir.join("pid"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok());
                let alive = holder.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                if holder.is_some() && !alive {
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Drop for SuiteLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
