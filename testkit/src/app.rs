//! The application in-process: the real `Application` on port 0, against a fresh
//! database `parley_test_<uuid>` that is dropped when the [`TestApp`] goes away.
//! Needs an actix system (`#[actix_web::test]`).

use std::time::Duration;

use parley::config::Settings;
use parley::startup::Application;
use reqwest::Response;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::client::{self, TestUser, WsClient};
use crate::db::{drop_database_blocking, fresh_db_url};
use crate::JWT_SECRET;

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db_url: String,
    pub settings: Settings,
    pub http: reqwest::Client,
    /// The Web Push engine (empty unless the settings configure a key).
    pub push: parley::push::Push,
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
        if let Some(url) = self.db_url.take() {
            drop_database_blocking(url);
        }
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
    s.static_files.dir = crate::util::repo().join("static");
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
    let push = app.push();
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
        push,
        _cleanup: cleanup,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn ws_url(&self, token: &str) -> String {
        client::ws_url(&format!("ws://127.0.0.1:{}", self.port), token)
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
        client::register(&self.http, &self.address, username).await
    }

    /// A direct chat between two users (created, or the existing one).
    pub async fn direct_chat(&self, a: &TestUser, b: &TestUser) -> u64 {
        client::direct_chat(&self.http, &self.address, a, b).await
    }

    pub async fn group_chat(&self, owner: &TestUser, others: &[&TestUser]) -> u64 {
        client::group_chat(&self.http, &self.address, owner, others).await
    }

    /// A connected, registered session (it has sent `ready`); frames pushed before
    /// `ready` (the catch-up) stay readable, in order.
    pub async fn ws(&self, user: &TestUser) -> WsClient {
        WsClient::connect_ready(&self.ws_url(&user.token)).await
    }

    /// [`TestApp::ws`], also returning the `ready` frame (its `lastChange`).
    pub async fn ws_ready(&self, user: &TestUser) -> (WsClient, Value) {
        WsClient::connect_ready_frame(&self.ws_url(&user.token)).await
    }

    /// A direct connection to this test's database.
    pub async fn mysql(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.db_url.as_str())
            .await
            .expect("mysql")
    }
}
