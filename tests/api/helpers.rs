//! `spawn_app`: the real application on port 0, against a fresh database
//! `parley_test_<uuid>` that is dropped when the `TestApp` goes away.

use std::time::Duration;

use parley::config::Settings;
use parley::startup::Application;
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

/// The MariaDB server tests use: `PARLEY_TEST_MYSQL` (scripts/test.sh sets it to its
/// `parley` account) or root with no password on 127.0.0.1.
pub fn mysql_server() -> String {
    std::env::var("PARLEY_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A database URL with a fresh `parley_test_<uuid>` name.
pub fn fresh_db_url() -> String {
    format!(
        "{}/parley_test_{}",
        mysql_server(),
        uuid::Uuid::new_v4().simple()
    )
}

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db_url: String,
    pub settings: Settings,
    pub http: reqwest::Client,
    /// Dropped last: drops the database and the uploads directory.
    _cleanup: Cleanup,
}

struct Cleanup {
    db_url: Option<String>,
    dir: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let Some(url) = self.db_url.take() else {
            return;
        };
        // No async drop: a short-lived runtime on its own thread drops the database.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Err(e) = parley::db::migrate::drop_database(&url).await {
                    eprintln!("could not drop test database {url}: {e}");
                }
            })
        })
        .join();
    }
}

/// Settings every test starts from: port 0, a fresh database name, fast hashing,
/// limits out of the way (tests of a limit lower it themselves).
pub fn test_settings() -> Settings {
    parley::telemetry::init_for_tests();
    let mut s = Settings::load_from(
        None,
        false,
        [(
            "PARLEY__AUTH__JWT_SECRET".to_string(),
            JWT_SECRET.to_string(),
        )],
    )
    .expect("settings");
    let url = fresh_db_url();
    let name = url.rsplit('/').next().unwrap_or_default().to_string();
    s.server.port = 0;
    s.server.workers = 2;
    s.server.shutdown_timeout_secs = 1;
    s.database.url = SecretString::from(url);
    s.database.pool_max = 16;
    s.auth.pbkdf2_iterations = 1000;
    s.limits.login_per_ip_per_min = 10_000;
    s.limits.login_per_account_per_min = 10_000;
    s.limits.register_per_ip_per_min = 10_000;
    s.limits.ws_events_per_sec = 10_000;
    s.limits.ws_events_burst = 10_000;
    s.limits.chats_per_min = 10_000;
    s.storage.uploads_dir = std::env::temp_dir().join(format!("parley-uploads-{name}"));
    s.metrics.listen = String::new();
    s.static_files.dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    configure(&mut settings);
    spawn(settings, true).await
}

/// Starts the application with exactly these settings. `owns_db`: drop the database after.
pub async fn spawn(settings: Settings, owns_db: bool) -> TestApp {
    let db_url = settings.database.url.expose_secret().to_string();
    let cleanup = Cleanup {
        db_url: owns_db.then(|| db_url.clone()),
        dir: settings.storage.uploads_dir.clone(),
    };
    let app = Application::build(settings.clone())
        .await
        .expect("application builds");
    let port = app.port();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db_url,
        settings,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        _cleanup: cleanup,
    }
}

/// A registered user as the tests see one.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: u64,
    pub email: String,
    pub username: String,
    pub password: String,
    pub token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, username: &str) -> TestUser {
        let email = format!("{username}@example.com");
        let password = format!("pw-{username}-secret");
        let res = self
            .post_json(
                "/api/auth/register",
                &json!({"email": email, "username": username, "password": password}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "register {username}");
        let body: Value = res.json().await.expect("json");
        TestUser {
            id: body["user"]["id"].as_u64().expect("id"),
            email,
            username: username.to_string(),
            password,
            token: body["token"].as_str().expect("token").to_string(),
        }
    }

    /// A direct connection to this test's database.
    pub async fn mysql(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.db_url.as_str())
            .await
            .expect("mysql")
    }
}

/// Asserts the PROTOCOL.md error body and returns it.
pub async fn assert_error(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "status for expected code {code}");
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message present: {body}"
    );
    body
}

/// A port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------- WebSocket client

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A WebSocket client speaking the JSON frames; frames are read in the background.
pub struct WsClient {
    tx: tokio::sync::mpsc::UnboundedSender<WsMessage>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<Value, String>>,
    /// Frames skipped by `wait_for`, oldest first, for later assertions.
    pub skipped: Vec<Value>,
    /// Frames already read that `next` hands out first.
    backlog: std::collections::VecDeque<Value>,
}

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

