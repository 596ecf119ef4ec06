//! `ha-cluster` for real: it starts a 3-node Galera cluster and a Sentinel set, prints
//! settings that reach them, and on SIGTERM stops everything and removes its files.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use parley_testkit::util::{signal, TempDir};

/// The running binary; SIGKILLed on drop if the test did not stop it (a panic).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SIGTERM first: the binary's own cleanup kills the cluster's processes.
            // (Not `signal`, which asserts: this may run during a panic.)
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.0.id().to_string())
                .status();
            for _ in 0..300 {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ha_cluster_prints_working_settings_and_cleans_up() {
    let dir = TempDir::new("ha-cluster");
    let env_file = dir.join("ha.env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ha-cluster"))
        .args(["--database", "ha_bin_test", "--env-file"])
        .arg(&env_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut settings = std::collections::BTreeMap::new();
    while settings.len() < 3 {
        let line = rx
            .recv_timeout(Duration::from_secs(180))
            .expect("ha-cluster prints its settings within 3 minutes");
        if let Some((k, v)) = line.split_once('=') {
            if !line.starts_with('#') {
                settings.insert(k.to_string(), v.to_string());
            }
        }
    }
    let urls: Vec<&str> = settings["PARLEY__DATABASE__URLS"].split(',').collect();
    assert_eq!(urls.len(), 3, "{settings:?}");
    assert!(urls.iter().all(|u| u.ends_with("/ha_bin_test")), "{urls:?}");
    assert_eq!(settings["PARLEY__REDIS__MASTER_NAME"], "parley");
    let file = std::fs::read_to_string(&env_file).unwrap();
    for (k, v) in &settings {
        assert!(file.contains(&format!("{k}={v}\n")), "{file}");
    }

    // Every node is a Synced member of one 3-node cluster.
    let mut ports = Vec::new();
    for u in &urls {
        let server = u.rsplit_once('/').unwrap().0;
        ports.push(server.rsplit_once(':').unwrap().1.parse::<u16>().unwrap());
        let mut c = mysql_async::Conn::from_url(format!("{server}/"))
            .await
            .unwrap();
        let size: Option<(String, String)> = c
            .query_first("SHOW STATUS LIKE 'wsrep_cluster_size'")
            .await
            .unwrap();
        assert_eq!(size.unwrap().1, "3", "{u}");
        let state: Option<(String, String)> = c
            .query_first("SHOW STATUS LIKE 'wsrep_local_state_comment'")
            .await
            .unwrap();
        assert_eq!(state.unwrap().1, "Synced", "{u}");
        c.disconnect().await.unwrap();
    }
    // Each Sentinel names the same primary, and that primary answers.
    let mut primaries = std::collections::BTreeSet::new();
    for s in settings["PARLEY__REDIS__SENTINELS"].split(',') {
        let client = redis::Client::open(format!("redis://{s}")).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("parley")
            .query_async(&mut c)
            .await
            .unwrap();
        primaries.insert(format!("{}:{}", addr[0], addr[1]));
    }
    assert_eq!(primaries.len(), 1, "{primaries:?}");
    let primary = primaries.into_iter().next().unwrap();
    let client = redis::Client::open(format!("redis://{primary}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await.unwrap();
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec())),
        "{role:?}"
    );
    drop(c);

    // SIGTERM: exit 0, the env file gone, no node answering any more.
    let mut running = running;
    signal(running.0.id(), "TERM");
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = running.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.expect("ha-cluster exits within 30 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(!env_file.exists(), "the env file is removed");
    for p in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_err(),
            "galera node on {p} still answers"
        );
    }
}
