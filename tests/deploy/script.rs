//! deploy.sh into a temporary prefix (no systemd; `--run` starts the server): install,
//! upgrade, rollback, status, and the automatic rollback of a release that is not ready.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::fresh_db_url;
use crate::support::{
    free_port, mode_of, output_text, repo, write_executable, TempDir, PARLEY_BIN,
};

/// One installation under a temporary prefix; stops its server and drops its
/// database when dropped.
struct Deployment {
    prefix: TempDir,
    port: u16,
    db_url: String,
}

impl Deployment {
    fn new() -> Deployment {
        Deployment {
            prefix: TempDir::new("script"),
            port: free_port(),
            db_url: fresh_db_url(),
        }
    }

    /// `deploy.sh <args> --prefix <prefix>` with only what the test sets in PARLEY__*.
    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new("bash");
        c.arg(repo().join("deploy.sh"))
            .args(args)
            .arg("--prefix")
            .arg(self.prefix.path())
            .current_dir(repo());
        for (k, _) in std::env::vars() {
            if k.starts_with("PARLEY") || k == "DESTDIR" {
                c.env_remove(k);
            }
        }
        c.env("PARLEY__SERVER__PORT", self.port.to_string())
            .env("PARLEY__METRICS__LISTEN", "")
            .env("PARLEY__AUTH__PBKDF2_ITERATIONS", "1000")
            .env("PARLEY__LOG__LEVEL", "info");
        c.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "deploy.sh {args:?}: {}",
            output_text(&out)
        );
        out
    }

    fn opt(&self) -> PathBuf {
        self.prefix.join("opt/parley")
    }

    fn etc(&self) -> PathBuf {
        self.prefix.join("etc/parley")
    }

    fn link(&self, name: &str) -> Option<String> {
        let t = std::fs::read_link(self.opt().join(name)).ok()?;
        let t = t.to_string_lossy().into_owned();
        Some(
            t.strip_prefix("releases/")
                .expect("relative link")
                .to_string(),
        )
    }

    fn releases(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.opt().join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    fn secret(&self) -> String {
        let env = std::fs::read_to_string(self.etc().join("parley.env")).unwrap();
        let secrets: Vec<&str> = env
            .lines()
            .filter_map(|l| l.strip_prefix("PARLEY__AUTH__JWT_SECRET="))
            .collect();
        assert_eq!(secrets.len(), 1, "{env}");
        secrets[0].to_string()
    }

    /// The pid deploy.sh recorded, and the release its executable lives in.
    fn running_release(&self) -> String {
        let pid = std::fs::read_to_string(self.prefix.join("var/lib/parley/parley.pid")).unwrap();
        let exe = std::fs::read_link(format!("/proc/{}/exe", pid.trim())).unwrap();
        let release = exe.parent().unwrap();
        assert_eq!(release.parent().unwrap(), self.opt().join("releases"));
        release.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// The Web Push public key the running server hands out (deploy.sh writes a
    /// VAPID key into parley.env on install).
    async fn vapid_public_key(&self) -> String {
        let r = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/api/push/vapid-public-key",
                self.port
            ))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(r.status(), StatusCode::OK, "push is on after install");
        let body: serde_json::Value = r.json().await.expect("JSON");
        body["publicKey"].as_str().expect("publicKey").to_string()
    }

    async fn ready(&self) -> StatusCode {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/ready", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map(|r| r.status())
            .unwrap_or(StatusCode::BAD_GATEWAY)
    }

    /// The files every release and the installation must have.
    fn assert_layout(&self, release: &str) {
        let r = self.opt().join("releases").join(release);
        assert!(mode_of(&r.join("parley")) & 0o111 != 0, "binary executable");
        let index = std::fs::read(r.join("static/index.html")).unwrap();
        assert_eq!(
            index,
            std::fs::read(repo().join("static/index.html")).unwrap()
        );
        assert!(r.join("static/js/main.js").is_file());
        let shipped: BTreeSet<_> = std::fs::read_dir(repo().join("migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let copied: BTreeSet<_> = std::fs::read_dir(r.join("migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!shipped.is_empty());
        assert_eq!(copied, shipped, "migrations");
        let manifest = std::fs::read_to_string(r.join("RELEASE")).unwrap();
        assert!(
            manifest.contains(&format!("release={release}")),
            "{manifest}"
        );

        let env = self.etc().join("parley.env");
        assert_eq!(mode_of(&env), 0o640, "parley.env mode");
        let secret = self.secret();
        assert_eq!(secret.len(), 64, "{secret}");
        assert!(secret.chars().all(|c| c.is_ascii_hexdigit()), "{secret}");

        let p = self.prefix.path().display().to_string();
        let toml = std::fs::read_to_string(self.etc().join("parley.toml")).unwrap();
        for line in [
            "[server]".to_string(),
            "port = 30000".to_string(),
            format!("uploads_dir = \"{p}/var/lib/parley/uploads\""),
            format!("dir = \"{p}/opt/parley/current/static\""),
            "x_accel_prefix = \"/_parley_audio/\"".to_string(),
            "x_accel_media_prefix = \"/_parley_media/\"".to_string(),
            // A production install is invite-only (README, "Operating a community").
            "registration = \"invite\"".to_string(),
            "[metrics]".to_string(),
        ] {
            assert!(
                toml.lines().any(|l| l.starts_with(&line)),
                "parley.toml lacks {line}:\n{toml}"
            );
        }
        let unit =
            std::fs::read_to_string(self.prefix.join("etc/systemd/system/parley.service")).unwrap();
        assert!(unit.contains(&format!(
            "ExecStart={p}/opt/parley/current/parley --config {p}/etc/parley/parley.toml serve"
        )));
        assert!(unit.contains(&format!("ReadWritePaths={p}/var/lib/parley/uploads")));
        assert!(self
            .prefix
            .join("etc/systemd/system/parley@.service")
            .is_file());
        let site = std::fs::read_to_string(self.prefix.join("etc/nginx/sites-enabled/parley.conf"))
            .expect("sites-enabled/parley.conf links to the site");
        assert!(site.contains(&format!("root {p}/opt/parley/current/static;")));
        assert!(site.contains(&format!("alias {p}/var/lib/parley/uploads/audio/;")));
        assert!(site.contains(&format!("alias {p}/var/lib/parley/uploads/media/;")));
        assert!(self.prefix.join("var/lib/parley/uploads/audio").is_dir());
        assert!(self
            .prefix
            .join("var/lib/parley/uploads/media/thumbs")
            .is_dir());
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = self.run(&["stop", "--no-systemd"]);
        parley_testkit::db::drop_database_blocking(self.db_url.clone());
    }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[actix_web::test]
async fn install_upgrade_rollback_and_an_automatic_rollback() {
    let d = Deployment::new();
    let bin = ["--binary", PARLEY_BIN];
    let run = ["--no-systemd", "--run", "--timeout", "30"];
    let args = |extra: &[&str]| -> Vec<String> {
        bin.iter()
            .chain(run.iter())
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };

    // upgrade before install is an error that changes nothing.
    let out = d.run(&refs(&[vec!["upgrade".to_string()], args(&[])].concat()));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run install first"));

    // install: one release, current, no previous, a fresh secret, ready.
    let a = [
        vec!["install".to_string()],
        args(&["--database-url", &d.db_url]),
    ]
    .concat();
    d.ok(&refs(&a));
    let r1 = d.link("current").expect("current");
    assert_eq!(d.link("previous"), None);
    assert_eq!(d.releases(), BTreeSet::from([r1.clone()]));
    d.assert_layout(&r1);
    assert_eq!(d.ready().await, StatusCode::OK);
    assert_eq!(d.running_release(), r1);
    let secret = d.secret();
    let vapid = d.vapid_public_key().await;
    // The operator's edits stay.
    let toml_path = d.etc().join("parley.toml");
    let mut toml = std::fs::read_to_string(&toml_path).unwrap();
    toml.push_str("# edited by the operator\n");
    std::fs::write(&toml_path, &toml).unwrap();

    // upgrade: a second release; the secret and the config are kept.
    let up = [vec!["upgrade".to_string()], args(&[])].concat();
    d.ok(&refs(&up));
    let r2 = d.link("current").unwrap();
    assert_ne!(r2, r1);
    assert_eq!(d.link("previous").as_deref(), Some(r1.as_str()));
    assert_eq!(d.releases(), BTreeSet::from([r1.clone(), r2.clone()]));
    d.assert_layout(&r2);
    assert_eq!(d.secret(), secret, "upgrade must not rewrite parley.env");
    assert_eq!(d.vapid_public_key().await, vapid, "nor the push key");
    assert_eq!(std::fs::read_to_string(&toml_path).unwrap(), toml);
    assert_eq!(d.ready().await, StatusCode::OK);
    assert_eq!(d.running_release(), r2);

    // rollback: back to r1, and r2 becomes the previous one.
    d.ok(&refs(
        &[
            vec!["rollback".to_string()],
            run.iter().map(|s| s.to_string()).collect(),
        ]
        .concat(),
    ));
    assert_eq!(d.link("current").as_deref(), Some(r1.as_str()));
    assert_eq!(d.link("previous").as_deref(), Some(r2.as_str()));
    assert_eq!(d.ready().await, StatusCode::OK);
    assert_eq!(d.running_release(), r1);

    // status names both and the ready check.
    let out = d.ok(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("current:  {r1}")), "{text}");
    assert!(text.contains(&format!("previous: {r2}")), "{text}");
    assert!(text.contains("ready:    yes"), "{text}");

    let scratch = TempDir::new("broken");
    let unchanged = |label: &str| {
        assert_eq!(
            d.link("current").as_deref(),
            Some(r1.as_str()),
            "{label}: current"
        );
        assert_eq!(
            d.link("previous").as_deref(),
            Some(r2.as_str()),
            "{label}: previous"
        );
        assert_eq!(
            d.releases(),
            BTreeSet::from([r1.clone(), r2.clone()]),
            "{label}: releases"
        );
        assert_eq!(d.secret(), secret, "{label}: secret");
    };

    // A binary that does not even run: stopped at the migrations, nothing switched,
    // the running server untouched.
    let broken = scratch.join("broken-parley");
    write_executable(&broken, "#!/bin/sh\necho 'broken build' >&2\nexit 1\n");
    let pid_before = std::fs::read_to_string(d.prefix.join("var/lib/parley/parley.pid")).unwrap();
    let v = [
        vec![
            "upgrade".into(),
            "--binary".into(),
            broken.display().to_string(),
        ],
        run.iter().map(|s| s.to_string()).collect(),
    ]
    .concat();
    let out = d.run(&refs(&v));
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("migrations failed"),
        "{}",
        output_text(&out)
    );
    unchanged("broken binary");
    assert_eq!(d.ready().await, StatusCode::OK);
    assert_eq!(
        std::fs::read_to_string(d.prefix.join("var/lib/parley/parley.pid")).unwrap(),
        pid_before
    );

    // A release that migrates but whose server dies: switched, not ready, switched
    // back and restarted by deploy.sh itself, non-zero exit.
    let dies = scratch.join("dies-parley");
    write_executable(
        &dies,
        &format!(
            "#!/bin/sh\nif [ \"$3\" = migrate ]; then exec {PARLEY_BIN} \"$@\"; fi\necho 'cannot serve' >&2\nexit 1\n"
        ),
    );
    let v = [
        vec![
            "upgrade".into(),
            "--binary".into(),
            dies.display().to_string(),
        ],
        run.iter().map(|s| s.to_string()).collect(),
    ]
    .concat();
    let out = d.run(&refs(&v));
    assert!(!out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ROLLED BACK to"), "{}", output_text(&out));
    assert!(
        err.contains("cannot serve"),
        "the failing log is shown: {err}"
    );
    unchanged("server dies");
    assert_eq!(d.ready().await, StatusCode::OK);
    assert_eq!(d.running_release(), r1);

    // A release whose server runs but never becomes ready: the timeout triggers it.
    let hangs = scratch.join("hangs-parley");
    write_executable(
        &hangs,
        &format!(
            "#!/bin/sh\nif [ \"$3\" = migrate ]; then exec {PARLEY_BIN} \"$@\"; fi\nwhile :; do sleep 0.2; done\n"
        ),
    );
    let v = [
        vec![
            "upgrade".into(),
            "--binary".into(),
            hangs.display().to_string(),
        ],
        vec![
            "--no-systemd".into(),
            "--run".into(),
            "--timeout".into(),
            "3".into(),
        ],
    ]
    .concat();
    let out = d.run(&refs(&v));
    assert!(!out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not ready within 3s") && err.contains("ROLLED BACK to"),
        "{err}"
    );
    unchanged("never ready");
    assert_eq!(d.ready().await, StatusCode::OK);
    assert_eq!(d.running_release(), r1);

    // Old releases go, current and previous stay: with --keep 2, two upgrades leave two.
    let keep = [vec!["upgrade".to_string()], args(&["--keep", "2"])].concat();
    d.ok(&refs(&keep));
    let r3 = d.link("current").unwrap();
    d.ok(&refs(&keep));
    let r4 = d.link("current").unwrap();
    assert_eq!(d.link("previous").as_deref(), Some(r3.as_str()));
    assert_eq!(d.releases(), BTreeSet::from([r3.clone(), r4.clone()]));
    assert_eq!(d.secret(), secret);
    assert_eq!(d.running_release(), r4);
    assert_eq!(d.ready().await, StatusCode::OK);

    // stop: the server is gone, status says so and fails.
    d.ok(&["stop", "--no-systemd"]);
    assert_ne!(d.ready().await, StatusCode::OK);
    let out = d.run(&["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready:    NO"));
}