impl TestApp {
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?token={token}", self.port)
    }

    /// A connected, registered session (it has sent `ready`).
    pub async fn ws(&self, user: &TestUser) -> WsClient {
        let mut c = WsClient::connect(&self.ws_url(&user.token)).await;
        // Frames pushed before `ready` (the catch-up) stay readable, in order.
        let mut before = Vec::new();
        loop {
            let v = c.next().await;
            if v["event"] == "ready" {
                break;
            }
            before.push(v);
        }
        c.backlog.extend(before);
        c
    }

    /// A direct chat between two users (created, or the existing one).
    pub async fn direct_chat(&self, a: &TestUser, b: &TestUser) -> u64 {
        let res = self
            .post_auth("/api/chats", &a.token, &json!({"userId": b.id}))
            .await;
        assert!(res.status().is_success(), "create chat: {}", res.status());
        res.json::<Value>().await.expect("chat")["id"]
            .as_u64()
            .expect("id")
    }
}

impl WsClient {
    pub async fn connect(url: &str) -> WsClient {
        let req = url.into_client_request().expect("request");
        let (stream, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connects");
        let (mut sink, mut source) = stream.split();
        let (tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<WsMessage>();
        let (in_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let close = matches!(m, WsMessage::Close(_));
                if sink.send(m).await.is_err() || close {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(frame) = source.next().await {
                let item = match frame {
                    Ok(WsMessage::Text(t)) => {
                        serde_json::from_str::<Value>(&t).map_err(|e| e.to_string())
                    }
                    Ok(WsMessage::Close(c)) => Err(format!(
                        "closed:{}",
                        c.map(|c| u16::from(c.code)).unwrap_or(1005)
                    )),
                    Ok(_) => continue,
                    Err(e) => Err(format!("error: {e}")),
                };
                let stop = item.is_err();
                if in_tx.send(item).is_err() || stop {
                    break;
                }
            }
        });
        WsClient {
            tx,
            rx,
            skipped: Vec::new(),
            backlog: Default::default(),
        }
    }

    pub fn send(&self, frame: Value) {
        self.tx
            .send(WsMessage::Text(frame.to_string().into()))
            .expect("send");
    }

    pub fn send_raw(&self, m: WsMessage) {
        self.tx.send(m).expect("send");
    }

    pub fn close(&self) {
        let _ = self.tx.send(WsMessage::Close(None));
    }

    /// The next frame; panics on timeout or close.
    pub async fn next(&mut self) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(Ok(v))) => v,
            Ok(Some(Err(e))) => panic!("socket ended: {e}"),
            Ok(None) => panic!("socket ended"),
            Err(_) => panic!(
                "no frame within {WAIT:?}; skipped so far: {:?}",
                self.skipped
            ),
        }
    }

    /// The next frame within `d`, or None.
    pub async fn next_within(&mut self, d: Duration) -> Option<Result<Value, String>> {
        if let Some(v) = self.backlog.pop_front() {
            return Some(Ok(v));
        }
        tokio::time::timeout(d, self.rx.recv()).await.ok().flatten()
    }

    /// The first frame of `event` not yet consumed: one skipped earlier (by
    /// `reply_to` or `wait_for`), else the next to arrive; others go to `skipped`.
    pub async fn wait_for(&mut self, event: &str) -> Value {
        if let Some(i) = self.skipped.iter().position(|v| v["event"] == event) {
            return self.skipped.remove(i);
        }
        loop {
            let v = self.next().await;
            if v["event"] == event {
                return v;
            }
            self.skipped.push(v);
        }
    }

    /// Waits for the reply (ack or error) carrying `reference`.
    pub async fn reply_to(&mut self, reference: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["ref"] == reference {
                return v;
            }
            self.skipped.push(v);
        }
    }

    /// Sends a text message and returns the stored message from the ack.
    pub async fn send_text(&mut self, chat: u64, client_id: &str, text: &str) -> Value {
        self.send(json!({"event": "message:send", "ref": client_id, "data": {
            "chatId": chat, "clientId": client_id, "kind": "text", "content": text}}));
        let reply = self.reply_to(client_id).await;
        assert_eq!(reply["event"], "ack", "send {client_id}: {reply}");
        reply["data"].clone()
    }

    /// Asserts nothing arrives for `d` (other than what `ignore` accepts).
    pub async fn assert_quiet(&mut self, d: Duration, ignore: &[&str]) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_within(left).await {
                None => return,
                Some(Ok(v)) if ignore.iter().any(|e| v["event"] == *e) => continue,
                Some(other) => panic!("expected quiet, got {other:?}"),
            }
        }
    }
}
