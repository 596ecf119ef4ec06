//! A Redis primary, one replica and three Sentinels on free loopback ports: the
//! Redis half of a highly available set-up, as the failover cases start it.
//!
//! Every process has a private directory and config file (Sentinel rewrites its own
//! config, and rewrites a data node's when it reconfigures it), nothing is persisted
//! (`save ""`, no AOF: a restarted node comes back empty, as after a crash with no
//! disk), and Sentinel decides quickly: a primary silent for
//! [`DOWN_AFTER_MS`] is subjectively down, two Sentinels agreeing make it
//! objectively down, and the one elected promotes the replica. Drop kills them all
//! (also when a test panics).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{closed_port, TempDir};

/// The master name the Sentinels monitor.
pub const MASTER_NAME: &str = "parley";
/// Sentinel's `down-after-milliseconds`: how long a silent primary takes to count as down.
pub const DOWN_AFTER_MS: u64 = 1000;
/// Sentinel's `failover-timeout` (a failover that stalls is retried after twice this).
pub const FAILOVER_TIMEOUT_MS: u64 = 3000;

struct Proc {
    port: u16,
    conf: std::path::PathBuf,
    sentinel: bool,
    child: Option<Child>,
}

impl Proc {
    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg(&self.conf);
        if self.sentinel {
            cmd.arg("--sentinel");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server {} did not start",
                self.conf.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `Child::kill` is SIGKILL: no shutdown, no goodbye to replicas or Sentinels.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// See the module docs.
pub struct SentinelSet {
    dir: TempDir,
    data: Vec<Proc>,
    sentinels: Vec<Proc>,
    /// The primary the set started with, or the one last killed by [`Self::kill9_primary`].
    last_killed: Option<u16>,
}

impl SentinelSet {
    /// Starts the primary, its replica and three Sentinels, and returns once every
    /// Sentinel knows the replica and the two other Sentinels (before that a failover
    /// could not gather its quorum).
    pub async fn start() -> SentinelSet {
        let dir = TempDir::new("sentinel");
        let primary = closed_port();
        let replica = closed_port();
        let mut set = SentinelSet {
            data: Vec::new(),
            sentinels: Vec::new(),
            last_killed: None,
            dir,
        };
        for (port, replica_of) in [(primary, None), (replica, Some(primary))] {
            let p = set.data_conf(port, replica_of);
            set.data.push(p);
        }
        for _ in 0..3 {
            let p = set.sentinel_conf(closed_port(), primary);
            set.sentinels.push(p);
        }
        for p in set.data.iter_mut().chain(set.sentinels.iter_mut()) {
            p.launch();
        }
        set.wait_formed(Duration::from_secs(30)).await;
        set
    }

    fn data_conf(&self, port: u16, replica_of: Option<u16>) -> Proc {
        let node_dir = self.dir.join(format!("redis-{port}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\nlogfile {}\n",
            node_dir.display(),
            node_dir.join("log").display()
        );
        if let Some(p) = replica_of {
            conf.push_str(&format!("replicaof 127.0.0.1 {p}\n"));
        }
        let path = node_dir.join("redis.conf");
        std::fs::write(&path, conf).unwrap();
        Proc {
            port,
            conf: path,
            sentinel: false,
            child: None,
        }
    }

    fn sentinel_conf(&self, port: u16, primary: u16) -> Proc {
        let node_dir = self.dir.join(format!("sentinel-{port}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {m} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {m} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {m} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {m} 1\n",
            m = MASTER_NAME,
            dir = node_dir.display(),
            log = node_dir.join("log").display(),
        );
        let path = node_dir.join("sentinel.conf");
        std::fs::write(&path, conf).unwrap();
        Proc {
            port,
            conf: path,
            sentinel: true,
            child: None,
        }
    }

    /// The Sentinels' addresses as `redis.sentinels` takes them: `"h:p,h:p,h:p"`.
    pub fn sentinels(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The name the Sentinels monitor the primary under (`redis.master_name`).
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The ports of the two data nodes (primary and replica, in either role).
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|p| p.port).collect()
    }

    /// The primary's port as a Sentinel names it (the first that answers).
    pub async fn primary_port(&self) -> u16 {
        for s in &self.sentinels {
            if let Some((port, _)) = master_of(s.port).await {
                return port;
            }
        }
        panic!("no Sentinel answered SENTINEL get-master-addr-by-name");
    }

    /// kill -9 of the current primary; returns its port (for [`Self::restart`]).
    pub async fn kill9_primary(&mut self) -> u16 {
        let port = self.primary_port().await;
        let p = self
            .data
            .iter_mut()
            .find(|p| p.port == port)
            .expect("the primary is one of ours");
        p.kill9();
        self.last_killed = Some(port);
        port
    }

    /// Waits until every Sentinel names a primary other than the one last killed and
    /// that node says it is a primary (`ROLE`); returns its port.
    pub async fn wait_promoted(&self, timeout: Duration) -> u16 {
        let old = self.last_killed.expect("kill9_primary first");
        let t = Instant::now();
        loop {
            let mut named = Vec::new();
            for s in &self.sentinels {
                named.push(master_of(s.port).await.map(|(p, _)| p));
            }
            if let Some(Some(new)) = named.first().copied() {
                if new != old
                    && named.iter().all(|n| *n == Some(new))
                    && role(new).await.as_deref() == Some("master")
                {
                    return new;
                }
            }
            assert!(
                t.elapsed() < timeout,
                "no promotion within {timeout:?}: Sentinels name {named:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a killed data node again on its port, with the config it had. It comes
    /// back empty and calling itself a primary; returns once the Sentinels have turned
    /// it into a replica of the current primary and it has synced.
    pub async fn restart(&mut self, old: u16) {
        let p = self
            .data
            .iter_mut()
            .find(|p| p.port == old)
            .expect("a data node of this set");
        assert!(p.child.is_none(), "{old} is still running");
        p.launch();
        let t = Instant::now();
        let limit = Duration::from_secs(30);
        loop {
            let primary = self.primary_port().await;
            if primary != old && replica_synced_to(old, primary).await {
                return;
            }
            assert!(
                t.elapsed() < limit,
                "{old} did not come back as a replica within {limit:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_formed(&self, limit: Duration) {
        let t = Instant::now();
        loop {
            let mut formed = true;
            for s in &self.sentinels {
                let Some(info) = sentinel_master(s.port).await else {
                    formed = false;
                    break;
                };
                let field = |k: &str| {
                    info.iter()
                        .position(|x| x == k)
                        .and_then(|i| info.get(i + 1))
                        .and_then(|v| v.parse::<u32>().ok())
                        .unwrap_or(0)
                };
                if field("num-slaves") < 1 || field("num-other-sentinels") < 2 {
                    formed = false;
                    break;
                }
            }
            if formed {
                return;
            }
            assert!(
                t.elapsed() < limit,
                "the Sentinels did not find the replica and each other within {limit:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tail of every process's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in self.data.iter().chain(&self.sentinels) {
            let log = p.conf.with_file_name("log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!("--- {}\n{}\n", log.display(), tail.join("\n")));
        }
        out
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for p in self.data.iter_mut().chain(self.sentinels.iter_mut()) {
            p.kill9();
        }
    }
}

async fn connect(port: u16) -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()
}

/// What one Sentinel names as the primary (`SENTINEL get-master-addr-by-name`).
async fn master_of(sentinel: u16) -> Option<(u16, String)> {
    let mut c = connect(sentinel).await?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(MASTER_NAME)
        .query_async(&mut c)
        .await
        .ok()?;
    addr.map(|(host, port)| (port, host))
}

/// `SENTINEL master <name>` as a flat field/value list.
async fn sentinel_master(sentinel: u16) -> Option<Vec<String>> {
    let mut c = connect(sentinel).await?;
    redis::cmd("SENTINEL")
        .arg("master")
        .arg(MASTER_NAME)
        .query_async(&mut c)
        .await
        .ok()
}

/// `role:` of `INFO replication` (`master` or `slave`).
async fn role(port: u16) -> Option<String> {
    let info = info_replication(port).await?;
    field(&info, "role")
}

async fn replica_synced_to(port: u16, primary: u16) -> bool {
    let Some(info) = info_replication(port).await else {
        return false;
    };
    field(&info, "role").as_deref() == Some("slave")
        && field(&info, "master_port").as_deref() == Some(primary.to_string().as_str())
        && field(&info, "master_link_status").as_deref() == Some("up")
}

async fn info_replication(port: u16) -> Option<String> {
    let mut c = connect(port).await?;
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
        .ok()
}

fn field(info: &str, key: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}
