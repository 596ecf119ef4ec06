//! `ha-cluster`: a highly available back end on loopback, to try Parley on or to
//! bench it — a MariaDB Galera cluster (the test kit's [`GaleraCluster`]) and a Redis
//! primary + replica with three Sentinels ([`SentinelSet`]). It prints the settings
//! that point Parley at them, waits for Ctrl-C or SIGTERM, then stops everything and
//! removes the data directories.
//!
//!     cargo run -p parley-testkit --bin ha-cluster -- [--nodes N] [--database NAME]
//!         [--env-file PATH] [--no-galera] [--no-sentinel]
//!
//! Run as root (the `mariadbd` processes then run as `mysql`, like the test harness)
//! or as a user who may run `mariadbd`. The printed lines are `NAME=value`, fit for
//! `env $(grep -v '^#' FILE) parley serve` or a systemd EnvironmentFile.

use std::process::ExitCode;
use std::time::Instant;

use parley_testkit::galera::GaleraCluster;
use parley_testkit::sentinel::SentinelSet;

const USAGE: &str = "usage: ha-cluster [--nodes N] [--database NAME] [--env-file PATH] [--no-galera] [--no-sentinel]

  --nodes N          Galera nodes (default 3; 1 to 9)
  --database NAME    the database name in PARLEY__DATABASE__URLS (default parley;
                     Parley creates it: database.create_if_missing)
  --env-file PATH    also write the settings to PATH (removed again at exit)
  --no-galera        only the Redis primary, replica and Sentinels
  --no-sentinel      only the Galera cluster";

#[derive(Debug, PartialEq)]
struct Args {
    nodes: usize,
    database: String,
    env_file: Option<std::path::PathBuf>,
    galera: bool,
    sentinel: bool,
}

/// The command line, or the message that says what is wrong with it.
fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args {
        nodes: 3,
        database: "parley".into(),
        env_file: None,
        galera: true,
        sentinel: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "-h" | "--help" => return Ok(None),
            "--nodes" => {
                let v = value()?;
                a.nodes = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=9).contains(n))
                    .ok_or_else(|| format!("--nodes: {v:?} is not a number from 1 to 9"))?;
            }
            "--database" => {
                let v = value()?;
                if v.is_empty()
                    || v.len() > 64
                    || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(format!(
                        "--database: {v:?} is not a database name (letters, digits, _)"
                    ));
                }
                a.database = v;
            }
            "--env-file" => a.env_file = Some(value()?.into()),
            "--no-galera" => a.galera = false,
            "--no-sentinel" => a.sentinel = false,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !a.galera && !a.sentinel {
        return Err("--no-galera and --no-sentinel: nothing left to start".into());
    }
    Ok(Some(a))
}

/// What a process needs on `PATH` for each part, checked before anything starts so a
/// missing package is one clear line, not a panic from deep in the harness.
fn missing_tools(a: &Args) -> Vec<String> {
    let mut need: Vec<(&str, &str)> = Vec::new();
    if a.galera {
        need.extend([
            ("mariadbd", "mariadb-server"),
            ("mariadb-install-db", "mariadb-server"),
            ("rsync", "rsync"),
        ]);
        if !std::path::Path::new(parley_testkit::galera::PROVIDER).exists() {
            return vec![format!(
                "{} (package galera-4)",
                parley_testkit::galera::PROVIDER
            )];
        }
    }
    if a.sentinel {
        need.push(("redis-server", "redis-server"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    need.into_iter()
        .filter(|(bin, _)| !std::env::split_paths(&path).any(|d| d.join(bin).is_file()))
        .map(|(bin, pkg)| format!("{bin} (package {pkg})"))
        .collect()
}

async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
        _ = term.recv() => Ok("SIGTERM"),
    }
}

async fn run(a: Args) -> Result<(), String> {
    let missing = missing_tools(&a);
    if !missing.is_empty() {
        return Err(format!("not installed: {}", missing.join(", ")));
    }
    let t = Instant::now();
    eprintln!(
        "ha-cluster: starting{}{} (about 20 s)…",
        if a.galera {
            format!(" {} Galera nodes", a.nodes)
        } else {
            String::new()
        },
        if a.sentinel {
            " + Redis primary, replica and 3 Sentinels"
        } else {
            ""
        }
    );
    // Both at once: Galera's state transfers wait on disk, the Sentinels on gossip.
    let galera = async {
        if a.galera {
            Some(GaleraCluster::start(a.nodes).await)
        } else {
            None
        }
    };
    let sentinel = async {
        if a.sentinel {
            Some(SentinelSet::start().await)
        } else {
            None
        }
    };
    let (galera, sentinel) = tokio::join!(galera, sentinel);

    let mut lines = vec![format!(
        "# ha-cluster, up in {:.1} s; stop it with Ctrl-C or SIGTERM",
        t.elapsed().as_secs_f64()
    )];
    if let Some(g) = &galera {
        for i in 0..g.len() {
            lines.push(format!(
                "# galera node {}: {} (SQL, root without password)",
                i + 1,
                g.addr(i)
            ));
        }
        lines.push(format!(
            "PARLEY__DATABASE__URLS={}",
            g.urls_setting(&a.database)
        ));
    }
    if let Some(s) = &sentinel {
        lines.push(format!(
            "# redis primary: 127.0.0.1:{} (replica and Sentinels follow it)",
            s.primary_port().await
        ));
        lines.push(format!("PARLEY__REDIS__SENTINELS={}", s.sentinels()));
        lines.push(format!("PARLEY__REDIS__MASTER_NAME={}", s.master_name()));
    }
    let text = lines.join("\n") + "\n";
    print!("{text}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    if let Some(p) = &a.env_file {
        std::fs::write(p, &text).map_err(|e| format!("--env-file {}: {e}", p.display()))?;
    }

    let why = wait_for_signal()
        .await
        .map_err(|e| format!("cannot wait for signals: {e}"))?;
    eprintln!("ha-cluster: {why}: stopping and removing the data directories");
    if let Some(p) = &a.env_file {
        let _ = std::fs::remove_file(p);
    }
    // Dropping the harnesses kills every process group and removes the directories.
    drop(galera);
    drop(sentinel);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = match parse(&args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ha-cluster: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ha-cluster: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ha-cluster: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Option<Args>, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        let a = p(&[]).unwrap().unwrap();
        assert_eq!((a.nodes, a.database.as_str()), (3, "parley"));
        assert!(a.galera && a.sentinel && a.env_file.is_none());
        let a = p(&[
            "--nodes",
            "5",
            "--database=bench",
            "--env-file",
            "/tmp/x",
            "--no-sentinel",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.nodes, 5);
        assert_eq!(a.database, "bench");
        assert_eq!(a.env_file.as_deref(), Some(std::path::Path::new("/tmp/x")));
        assert!(a.galera && !a.sentinel);
        assert_eq!(p(&["--help"]).unwrap(), None);
        for (bad, says) in [
            (vec!["--nodes", "0"], "from 1 to 9"),
            (vec!["--nodes", "three"], "from 1 to 9"),
            (vec!["--nodes"], "needs a value"),
            (vec!["--database", "a-b"], "not a database name"),
            (vec!["--no-galera", "--no-sentinel"], "nothing left"),
            (vec!["--bogus"], "unknown argument"),
        ] {
            let e = p(&bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
