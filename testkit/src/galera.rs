//! A private MariaDB Galera cluster on loopback: `n` `mariadbd` processes with their
//! own data directories and ports (SQL, group communication, IST, SST), started,
//! SIGKILLed, restarted (rejoining by IST or SST), partitioned and healed by the test.
//!
//! Node indexes are 0-based: node 0 bootstraps the cluster, the others join it by
//! state transfer (rsync). Root has no password over TCP, as on the shared test server.
//!
//! A partition cuts the node's group communication: `gmcast.isolate=1` makes Galera
//! close every gcomm connection of that node and refuse new ones, so it falls into a
//! non-Primary component of one while its SQL port still answers (with 1047, as a
//! minority behind a real network split does). A loopback TCP proxy in front of the
//! gcomm ports cannot do this: peers learn each other's listen addresses by gossip
//! and connect to them directly, around any proxy named in `wsrep_cluster_address`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::util::{closed_port, is_root, TempDir};

/// The Galera provider library of the `galera-4` package.
pub const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

/// What `wait_synced` and the health checks read: the node's wsrep status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// `wsrep_local_state`: 4 is Synced.
    pub local_state: u32,
    /// `wsrep_ready`.
    pub ready: bool,
    /// `wsrep_cluster_status`: `Primary` or `non-Primary`.
    pub cluster_status: String,
    /// `wsrep_cluster_size`.
    pub cluster_size: u32,
}

impl NodeStatus {
    pub fn synced(&self) -> bool {
        self.local_state == 4 && self.ready && self.cluster_status == "Primary"
    }
}

struct Node {
    dir: PathBuf,
    sql: u16,
    gcomm: u16,
    ist: u16,
    sst: u16,
    child: Option<Child>,
}

/// `n` Galera nodes on loopback; every process killed and every directory removed on
/// drop (also on a panic).
pub struct GaleraCluster {
    nodes: Vec<Node>,
    root: bool,
    /// How long `start` took until every node was Synced.
    pub started_in: Duration,
    // Last: the directories go after the processes are dead.
    _dir: TempDir,
}

