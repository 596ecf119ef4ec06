//! systemd/parley.service and parley@.service: `systemd-analyze verify` accepts them
//! with every hardening directive as shipped.

use std::path::Path;
use std::process::Command;

use crate::support::{output_text, repo, tool, write_executable, TempDir, PARLEY_BIN};

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
