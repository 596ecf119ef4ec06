//! The real `parley` binary: its command line, start-up errors and log hygiene.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{fresh_db_url, AnnBob, WsClient};
use parley_testkit::binary::{assert_lines_clean, Parley, Secrets};
use parley_testkit::client::ws_url;
use parley_testkit::db::TestDb;

/// `parley` with a clean environment (see the kit's `binary::command`).
fn parley() -> Command {
    parley_testkit::binary::command()
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
    let db = TestDb::fresh();
    let url = db.url.clone();
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
}

#[actix_web::test]
async fn logs_are_json_lines_without_passwords_hashes_or_tokens() {
    let db = TestDb::fresh();
    let run = Parley::start(&db.url, &[]).await;
    let base = run.base();
    let http = reqwest::Client::new();
    // Every password and token signature goes to `secrets`, checked against each line.
    let secrets = Secrets::default();
    let AnnBob { ann, bob, chat } = run.ann_bob(&secrets).await;
    let token = ann.token.clone();
    let res = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"email": "ann", "password": ann.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    secrets.add("wrong-password-99");
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
    let ka = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let kb = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let (pa, pb) = (ka.to_public_key(), kb.to_public_key());
    let plaintext = "the vault code is 7-3-1-9";
    let env = parley::e2ee::encrypt(
        plaintext,
        parley::ChatId(chat),
        parley::UserId(ann.id),
        "enc",
        &[(parley::UserId(ann.id), &pa), (parley::UserId(bob.id), &pb)],
    )
    .unwrap();
    secrets.add("vault code");
    secrets.add(env.ciphertext.clone());
    let mut ws = WsClient::connect(&ws_url(&run.ws_base(), &token)).await;
    ws.send(json!({"event": "message:send", "ref": "e", "data": {"chatId": chat, "clientId": "enc", "kind": "text", "content": "", "encrypted": true, "e2ee": env}}));
    assert_eq!(ws.reply_to("e").await["event"], "ack");
    ws.close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = run.logs();
    drop(run);
    assert!(
        lines.iter().any(|l| l.contains("request done")),
        "request lines logged"
    );
    // JSON, no panic, none of the secrets, no PBKDF2 hash.
    assert_lines_clean(&lines, &secrets);
}

#[actix_web::test]
async fn metrics_are_served_on_their_own_listener() {
    let db = TestDb::fresh();
    let url = db.url.clone();
    let run = Parley::start(&url, &[]).await;
    let metrics_port = run.metrics_port;
    let base = run.base();
    let http = reqwest::Client::new();
    run.register("ann", &Secrets::default()).await;
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
}

#[actix_web::test]
async fn sigterm_during_a_burst_loses_nothing_acknowledged_and_closes_with_1001() {
    use std::collections::HashSet;
    let db = TestDb::fresh();
    let url = db.url.clone();
    let run = Parley::start(&url, &[]).await;
    let secrets = Secrets::default();
    let hub = run.register("hub", &secrets).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let sender = run.register(&format!("sender{i}"), &secrets).await;
        let chat = run.direct_chat(&sender, &hub).await;
        let mut ws = WsClient::connect(&ws_url(&run.ws_base(), &sender.token)).await;
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
    run.sigterm();
    let mut acked_all: HashSet<String> = HashSet::new();
    for t in tasks {
        let (acked, _errors, close) = t.await.unwrap();
        assert_eq!(close, "closed:1001", "every client saw a 1001 close");
        acked_all.extend(acked);
    }
    assert!(!acked_all.is_empty());
    // The process ends by itself, cleanly.
    let mut run = run;
    let status = run.wait_exit(Duration::from_secs(20)).await;
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
        .env("PARLEY__AUTH__JWT_SECRET", parley_testkit::JWT_SECRET)
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

#[actix_web::test]
async fn a_redis_url_naming_a_server_beside_sentinels_stops_with_a_clear_message() {
    let out = parley()
        .env("PARLEY__DATABASE__URL", fresh_db_url())
        .env("PARLEY__AUTH__JWT_SECRET", parley_testkit::JWT_SECRET)
        .env(
            "PARLEY__REDIS__SENTINELS",
            "127.0.0.1:26379,127.0.0.1:26380",
        )
        .env("PARLEY__REDIS__URL", "redis://127.0.0.1:6379")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redis.url names the server 127.0.0.1:6379 but redis.sentinels is set"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
