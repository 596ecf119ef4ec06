//! The real `parley` binary: started, SIGKILLed, SIGTERMed and started again on the
//! same port, with its log lines captured, plus what tests check around it (log
//! hygiene, /proc and /metrics samples) and the lock that runs fault cases one at a
//! time.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{self, TestUser};
use crate::util::{closed_port, proc_rss_kib, signal, TempDir};
use crate::JWT_SECRET;

/// The `parley` binary Cargo built for the running test. `CARGO_BIN_EXE_parley` is
/// only known when compiling an integration test of the root package, not this
/// crate, so it is found at run time: nextest's variable, Cargo's, or beside the test
/// executable (`target/debug/deps/<test>` → `target/debug/parley`).
pub fn bin() -> PathBuf {
    for var in ["NEXTEST_BIN_EXE_parley", "CARGO_BIN_EXE_parley"] {
        if let Some(p) = std::env::var_os(var) {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .join("parley");
    assert!(
        p.is_file(),
        "no parley binary at {}: run the suite through cargo or nextest",
        p.display()
    );
    p
}

/// `parley` with only what the test sets: no secret or database from the developer's
/// shell, JSON logs, no metrics listener, fast hashing.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PARLEY__LOG__FORMAT", "json")
        .env("PARLEY__METRICS__LISTEN", "")
        .env("PARLEY__AUTH__PBKDF2_ITERATIONS", "1000")
        .stdin(Stdio::null());
    cmd
}

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
    prepare: Option<Prepare>,
}

/// A last change to the command before each start (a `pre_exec` hook, say).
type Prepare = Arc<dyn Fn(&mut Command) + Send + Sync>;

impl Parley {
    /// Settings every binary test starts from: fast hashing, throttles out of the way
    /// (tests of a limit set it themselves), the repository's web client.
    pub fn base_env(db_url: &str) -> Vec<(String, String)> {
        let static_dir = crate::util::repo().join("static");
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

    /// Starts `parley serve` on `db_url` with [`Parley::base_env`], a private uploads
    /// directory and a metrics listener; `extra` overrides any of them.
    pub async fn start(db_url: &str, extra: &[(&str, String)]) -> Parley {
        Parley::start_prepared(db_url, extra, None).await
    }

    /// [`Parley::start`] with `prepare` applied to the command before every start
    /// (the deploy tests install a seccomp filter with it).
    pub async fn start_with(
        db_url: &str,
        extra: &[(&str, String)],
        prepare: impl Fn(&mut Command) + Send + Sync + 'static,
    ) -> Parley {
        Parley::start_prepared(db_url, extra, Some(Arc::new(prepare))).await
    }

    async fn start_prepared(
        db_url: &str,
        extra: &[(&str, String)],
        prepare: Option<Prepare>,
    ) -> Parley {
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
            prepare,
        };
        p.launch().await;
        p
    }

    /// Starts (again) with the same settings, port and database.
    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new(bin());
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
        if let Some(prepare) = &self.prepare {
            prepare(&mut cmd);
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
        let body = self.metrics_text().await;
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.contains('{'))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_string(), it.next()?.parse().ok()?))
            })
            .collect()
    }

    /// The metrics listener's whole exposition text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap()
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

    /// Registers `name` with a random password; the password and the token's
    /// signature go to `secrets` (they must never be logged).
    pub async fn register(&self, name: &str, secrets: &Secrets) -> TestUser {
        self.register_as(name, &format!("{name}@example.com"), secrets)
            .await
    }

    /// [`Parley::register`] with its own email address.
    pub async fn register_as(&self, name: &str, email: &str, secrets: &Secrets) -> TestUser {
        let password = format!("pw-{name}-{}", uuid::Uuid::new_v4().simple());
        let user = client::register_with(&self.http, &self.base(), name, email, &password).await;
        secrets.add(user.password.clone());
        secrets.add_token(&user.token);
        user
    }

    pub async fn direct_chat(&self, a: &TestUser, b: &TestUser) -> u64 {
        client::direct_chat(&self.http, &self.base(), a, b).await
    }

    pub async fn group_chat(&self, owner: &TestUser, others: &[&TestUser]) -> u64 {
        client::group_chat(&self.http, &self.base(), owner, others).await
    }
}

impl Drop for Parley {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ------------------------------------------------------------------ log hygiene

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

/// Every line is JSON, none mentions a panic, none holds a secret or a PBKDF2 hash.
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
