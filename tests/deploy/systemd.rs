//! systemd/parley.service and parley@.service: `systemd-analyze verify` accepts them
//! with every hardening directive as shipped, and the server works under its syscall
//! filter with its hashing threads at idle priority.

use std::path::Path;
use std::process::Command;

use crate::support::{output_text, repo, tool, write_executable, TempDir, PARLEY_BIN};
use parley_testkit::binary::Parley;
use parley_testkit::db::TestDb;

/// Directives the unit must carry, exactly as written.
const REQUIRED: &[&str] = &[
    "Type=notify",
    "NotifyAccess=main",
    "User=parley",
    "Group=parley",
    "EnvironmentFile=/etc/parley/parley.env",
    "Environment=PARLEY__LOG__FORMAT=json",
    "WorkingDirectory=/var/lib/parley",
    "TimeoutStartSec=90",
    "Restart=on-failure",
    "RestartSec=2",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=30",
    "LimitNOFILE=1048576",
    "UMask=0027",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ReadWritePaths=/var/lib/parley/uploads",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged @resources",
    // The hashing threads' SCHED_IDLE / nice 19 (see the filter tests below).
    "SystemCallFilter=sched_setscheduler setpriority",
    "SystemCallArchitectures=native",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "WantedBy=multi-user.target",
];

fn lines(unit: &str) -> Vec<&str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect()
}

fn assert_required(unit: &str, name: &str) {
    let l = lines(unit);
    for d in REQUIRED {
        assert!(l.contains(d), "{name} lacks `{d}`");
    }
    // ReadWritePaths: the uploads only, once.
    let rw: Vec<_> = l
        .iter()
        .filter(|x| x.starts_with("ReadWritePaths="))
        .collect();
    assert_eq!(rw, [&"ReadWritePaths=/var/lib/parley/uploads"], "{name}");
    assert!(
        !l.iter().any(|x| x.starts_with("ExecStartPost=")),
        "{name}: notify, no ExecStartPost"
    );
}