#[test]
fn a_real_install_needs_root_and_bad_usage_is_refused() {
    // As nobody and without --prefix, deploy.sh stops before touching anything.
    let dir = TempDir::new("noroot");
    let script = dir.join("deploy.sh");
    std::fs::copy(repo().join("deploy.sh"), &script).unwrap();
    crate::support::set_mode(&script, 0o755);
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    let mut c = if String::from_utf8_lossy(&uid).trim() == "0" {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"]);
        c
    } else {
        Command::new("bash")
    };
    let out = c
        .arg(&script)
        .args(["install", "--binary", PARLEY_BIN])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run it as root"), "{err}");
    assert!(!Path::new(&dir.join("opt")).exists());

    for (args, code) in [
        (vec![], 2),
        (vec!["deploy"], 2),
        (vec!["status", "--bogus"], 1),
    ] {
        let out = Command::new("bash")
            .arg(repo().join("deploy.sh"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            output_text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("deploy.sh") || code == 1,
            "{args:?}"
        );
    }
    let out = Command::new("bash")
        .arg(repo().join("deploy.sh"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    for word in [
        "install",
        "upgrade",
        "rollback",
        "status",
        "--prefix",
        "--binary",
        "--no-systemd",
    ] {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(word),
            "{word}"
        );
    }
}

#[test]
fn run_without_a_prefix_refuses_to_start_parley_as_root() {
    // As root (or as root of a user namespace when the tests run unprivileged), with
    // a binary that does not exist: were the refusal missing, deploy.sh would stop at
    // the binary check before touching a file, so this test never installs anything.
    let is_root = String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout)
        .trim()
        == "0";
    let dir = TempDir::new("asroot");
    let missing = dir.join("no-such-parley");
    let opt_existed = Path::new("/opt/parley").exists();
    let deploy = |args: &[&str]| -> Output {
        let mut c = if is_root {
            Command::new("bash")
        } else {
            let mut c = Command::new("unshare");
            c.args(["--map-root-user", "bash"]);
            c
        };
        c.arg(repo().join("deploy.sh"))
            .args(args)
            .arg("--binary")
            .arg(&missing)
            .current_dir(dir.path())
            .env_remove("DESTDIR")
            .env_remove("PARLEY_BINARY");
        c.output().unwrap()
    };
    // (Not rollback here: on a machine with a real install, a regression would act.)
    for command in ["install", "upgrade"] {
        let out = deploy(&[command, "--no-systemd", "--run"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{command}: {}",
            output_text(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--run would start parley as root: refusing"),
            "{command}: {}",
            output_text(&out)
        );
        assert!(
            err.contains("systemd") && err.contains("--prefix"),
            "the message says what to do instead: {err}"
        );
    }
    assert_eq!(
        Path::new("/opt/parley").exists(),
        opt_existed,
        "nothing was installed"
    );
    // Only --run without a prefix is refused: with a prefix the same command goes on
    // (to the binary check, here).
    let prefix = dir.join("prefix");
    let out = deploy(&[
        "install",
        "--no-systemd",
        "--run",
        "--prefix",
        prefix.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("as root"), "{}", output_text(&out));
    assert!(
        err.contains("is not an executable file"),
        "{}",
        output_text(&out)
    );
}

/// The active (uncommented) `key = …` lines of `[section]` in a TOML text.
fn toml_lines(text: &str, section: &str, key: &str) -> Vec<String> {
    let mut cur = String::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            cur = t.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if cur == section
            && t.split('=').next().map(str::trim) == Some(key)
            && !t.starts_with('#')
        {
            found.push(t.to_string());
        }
    }
    found
}

#[test]
fn install_writes_the_ha_settings_and_refuses_bad_lists() {
    let d = Deployment::new();
    let bin = ["--binary", PARLEY_BIN, "--no-systemd"];
    let install = |extra: &[&str]| -> Output {
        let args: Vec<&str> = ["install"]
            .iter()
            .chain(bin.iter())
            .chain(extra.iter())
            .copied()
            .collect();
        d.run(&args)
    };

    // Bad lists are refused before anything is written, and never echo a password.
    let other_db = format!("{}/other_db", crate::helpers::mysql_server());
    for (args, says) in [
        (
            vec!["--database-url", &d.db_url, "--database-urls", &d.db_url],
            "both given",
        ),
        (
            vec!["--database-urls", "mysql://parley:s3cret@10.0.0.11:3306"],
            "is not mysql://user:password@host:port/database",
        ),
        (
            vec![
                "--database-urls",
                "http://parley:s3cret@10.0.0.11:3306/parley",
            ],
            "is not mysql://user:password@host:port/database",
        ),
        (
            vec!["--database-urls", &format!("{},{other_db}", d.db_url)],
            "every node must name the same database",
        ),
        (vec!["--redis-sentinels", "10.0.0.21"], "is not HOST:PORT"),
        (
            vec!["--redis-sentinels", "10.0.0.21:26379,:26379"],
            "is not HOST:PORT",
        ),
        (
            vec!["--redis-master-name", "parley"],
            "needs --redis-sentinels",
        ),
        (
            vec![
                "--redis-sentinels",
                "10.0.0.21:26379",
                "--redis-master-name",
                "a b",
            ],
            "is not a Sentinel master name",
        ),
    ] {
        let out = install(&args);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
        assert!(
            !text.contains("s3cret"),
            "{args:?} echoes the password: {text}"
        );
        assert!(!d.etc().exists(), "{args:?}: nothing written");
    }

    // A Galera-style list (two "nodes": the test server twice, same database) and
    // three Sentinels. Without --run nothing starts, but deploy.sh runs the
    // migrations with the written files: Parley itself accepts them.
    let urls = format!("{0},{0}", d.db_url);
    let sentinels = "127.0.0.1:26379,127.0.0.1:26380,localhost:26381";
    let out = install(&[
        "--database-urls",
        &urls,
        "--redis-sentinels",
        sentinels,
        "--redis-master-name",
        "parley-ha",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));

    let env_path = d.etc().join("parley.env");
    let env = std::fs::read_to_string(&env_path).unwrap();
    assert_eq!(mode_of(&env_path), 0o640, "the URLs hold the password");
    let active: Vec<&str> = env
        .lines()
        .filter(|l| l.starts_with("PARLEY__DATABASE__"))
        .collect();
    assert_eq!(
        active,
        vec![format!("PARLEY__DATABASE__URLS={urls}")],
        "{env}"
    );
    d.secret(); // still exactly one JWT secret

    let toml_path = d.etc().join("parley.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    assert_eq!(
        toml_lines(&toml, "redis", "sentinels"),
        vec![format!("sentinels = \"{sentinels}\"")],
        "{toml}"
    );
    assert_eq!(
        toml_lines(&toml, "redis", "master_name"),
        vec!["master_name = \"parley-ha\"".to_string()],
        "{toml}"
    );
    assert!(toml_lines(&toml, "redis", "url").is_empty(), "{toml}");
    assert!(
        toml_lines(&toml, "database", "url").is_empty(),
        "the one-node URL is commented out: {toml}"
    );
    // The rest of the example is untouched.
    assert_eq!(toml_lines(&toml, "redis", "prefix").len(), 1, "{toml}");
    assert_eq!(toml_lines(&toml, "database", "pool_max").len(), 1, "{toml}");
    assert!(
        output_text(&out).contains("applying migrations"),
        "{}",
        output_text(&out)
    );

    // Installed already: the files stay as they are, and deploy.sh says what to edit.
    let out = install(&[
        "--database-urls",
        &d.db_url,
        "--redis-sentinels",
        "127.0.0.1:26390",
    ]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("--database-urls ignored"), "{text}");
    assert!(text.contains("--redis-sentinels ignored"), "{text}");
    assert_eq!(std::fs::read_to_string(&env_path).unwrap(), env);
    assert_eq!(std::fs::read_to_string(&toml_path).unwrap(), toml);

    // Without the HA options the written config keeps the one-node form.
    let plain = Deployment::new();
    let out = plain.run(&[
        "install",
        "--binary",
        PARLEY_BIN,
        "--no-systemd",
        "--database-url",
        &plain.db_url,
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let env = std::fs::read_to_string(plain.etc().join("parley.env")).unwrap();
    assert!(env.contains(&format!("PARLEY__DATABASE__URL={}\n", plain.db_url)));
    assert!(!env.contains("PARLEY__DATABASE__URLS"));
    let toml = std::fs::read_to_string(plain.etc().join("parley.toml")).unwrap();
    assert!(toml_lines(&toml, "redis", "sentinels").is_empty());
    assert_eq!(toml_lines(&toml, "database", "url").len(), 1);
}
