//! What the deployment tests share: temporary directories, free ports, the shipped
//! files with their paths substituted, and a real nginx on loopback.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use parley_testkit::util::{free_port, repo, set_mode, TempDir};

/// The debug build of the server, as Cargo built it for these tests.
pub const PARLEY_BIN: &str = env!("CARGO_BIN_EXE_parley");

pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

pub fn write_executable(p: &Path, text: &str) {
    let mut f = std::fs::File::create(p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    drop(f);
    set_mode(p, 0o755);
}

/// Copies a directory tree (the web client) so nginx's workers can read it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    set_mode(to, 0o755);
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            set_mode(&target, 0o644);
        }
    }
}

/// Looks a tool up on PATH (and in sbin, where Debian puts nginx), or fails the test
/// with the package to install: these tests never skip.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: apt-get install {package} (the deploy tests need it)")
    })
}

pub fn output_text(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ---------------------------------------------------------------- the nginx site

/// Where a test's nginx reads things from.
pub struct SiteLayout<'a> {
    /// Replaces `/opt/parley` (the site's root is `<opt>/current/static`).
    pub opt: &'a Path,
    /// Replaces `/var/lib/parley` (audio is aliased to `<var>/uploads/audio/`).
    pub var: &'a Path,
    /// Replaces the upstream `127.0.0.1:30000`.
    pub upstream_port: u16,
    /// nginx listens on 127.0.0.1:<this> instead of :80 (the IPv6 line is dropped).
    pub listen_port: u16,
}

/// systemd/nginx/parley.conf with the substitutions the file's header documents.
pub fn render_site(l: &SiteLayout) -> String {
    let shipped = std::fs::read_to_string(repo().join("systemd/nginx/parley.conf")).unwrap();
    for needle in [
        "/opt/parley",
        "/var/lib/parley",
        "server 127.0.0.1:30000;",
        "    listen 80;",
        "    listen [::]:80;",
    ] {
        assert!(shipped.contains(needle), "the site has no {needle:?}");
    }
    shipped
        .replace("/opt/parley", &l.opt.display().to_string())
        .replace("/var/lib/parley", &l.var.display().to_string())
        .replace(
            "server 127.0.0.1:30000;",
            &format!("server 127.0.0.1:{};", l.upstream_port),
        )
        .replace(
            "    listen 80;",
            &format!("    listen 127.0.0.1:{};", l.listen_port),
        )
        .replace("    listen [::]:80;\n", "")
}

/// A minimal nginx.conf around the site: everything (pid, logs, temp files) in `dir`.
pub fn write_nginx_conf(dir: &Path, site: &str) -> PathBuf {
    let site_path = dir.join("parley.conf");
    std::fs::write(&site_path, site).unwrap();
    let d = dir.display();
    let conf = format!(
        "# Test wrapper: what /etc/nginx/nginx.conf provides on Debian, in a temp dir.
# No `user` directive: run as root, the workers are nobody.
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {site};
}}
",
        site = site_path.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// `nginx -t` (or, with `extra = []`, any nginx command) on a test configuration.
pub fn nginx_cmd(dir: &Path, conf: &Path) -> Command {
    let mut c = Command::new(tool("nginx", "nginx-light (or nginx)"));
    c.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("error.log"));
    c
}

/// nginx in the foreground (daemon off) as our child; stopped by its pid on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Nginx {
    pub fn start(dir: &Path, site: &str, port: u16) -> Nginx {
        let conf = write_nginx_conf(dir, site);
        let test = nginx_cmd(dir, &conf).arg("-t").output().unwrap();
        assert!(test.status.success(), "nginx -t: {}", output_text(&test));
        let child = nginx_cmd(dir, &conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut n = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("nginx exited ({status}): {}", n.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx does not listen: {}",
                n.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master (our child, by pid): it stops its workers too.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