/// `systemd-analyze verify` on a copy whose ExecStart points at the built binary (it
/// checks that the program exists); everything else unchanged. User=parley needs no
/// account for verify: systemd resolves users when it starts the service.
fn verify(dir: &Path, file_name: &str, unit: &str) {
    let unit = unit.replace("/opt/parley/current/parley", PARLEY_BIN);
    let path = dir.join(file_name);
    std::fs::write(&path, &unit).unwrap();
    let out = Command::new(tool("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    // verify exits 0 on unknown keys and bad values, and only warns: nothing may be said.
    assert!(out.status.success(), "{file_name}: {}", output_text(&out));
    assert!(
        out.stderr.is_empty() && out.stdout.is_empty(),
        "{file_name}: {}",
        output_text(&out)
    );

    let out = Command::new(tool("systemd-analyze", "systemd"))
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{file_name}: {}", output_text(&out));
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level: {text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable: {line}"));
    assert!(score <= 2.0, "{file_name}: exposure {score} ({line})");
}

#[test]
fn the_unit_verifies_with_every_hardening_directive() {
    let unit = std::fs::read_to_string(repo().join("systemd/parley.service")).unwrap();
    assert_required(&unit, "parley.service");
    assert!(lines(&unit)
        .contains(&"ExecStart=/opt/parley/current/parley --config /etc/parley/parley.toml serve"));
    let dir = TempDir::new("systemd");
    verify(dir.path(), "parley.service", &unit);

    // verify is not a rubber stamp: a typo and a bad value are reported.
    let broken = unit.replace("ProtectSystem=strict", "ProtectSystm=strict")
        + "\n[Service]\nSystemCallFilter=@no-such-group\n";
    let path = dir.join("broken.service");
    std::fs::write(
        &path,
        broken.replace("/opt/parley/current/parley", PARLEY_BIN),
    )
    .unwrap();
    let out = Command::new(tool("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ProtectSystm") && err.contains("@no-such-group"),
        "{err}"
    );
}

#[test]
fn the_template_verifies_and_derives_port_and_metrics_from_the_instance() {
    let unit = std::fs::read_to_string(repo().join("systemd/parley@.service")).unwrap();
    assert_required(&unit, "parley@.service");
    assert!(lines(&unit).contains(&"Environment=PARLEY__SERVER__PORT=%i"));
    let dir = TempDir::new("systemd-template");
    verify(dir.path(), "parley@30002.service", &unit);

    // Run the ExecStart command line as systemd would (specifiers and $$ resolved),
    // with a stand-in for the binary that prints what it got.
    let exec = lines(&unit)
        .into_iter()
        .find_map(|l| l.strip_prefix("ExecStart=/bin/sh -c '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("ExecStart=/bin/sh -c '…'")
        .to_string();
    let fake = dir.join("parley");
    write_executable(
        &fake,
        "#!/bin/sh\necho \"port=$PARLEY__SERVER__PORT metrics=${PARLEY__METRICS__LISTEN-unset} args=$*\"\n",
    );
    let script = exec
        .replace("%i", "30002")
        .replace("$$", "$")
        .replace("/opt/parley/current/parley", &fake.display().to_string());
    let run = |metrics: Option<&str>| {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(&script)
            .env("PARLEY__SERVER__PORT", "30002");
        match metrics {
            Some(m) => c.env("PARLEY__METRICS__LISTEN", m),
            None => c.env_remove("PARLEY__METRICS__LISTEN"),
        };
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run(None).trim(),
        "port=30002 metrics=127.0.0.1:30003 args=--config /etc/parley/parley.toml serve"
    );
    // An explicit setting (a drop-in, parley.env) wins; empty disables metrics.
    assert!(run(Some("")).contains("metrics= args="));
    assert!(run(Some("127.0.0.1:39999")).contains("metrics=127.0.0.1:39999 "));
}

#[test]
fn the_unit_and_the_template_agree_on_everything_but_the_instance() {
    let a = std::fs::read_to_string(repo().join("systemd/parley.service")).unwrap();
    let b = std::fs::read_to_string(repo().join("systemd/parley@.service")).unwrap();
    let strip = |s: &str, template: bool| -> Vec<String> {
        lines(s)
            .into_iter()
            .filter(|l| !l.is_empty())
            .filter(|l| !l.starts_with("ExecStart=") && !l.starts_with("Description="))
            .filter(|l| !(template && *l == "Environment=PARLEY__SERVER__PORT=%i"))
            .map(String::from)
            .collect()
    };
    assert_eq!(strip(&a, false), strip(&b, true));
}

// ---------------------------------------------------------------- the syscall filter
//
// No systemd runs as PID 1 in the test container, so the unit cannot be started for
// real. What matters for the hashing threads is its seccomp filter: these tests
// compute the allowed system calls from the unit's SystemCallFilter= lines the way
// systemd does (the first line decides allow- or deny-list, later lines add or
// remove in order; an allow-list always includes @default; groups as
// `systemd-analyze syscall-filter` lists them), install exactly that as a seccomp
// filter (refused calls fail with EPERM, SystemCallErrorNumber=EPERM) with
// no_new_privs (NoNewPrivileges=yes), and run the real binary under it.

/// `systemd-analyze syscall-filter`: group name → members (names and @groups).
fn syscall_groups() -> std::collections::HashMap<String, Vec<String>> {
    let out = Command::new(tool("systemd-analyze", "systemd"))
        .args(["syscall-filter", "--no-pager"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let mut groups = std::collections::HashMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_string());
            groups.insert(line.trim().to_string(), Vec::new());
        } else if line.trim().is_empty() || !line.starts_with(' ') {
            current = None;
        } else if let Some(g) = &current {
            let item = line.trim();
            if !item.starts_with('#') {
                groups.get_mut(g).unwrap().push(item.to_string());
            }
        }
    }
    assert!(groups.contains_key("@system-service") && groups.contains_key("@resources"));
    groups
}

fn expand(
    item: &str,
    groups: &std::collections::HashMap<String, Vec<String>>,
    out: &mut std::collections::BTreeSet<String>,
) {
    match groups.get(item) {
        Some(members) => {
            for m in members {
                expand(m, groups, out);
            }
        }
        None => {
            assert!(!item.starts_with('@'), "unknown group {item}");
            out.insert(item.to_string());
        }
    }
}

/// The system calls a unit allows, by name.
fn allowed_syscalls(unit: &str) -> std::collections::BTreeSet<String> {
    let groups = syscall_groups();
    let mut allowed = std::collections::BTreeSet::new();
    let mut allow_list: Option<bool> = None;
    for line in lines(unit) {
        let Some(spec) = line.strip_prefix("SystemCallFilter=") else {
            continue;
        };
        let (deny, names) = match spec.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let mut set = std::collections::BTreeSet::new();
        for n in names.split_whitespace() {
            expand(n, &groups, &mut set);
        }
        match allow_list {
            None => {
                assert!(!deny, "the unit's filter starts as an allow-list");
                allow_list = Some(true);
                expand("@default", &groups, &mut allowed);
                allowed.extend(set);
            }
            Some(_) if deny => allowed.retain(|s| !set.contains(s)),
            Some(_) => allowed.extend(set),
        }
    }
    allowed
}

/// Name → number on this machine (x86_64), from the kernel headers.
fn syscall_numbers() -> std::collections::HashMap<String, u32> {
    let header = Path::new("/usr/include/x86_64-linux-gnu/asm/unistd_64.h");
    let text = std::fs::read_to_string(header)
        .unwrap_or_else(|e| panic!("{}: {e} (apt-get install linux-libc-dev)", header.display()));
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("#define __NR_")?;
            let mut it = rest.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// A classic-BPF seccomp program: native arch only, these numbers allowed, every
/// other call EPERM.
fn seccomp_program(allowed: &[u32]) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const ALLOW: u32 = 0x7fff_0000;
    const ERRNO_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const X32_BIT: u32 = 0x4000_0000;
    let op = |code, k, jt, jf| libc::sock_filter { code, jt, jf, k };
    let mut p = vec![
        op(LD_W_ABS, 4, 0, 0), // seccomp_data.arch
        op(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        op(RET_K, ERRNO_EPERM, 0, 0),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JGE_K, X32_BIT, 0, 1),
        op(RET_K, ERRNO_EPERM, 0, 0),
    ];
    for &nr in allowed {
        p.push(op(JEQ_K, nr, 0, 1));
        p.push(op(RET_K, ALLOW, 0, 0));
    }
    p.push(op(RET_K, ERRNO_EPERM, 0, 0));
    p
}

/// The real server under a unit's syscall filter; killed on drop, then its database
/// dropped.
struct Filtered {
    p: Parley,
    _db: TestDb,
}

impl Filtered {
    async fn start(unit: &str) -> Filtered {
        use std::os::unix::process::CommandExt;
        let numbers = syscall_numbers();
        let allowed: Vec<u32> = allowed_syscalls(unit)
            .iter()
            .filter_map(|n| numbers.get(n).copied())
            .collect();
        let program = std::sync::Arc::new(seccomp_program(&allowed));
        let db = TestDb::fresh();
        let extra = [
            ("PARLEY__AUTH__HASH_CONCURRENCY", "2".to_string()),
            ("PARLEY__AUTH__HASH_QUEUE", "64".to_string()),
            ("PARLEY__METRICS__LISTEN", String::new()),
            ("PARLEY__LOG__LEVEL", "info".to_string()),
        ];
        let p = Parley::start_with(&db.url, &extra, move |cmd| {
            let program = program.clone();
            // SAFETY: between fork and exec only prctl is called, on a program built
            // before the fork (no allocation, no lock).
            unsafe {
                cmd.pre_exec(move || {
                    let prog = libc::sock_fprog {
                        len: program.len() as u16,
                        filter: program.as_ptr() as *mut libc::sock_filter,
                    };
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                        || libc::prctl(libc::PR_SET_SECCOMP, 2, &prog as *const libc::sock_fprog)
                            != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
        .await;
        Filtered { p, _db: db }
    }

    fn lines(&self) -> Vec<String> {
        self.p.logs()
    }

    fn logged(&self, text: &str) -> bool {
        self.lines().iter().any(|l| l.contains(text))
    }

    /// (policy, nice) of each hashing thread, from /proc (stat fields 41 and 19).
    fn hashing_threads(&self) -> Vec<(u32, i32)> {
        let tasks = format!("/proc/{}/task", self.p.pid());
        let mut out = Vec::new();
        for t in std::fs::read_dir(&tasks).unwrap() {
            let t = t.unwrap().path();
            let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
            if !comm.starts_with("parley-hash-") {
                continue;
            }
            let stat = std::fs::read_to_string(t.join("stat")).unwrap();
            let after: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            out.push((after[38].parse().unwrap(), after[16].parse().unwrap()));
        }
        out
    }
}

const WARNING: &str = "the hashing threads could not take SCHED_IDLE";

#[test]
fn the_units_filter_allows_exactly_the_priority_calls_back() {
    let shipped = std::fs::read_to_string(repo().join("systemd/parley.service")).unwrap();
    let allowed = allowed_syscalls(&shipped);
    let old = shipped.replace("SystemCallFilter=sched_setscheduler setpriority\n", "");
    assert_ne!(old, shipped, "the unit re-allows the two calls on one line");
    let before = allowed_syscalls(&old);
    let added: Vec<&String> = allowed.difference(&before).collect();
    assert_eq!(added, ["sched_setscheduler", "setpriority"]);
    assert!(before.is_subset(&allowed));
    // The rest of @privileged and @resources stays refused, and the calls the server
    // needs for the check and the free-space floor are there.
    for refused in [
        "setrlimit",
        "sched_setattr",
        "sched_setaffinity",
        "mbind",
        "nice",
    ] {
        assert!(!allowed.contains(refused), "{refused} must stay refused");
    }
    for needed in ["sched_getscheduler", "getpriority", "statfs", "gettid"] {
        assert!(allowed.contains(needed), "{needed} is needed");
    }
}

#[actix_web::test]
async fn the_hashing_threads_are_idle_under_the_shipped_filter_and_logins_work() {
    let unit = std::fs::read_to_string(repo().join("systemd/parley.service")).unwrap();
    let p = Filtered::start(&unit).await;
    let threads = p.hashing_threads();

    // A small login storm under the filter: everything hashes, nothing breaks. Ten
    // accounts, four logins each at once (the login delay counts attempts still in
    // progress against their account, so one account's storm would be slowed).
    let base = p.p.base();
    let http = reqwest::Client::new();
    for i in 0..10 {
        let res = http
            .post(format!("{base}/api/auth/register"))
            .json(&serde_json::json!({"email": format!("f{i}@example.com"), "username": format!("filtered{i}"), "password": "a long enough password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
    }
    let t = std::time::Instant::now();
    let statuses = futures_util::future::join_all((0..40).map(|i| {
        http.post(format!("{base}/api/auth/login"))
            .json(&serde_json::json!({"email": format!("filtered{}", i % 10), "password": "a long enough password"}))
            .send()
    }))
    .await;
    let storm = t.elapsed();
    let ok = statuses
        .iter()
        .filter(|r| {
            r.as_ref()
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false)
        })
        .count();
    let threads_after = p.hashing_threads();
    println!(
        "RELIABILITY: case=priority-under-unit-filter filter=shipped hash_threads={} policies={:?} logins_ok={ok}/40 storm={}ms warning={}",
        threads.len(),
        threads,
        storm.as_millis(),
        p.logged(WARNING)
    );
    assert_eq!(threads.len(), 2, "{:?}", p.lines());
    // SCHED_IDLE is policy 5.
    assert!(
        threads.iter().all(|&(policy, _)| policy == 5),
        "{threads:?}"
    );
    assert_eq!(threads_after, threads, "they stay idle while hashing");
    assert!(!p.logged(WARNING), "{:?}", p.lines());
    assert_eq!(ok, 40, "every login of the storm succeeds under the filter");
}

#[actix_web::test]
async fn under_the_old_filter_the_priority_fails_and_the_server_says_so_once() {
    let shipped = std::fs::read_to_string(repo().join("systemd/parley.service")).unwrap();
    let old = shipped.replace("SystemCallFilter=sched_setscheduler setpriority\n", "");
    let p = Filtered::start(&old).await;
    let threads = p.hashing_threads();
    let warnings = p.lines().iter().filter(|l| l.contains(WARNING)).count();
    println!(
        "RELIABILITY: case=priority-under-unit-filter filter=old policies={threads:?} warnings={warnings}"
    );
    assert_eq!(threads.len(), 2);
    // SCHED_OTHER (0) at nice 0: hashing competes with messaging.
    assert!(threads.iter().all(|&t| t == (0, 0)), "{threads:?}");
    assert_eq!(warnings, 1, "{:?}", p.lines());
    // Logged before the server said it listens: at start, not at the first login.
    let lines = p.lines();
    let warn_at = lines.iter().position(|l| l.contains(WARNING)).unwrap();
    let listen_at = lines
        .iter()
        .position(|l| l.contains("parley listening"))
        .unwrap();
    assert!(warn_at < listen_at);
}
