//! The MariaDB/Redis harness: throwaway databases on the shared test server, a
//! private `redis-server`, a private MariaDB, and the queries tests read rows with.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::util::{closed_port, is_root, signal, TempDir};

/// The MariaDB server tests use: `PARLEY_TEST_MYSQL` (scripts/test.sh sets it to its
/// `parley` account) or root with no password on 127.0.0.1.
pub fn mysql_server() -> String {
    std::env::var("PARLEY_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A database URL with a fresh `parley_test_<uuid>` name.
pub fn fresh_db_url() -> String {
    format!(
        "{}/parley_test_{}",
        mysql_server(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A database on the shared test server (`PARLEY_TEST_MYSQL`), dropped on drop.
pub struct TestDb {
    pub url: String,
}

impl TestDb {
    pub fn fresh() -> TestDb {
        TestDb {
            url: fresh_db_url(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database_blocking(self.url.clone());
    }
}

/// Drops a test database from a synchronous context (a `Drop`): there is no async
/// drop, so a short-lived runtime on its own thread does it.
pub fn drop_database_blocking(url: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // Twice: a connection killed in the first round may have been replaced.
            for _ in 0..2 {
                match drop_test_database(&url).await {
                    Ok(()) => return,
                    Err(e) => eprintln!("could not drop test database {url}: {e}"),
                }
            }
        })
    })
    .join();
}

/// Drops the database of `url` after killing the connections still using it. A
/// connection left inside a transaction (seen once in CI, with the test itself
/// passed) holds a metadata lock that DROP DATABASE would otherwise wait on for
/// `lock_wait_timeout` — a year by default — and the test would hang in its drop.
async fn drop_test_database(url: &str) -> Result<(), mysql_async::Error> {
    let Some((server, name)) = url.rsplit_once('/') else {
        return Ok(());
    };
    let name = name.split('?').next().unwrap_or_default();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Ok(());
    }
    let mut c = mysql_async::Conn::from_url(format!("{server}/")).await?;
    c.query_drop("SET SESSION lock_wait_timeout = 20").await?;
    let ids: Vec<u64> = c
        .exec(
            "SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()",
            (name,),
        )
        .await?;
    for id in ids {
        // Gone already is fine.
        let _ = c.query_drop(format!("KILL {id}")).await;
    }
    let dropped = c
        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await;
    let _ = c.disconnect().await;
    dropped
}

/// A connection to `url`, retried for 30 s (the server may be restarting).
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

/// One row of `messages` as the reconciler sees it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: u64,
    pub chat_id: u64,
    pub sender_id: u64,
    pub client_id: String,
    pub content: String,
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

/// The first column of the first row of `sql` (a `COUNT(*)`), 0 for none.
pub async fn count(url: &str, sql: &str) -> u64 {
    let mut c = mysql(url).await;
    let n: Option<u64> = c.query_first(sql).await.unwrap();
    let _ = c.disconnect().await;
    n.unwrap_or(0)
}

// ------------------------------------------------------------------ redis

/// A private redis-server on a free loopback port; stopped on drop. Private, so tests
/// never share (or flush) the machine's Redis.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(closed_port())
    }

    pub fn start_on(port: u16) -> Redis {
        let mut r = Redis { port, child: None };
        r.launch();
        r
    }

    /// Starts (again) on the same port.
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
            .expect("redis-server is installed (scripts/services.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
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