impl GaleraCluster {
    /// Starts `n` nodes (at least 1) and waits until all are Synced in one Primary
    /// component (about 1 s for the first node, then each joiner's rsync state
    /// transfer; on 2 cores a 3-node cluster is up in 15–20 s).
    pub async fn start(n: usize) -> GaleraCluster {
        assert!(n >= 1, "a cluster has at least one node");
        let t = Instant::now();
        let dir = TempDir::new("galera");
        let root = is_root();
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let d = dir.join(format!("node{i}"));
                std::fs::create_dir_all(d.join("data")).unwrap();
                Node {
                    dir: d,
                    sql: closed_port(),
                    gcomm: closed_port(),
                    ist: closed_port(),
                    sst: closed_port(),
                    child: None,
                }
            })
            .collect();
        if root {
            chown_mysql(dir.path());
        }
        // Only the first node needs system tables: the joiners receive everything by
        // state transfer, which overwrites their (empty) data directories.
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", nodes[0].dir.join("data").display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .args(SMALL)
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
        let mut c = GaleraCluster {
            nodes,
            root,
            started_in: Duration::ZERO,
            _dir: dir,
        };
        c.spawn(0, true);
        c.wait_synced(0, Duration::from_secs(60)).await;
        // One joiner after the other: two asking for a state transfer at once can
        // leave one aborting ("Will never receive state"), seen here.
        for i in 1..n {
            c.spawn(i, false);
            c.wait_synced(i, Duration::from_secs(120)).await;
        }
        c.started_in = t.elapsed();
        c
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `127.0.0.1:<sql port>` of node `i` (what `/api/ready` names as the writer).
    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].sql)
    }

    /// Node `i`'s URL for database `db`.
    pub fn node_url(&self, i: usize, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.nodes[i].sql)
    }

    /// Every node's URL for `db`, in node order.
    pub fn urls(&self, db: &str) -> Vec<String> {
        (0..self.len()).map(|i| self.node_url(i, db)).collect()
    }

    /// `urls` as `database.urls` takes them from the environment (comma-separated).
    pub fn urls_setting(&self, db: &str) -> String {
        self.urls(db).join(",")
    }

    /// The `gcomm://` address every (re)starting joiner uses: all nodes, itself
    /// included (Galera skips its own address).
    fn cluster_address(&self) -> String {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.gcomm))
            .collect();
        format!("gcomm://{}", peers.join(","))
    }

    fn spawn(&mut self, i: usize, bootstrap: bool) {
        let address = if bootstrap {
            "gcomm://".to_string()
        } else {
            self.cluster_address()
        };
        let n = &self.nodes[i];
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", n.dir.join("data").display()))
            .arg(format!("--port={}", n.sql))
            .arg(format!("--socket={}", n.dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", n.dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", n.dir.join("error.log").display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .args(SMALL)
            // What Galera requires of the server.
            .arg("--binlog-format=ROW")
            .arg("--default-storage-engine=InnoDB")
            .arg("--innodb-autoinc-lock-mode=2")
            // A test cluster trades durability for speed: Galera's synchronous
            // replication is what keeps a committed row.
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--wsrep-on=ON")
            .arg(format!("--wsrep-provider={PROVIDER}"))
            .arg("--wsrep-cluster-name=parley-test")
            .arg(format!("--wsrep-node-name=node{i}"))
            .arg("--wsrep-node-address=127.0.0.1")
            .arg(format!("--wsrep-cluster-address={address}"))
            .arg("--wsrep-sst-method=rsync")
            .arg(format!("--wsrep-sst-receive-address=127.0.0.1:{}", n.sst))
            .arg(format!(
                "--wsrep-provider-options={}",
                [
                    format!("gmcast.listen_addr=tcp://127.0.0.1:{}", n.gcomm),
                    format!("ist.recv_addr=127.0.0.1:{}", n.ist),
                    format!("base_port={}", n.gcomm),
                    "gcache.size=32M".into(),
                    // A dead peer is noticed in seconds, not the default 5–15 s.
                    "evs.keepalive_period=PT0.5S".into(),
                    "evs.inactive_check_period=PT0.5S".into(),
                    "evs.suspect_timeout=PT2S".into(),
                    "evs.inactive_timeout=PT4S".into(),
                    "evs.install_timeout=PT3S".into(),
                ]
                .join(";")
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if bootstrap {
            cmd.arg("--wsrep-new-cluster");
        }
        if self.root {
            cmd.arg("--user=mysql");
        }
        // Its own process group, so a kill takes the state-transfer scripts (rsync)
        // it starts along with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.nodes[i].child = Some(cmd.spawn().expect("mariadbd is installed"));
    }

    /// SIGKILL to node `i` and everything it started (no clean shutdown, no goodbye
    /// to the group: its peers notice by timeout).
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            kill_group(c.id());
            let _ = c.wait();
        }
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Starts node `i` again (after `kill9`) as a joiner of the running cluster: it
    /// catches up by IST from a peer's gcache or by a full rsync SST. Waits until it is
    /// Synced; returns how long that took.
    pub async fn restart(&mut self, i: usize) -> Duration {
        self.kill9(i);
        let t = Instant::now();
        // A SIGKILLed node is marked unsafe to bootstrap; it joins, it does not
        // bootstrap, so that mark stays as it is.
        self.spawn(i, false);
        self.wait_synced(i, Duration::from_secs(120)).await;
        t.elapsed()
    }

    /// Node `i`'s wsrep status, `None` when it does not answer within 2 s.
    pub async fn status(&self, i: usize) -> Option<NodeStatus> {
        let url = format!("mysql://root@127.0.0.1:{}", self.nodes[i].sql);
        let fut = async {
            let mut c = mysql_async::Conn::from_url(url.as_str()).await.ok()?;
            let rows: Vec<(String, String)> = c
                .query(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', \
                     'wsrep_ready', 'wsrep_cluster_status', 'wsrep_cluster_size')",
                )
                .await
                .ok()?;
            let _ = c.disconnect().await;
            let get = |k: &str| {
                rows.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            Some(NodeStatus {
                local_state: get("wsrep_local_state").parse().unwrap_or(0),
                ready: get("wsrep_ready") == "ON",
                cluster_status: get("wsrep_cluster_status"),
                cluster_size: get("wsrep_cluster_size").parse().unwrap_or(0),
            })
        };
        tokio::time::timeout(Duration::from_secs(2), fut)
            .await
            .ok()
            .flatten()
    }

    /// Waits until node `i` is Synced (`wsrep_local_state=4`), ready and in the
    /// Primary component; fails the test with its error log after `timeout`.
    /// Returns how long it took.
    pub async fn wait_synced(&mut self, i: usize, timeout: Duration) -> Duration {
        let t = Instant::now();
        loop {
            if self.status(i).await.is_some_and(|s| s.synced()) {
                return t.elapsed();
            }
            if let Some(c) = self.nodes[i].child.as_mut() {
                if let Some(s) = c.try_wait().unwrap() {
                    self.nodes[i].child = None;
                    panic!("galera node {i} exited ({s}): {}", self.error_log(i));
                }
            }
            assert!(
                t.elapsed() < timeout,
                "galera node {i} not synced within {timeout:?}: {}",
                self.error_log(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Cuts node `i`'s group communication (see the module comment): its peers form
    /// a Primary component without it, and it turns non-Primary (`wsrep_ready=OFF`,
    /// writes and reads answered with 1047) while its SQL port stays open. Waits until
    /// it reports non-Primary.
    pub async fn partition(&self, i: usize) {
        self.isolate(i, 1).await;
        let t = Instant::now();
        while self
            .status(i)
            .await
            .is_none_or(|s| s.cluster_status == "Primary")
        {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "galera node {i} still Primary after its partition"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends node `i`'s partition; it reconnects and catches up by IST. Waits until it
    /// is Synced again.
    pub async fn heal(&mut self, i: usize) -> Duration {
        self.isolate(i, 0).await;
        self.wait_synced(i, Duration::from_secs(60)).await
    }

    async fn isolate(&self, i: usize, on: u8) {
        let mut c =
            crate::db::mysql(&format!("mysql://root@127.0.0.1:{}", self.nodes[i].sql)).await;
        c.query_drop(format!(
            "SET GLOBAL wsrep_provider_options = 'gmcast.isolate={on}'"
        ))
        .await
        .unwrap();
        let _ = c.disconnect().await;
    }

    /// Established gcomm connections node `i`'s process holds now: 0 for a
    /// partitioned node, at least `len() - 1` for a member of the full cluster.
    pub fn gcomm_connections(&self, i: usize) -> usize {
        let Some(pid) = self.nodes[i].child.as_ref().map(Child::id) else {
            return 0;
        };
        let port = self.nodes[i].gcomm;
        let peers: Vec<u16> = self.nodes.iter().map(|n| n.gcomm).collect();
        tcp_sockets_of(pid)
            .into_iter()
            .filter(|s| s.established && (s.local == port || peers.contains(&s.remote)))
            .count()
    }

    /// Node `i`'s error log (for failure messages).
    pub fn error_log(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.nodes[i].dir.join("error.log")).unwrap_or_default();
        // The end is what explains a failure.
        let start = log.len().saturating_sub(6000);
        let start = (start..log.len())
            .find(|&k| log.is_char_boundary(k))
            .unwrap_or(0);
        log[start..].to_string()
    }

    /// Drops database `db` through the first node that answers (replicated to all).
    pub async fn drop_database(&self, db: &str) {
        for i in 0..self.len() {
            if self.nodes[i].child.is_none() {
                continue;
            }
            let url = format!("mysql://root@127.0.0.1:{}", self.nodes[i].sql);
            let Ok(Ok(mut c)) = tokio::time::timeout(
                Duration::from_secs(2),
                mysql_async::Conn::from_url(url.as_str()),
            )
            .await
            else {
                continue;
            };
            let ok = c
                .query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
                .await
                .is_ok();
            let _ = c.disconnect().await;
            if ok {
                return;
            }
        }
    }
}

/// `COUNT(*)` on one node after it has applied everything committed anywhere
/// before the query (`wsrep_sync_wait`): another node's commit is applied here a
/// moment after it returns.
pub async fn causal_count(url: &str, sql: &str) -> u64 {
    let mut c = crate::db::mysql(url).await;
    c.query_drop("SET SESSION wsrep_sync_wait = 1")
        .await
        .unwrap();
    let n: Option<u64> = c.query_first(sql).await.unwrap();
    let _ = c.disconnect().await;
    n.unwrap_or(0)
}

/// Sizes that let three nodes start fast and fit in a small machine's memory.
const SMALL: &[&str] = &[
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=16M",
    "--max-connections=300",
];

impl Drop for GaleraCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

fn chown_mysql(p: &std::path::Path) {
    assert!(Command::new("chown")
        .args(["-R", "mysql:mysql"])
        .arg(p)
        .status()
        .unwrap()
        .success());
}

/// SIGKILL to the process group `pgid` (a child started with `process_group(0)`).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

struct TcpSocket {
    local: u16,
    remote: u16,
    established: bool,
}

/// The IPv4 TCP sockets process `pid` holds (its fds → socket inodes →
/// /proc/net/tcp).
fn tcp_sockets_of(pid: u32) -> Vec<TcpSocket> {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(inode.to_string());
                }
            }
        }
    }
    let port = |f: &str| u16::from_str_radix(f.rsplit(':').next()?, 16).ok();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    tcp.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            inodes.contains(*f.get(9)?).then_some(TcpSocket {
                local: port(f.get(1)?)?,
                remote: port(f.get(2)?)?,
                // 01 is ESTABLISHED.
                established: *f.get(3)? == "01",
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: three nodes come up Synced, a write on one is read on the
    /// others, a partitioned node turns non-Primary and refuses work while the other
    /// two go on, heals, and a SIGKILLed node rejoins.
    #[tokio::test]
    async fn a_three_node_cluster_replicates_partitions_and_rejoins() {
        let mut c = GaleraCluster::start(3).await;
        println!("galera: 3 nodes synced in {:?}", c.started_in);
        let mut n0 = crate::db::mysql(&c.node_url(0, "")).await;
        n0.query_drop("CREATE DATABASE kit").await.unwrap();
        n0.query_drop("CREATE TABLE kit.t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
            .await
            .unwrap();
        n0.query_drop("INSERT INTO kit.t (v) VALUES (1)")
            .await
            .unwrap();
        drop(n0);
        let urls = c.urls("kit");
        let count = |i: usize| {
            let url = urls[i].clone();
            async move { causal_count(&url, "SELECT COUNT(*) FROM t").await }
        };
        assert_eq!(count(1).await, 1);
        assert_eq!(count(2).await, 1);

        c.partition(2).await;
        assert_eq!(
            c.gcomm_connections(2),
            0,
            "a partitioned node talks to no peer"
        );
        let s = c.status(2).await.expect("its SQL port still answers");
        assert!(!s.ready && s.cluster_status != "Primary", "{s:?}");
        let mut n2 = crate::db::mysql(&c.node_url(2, "kit")).await;
        let refused = n2.query_drop("INSERT INTO t (v) VALUES (2)").await;
        assert!(
            matches!(&refused, Err(mysql_async::Error::Server(e)) if e.code == 1047),
            "{refused:?}"
        );
        drop(n2);
        let mut n1 = crate::db::mysql(&c.node_url(1, "kit")).await;
        n1.query_drop("INSERT INTO t (v) VALUES (3)").await.unwrap();
        drop(n1);
        assert_eq!(c.status(0).await.unwrap().cluster_size, 2);
        c.heal(2).await;
        assert_eq!(count(2).await, 2, "the healed node caught up");

        c.kill9(0);
        assert!(c.status(0).await.is_none());
        let mut n1 = crate::db::mysql(&c.node_url(1, "kit")).await;
        n1.query_drop("INSERT INTO t (v) VALUES (4)").await.unwrap();
        drop(n1);
        let took = c.restart(0).await;
        println!("galera: node 0 rejoined in {took:?}");
        assert_eq!(count(0).await, 3, "the restarted node caught up");
        assert_eq!(c.status(0).await.unwrap().cluster_size, 3);
        c.drop_database("kit").await;
        assert_eq!(
            causal_count(
                &c.node_url(1, ""),
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'kit'"
            )
            .await,
            0
        );
    }
}
