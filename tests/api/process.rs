//! The real `parley` binary: its command line, start-up errors and log hygiene.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{fresh_db_url, WsClient, JWT_SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_parley");

fn parley() -> Command {
    let mut cmd = Command::new(BIN);
    // Only what the test sets: no secret or database from the developer's shell.
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PARLEY__LOG__FORMAT", "json")
        .env("PARLEY__METRICS__LISTEN", "")
        .env("PARLEY__AUTH__PBKDF2_ITERATIONS", "1000")
        .stdin(Stdio::null());
    cmd
}

async fn drop_db(url: &str) {
    parley::db::migrate::drop_database(url).await.unwrap();
}

#[actix_web::test]
async fn serve_without_a_jwt_secret_stops_with_a_clear_message() {
    let out = parley()
        .arg("--config")
        .arg("/nonexistent/parley.toml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/parley.toml"), "{err}");

    let out = parley()
        .env("PARLEY__DATABASE__URL", fresh_db_url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.jwt_secret is not set"), "{err}");
}

#[actix_web::test]
async fn migrate_creates_the_database_and_is_idempotent() {
    let url = fresh_db_url();
    for _ in 0..2 {
        let out = parley()
            .arg("migrate")
            .env("PARLEY__DATABASE__URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    use mysql_async::prelude::Queryable;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM refinery_schema_history")
        .await
        .unwrap();
    assert!(n.unwrap() >= 6);
    conn.disconnect().await.unwrap();
    drop_db(&url).await;
}

struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `parley serve` on a free port and waits for its "listening" line.
// `Running`'s Drop kills and waits for the child; clippy cannot see through that.
#[allow(clippy::zombie_processes)]
fn serve(db_url: &str) -> Running {
    serve_with(db_url, &[])
}

#[allow(clippy::zombie_processes)]
fn serve_with(db_url: &str, extra: &[(&str, String)]) -> Running {
    let mut cmd = parley();
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd
        .env("PARLEY__DATABASE__URL", db_url)
        .env("PARLEY__AUTH__JWT_SECRET", JWT_SECRET)
        .env("PARLEY__SERVER__PORT", "0")
        .env("PARLEY__LOG__LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let port = lines.lock().unwrap().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "parley listening").then(|| v["port"].as_u64())?
        });
        if let Some(port) = port {
            return Running {
                child,
                lines,
                port: port as u16,
            };
        }
        assert!(
            Instant::now() < deadline,
            "no listening line: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[actix_web::test]
async fn logs_are_json_lines_without_passwords_hashes_or_tokens() {
    let url = fresh_db_url();
    let run = serve(&url);
    let base = format!("http://127.0.0.1:{}", run.port);
    let http = reqwest::Client::new();
    let password = "very-secret-password-42";
    let res = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"email": "ann@example.com", "username": "ann", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let token = res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let res = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": "ann", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    http.post(format!("{base}/api/auth/login"))
        .json(&json!({"email": "ann", "password": "wrong-password-99"}))
        .send()
        .await
        .unwrap();
    http.get(format!("{base}/api/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    // A token in a query string (as the WebSocket takes it) must not be logged either.
    http.get(format!("{base}/api/health?token={token}"))
        .send()
        .await
        .unwrap();

    // An encrypted message between two clients, over the real WebSocket.
    let res = http
        .post(format!("{base}/api/auth/register"))
        .json(
            &json!({"email": "bob@example.com", "username": "bob", "password": "bobs-password-1"}),
        )
        .send()
        .await
        .unwrap();
    let bob: Value = res.json().await.unwrap();
    let bob_id = bob["user"]["id"].as_u64().unwrap();
    let chat: Value = http
        .post(format!("{base}/api/chats"))
        .bearer_auth(&token)
        .json(&json!({"userId": bob_id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = chat["id"].as_u64().unwrap();
    let ka = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let kb = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let (pa, pb) = (ka.to_public_key(), kb.to_public_key());
    let plaintext = "the vault code is 7-3-1-9";
    let env = parley::e2ee::encrypt(
        plaintext,
        parley::ChatId(chat),
        parley::UserId(1),
        "enc",
        &[(parley::UserId(1), &pa), (parley::UserId(bob_id), &pb)],
    )
    .unwrap();
    let mut ws = WsClient::connect(&format!("ws://127.0.0.1:{}/ws?token={token}", run.port)).await;
    ws.send(json!({"event": "message:send", "ref": "e", "data": {"chatId": chat, "clientId": "enc", "kind": "text", "content": "", "encrypted": true, "e2ee": env}}));
    assert_eq!(ws.reply_to("e").await["event"], "ack");
    ws.close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = run.lines.lock().unwrap().clone();
    drop(run);
    assert!(
        lines.iter().any(|l| l.contains("request done")),
        "request lines logged"
    );
    let signature = token.rsplit('.').next().unwrap();
    for line in &lines {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON line: {line}"
        );
        for secret in [
            password,
            "wrong-password-99",
            signature,
            "$pbkdf2",
            "pbkdf2-sha256",
            "vault code",
            &env.ciphertext,
        ] {
            assert!(!line.contains(secret), "{secret:?} leaked into: {line}");
        }
    }
    drop_db(&url).await;
}

#[actix_web::test]
async fn metrics_are_served_on_their_own_listener() {
    let url = fresh_db_url();
    let metrics_port = crate::helpers::closed_port();
    let run = serve_with(
        &url,
        &[(
            "PARLEY__METRICS__LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )],
    );
    let base = format!("http://127.0.0.1:{}", run.port);
    let http = reqwest::Client::new();
    http.post(format!("{base}/api/auth/register"))
        .json(&json!({"email": "ann@example.com", "username": "ann", "password": "password-123"}))
        .send()
        .await
        .unwrap();
    let body = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "parley_websocket_connections ",
        "parley_online_users ",
        "parley_messages_stored_total ",
        "parley_messages_delivered_total ",
        "parley_send_to_ack_seconds_bucket",
        "parley_db_pool_connections ",
        "parley_redis_up -1",
    ] {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }
    // Not on the public port (there, /metrics is just a client route of the SPA).
    let res = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(!res
        .text()
        .await
        .unwrap()
        .contains("parley_websocket_connections"));
    drop(run);
    drop_db(&url).await;
}

#[actix_web::test]
async fn sigterm_during_a_burst_loses_nothing_acknowledged_and_closes_with_1001() {
    use std::collections::HashSet;
    let url = fresh_db_url();
    let run = serve(&url);
    let base = format!("http://127.0.0.1:{}", run.port);
    let http = reqwest::Client::new();
    let hub: Value = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"email": "hub@example.com", "username": "hub", "password": "password-123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let u: Value = http
            .post(format!("{base}/api/auth/register"))
            .json(&json!({"email": format!("s{i}@example.com"), "username": format!("sender{i}"), "password": "password-123"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = u["token"].as_str().unwrap().to_string();
        let chat: Value = http
            .post(format!("{base}/api/chats"))
            .bearer_auth(&token)
            .json(&json!({"userId": hub["user"]["id"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let chat = chat["id"].as_u64().unwrap();
        let mut ws =
            WsClient::connect(&format!("ws://127.0.0.1:{}/ws?token={token}", run.port)).await;
        ws.wait_for("ready").await;
        tasks.push(tokio::spawn(async move {
            // Keep sending until the server goes away; record what it answered.
            let mut acked = HashSet::new();
            let mut errors = 0;
            let mut sent = 0;
            let close;
            loop {
                if sent < 5000 {
                    for _ in 0..20 {
                        ws.send(json!({"event": "message:send", "ref": format!("{sent}"), "data": {
                            "chatId": chat, "clientId": format!("c{i}-{sent}"), "kind": "text", "content": "burst"}}));
                        sent += 1;
                    }
                }
                match ws.next_within(Duration::from_secs(15)).await {
                    Some(Ok(v)) if v["event"] == "ack" => {
                        acked.insert(v["data"]["clientId"].as_str().unwrap().to_string());
                    }
                    Some(Ok(v)) if v["event"] == "error" => errors += 1,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        close = e;
                        break;
                    }
                    None => {
                        close = "timeout".into();
                        break;
                    }
                }
            }
            (acked, errors, close)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = run.child.id();
    assert!(Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    let mut acked_all: HashSet<String> = HashSet::new();
    for t in tasks {
        let (acked, _errors, close) = t.await.unwrap();
        assert_eq!(close, "closed:1001", "every client saw a 1001 close");
        acked_all.extend(acked);
    }
    assert!(!acked_all.is_empty());
    // The process ends by itself, cleanly.
    let mut run = run;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = run.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "parley did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let lines = run.lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("closing WebSockets with 1001")),
        "{lines:?}"
    );
    // Every acknowledged message is stored, and nothing was stored unanswered.
    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
    use mysql_async::prelude::Queryable;
    let stored: Vec<String> = conn.query("SELECT client_id FROM messages").await.unwrap();
    let stored: HashSet<String> = stored.into_iter().collect();
    assert_eq!(
        stored, acked_all,
        "stored and acknowledged are the same set"
    );
    conn.disconnect().await.unwrap();
    drop(run);
    drop_db(&url).await;
}

/// `parley serve` on an address someone else holds: the exit status, the message
/// naming the setting to change, and nothing of a panic.
fn serve_on_a_taken_port(extra: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = parley();
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd
        .env("PARLEY__DATABASE__URL", fresh_db_url())
        .env("PARLEY__AUTH__JWT_SECRET", JWT_SECRET)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("stack backtrace"), "{err}");
    (out.status.code(), err)
}

#[actix_web::test]
async fn a_taken_server_port_is_a_clean_start_up_error_naming_the_setting() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let (code, err) = serve_on_a_taken_port(&[
        ("PARLEY__SERVER__HOST", "127.0.0.1".into()),
        ("PARLEY__SERVER__PORT", port.to_string()),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "server.host:server.port 127.0.0.1:{port} is in use: set server.port (PARLEY__SERVER__PORT)"
        )),
        "{err}"
    );
}

#[actix_web::test]
async fn a_taken_metrics_address_is_a_clean_start_up_error_naming_the_setting() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let (code, err) = serve_on_a_taken_port(&[
        ("PARLEY__SERVER__PORT", "0".into()),
        ("PARLEY__METRICS__LISTEN", addr.clone()),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "metrics.listen {addr} is in use: set metrics.listen, or empty to disable"
        )),
        "{err}"
    );
}
