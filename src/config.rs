//! Typed settings, loaded once: built-in defaults, then an optional TOML file,
//! then `PARLEY__SECTION__KEY` environment variables (lists also as `a,b,c`).
//! Everything else in the program reads a `Settings`, never the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use parley_actors::cluster::RedisSource;
use parley_actors::session::{ROOM_IDLE, SIGNAL_MAX_BYTES};
use parley_actors::RealtimeSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The default configuration file, read when it exists and no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/parley/parley.toml";

const DEFAULT_DATABASE_URL: &str = "mysql://root@127.0.0.1:3306/parley";

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "server.allowed_origins",
    "server.trusted_proxies",
    "calls.stun_urls",
    "calls.turn_urls",
    "database.urls",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub storage: StorageSettings,
    #[serde(rename = "static")]
    pub static_files: StaticSettings,
    pub calls: CallSettings,
    pub messages: MessageSettings,
    pub limits: LimitSettings,
    pub presence: PresenceSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub push: PushSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on. Default `127.0.0.1` (nginx in front).
    pub host: String,
    /// Port to listen on; 0 picks a free one. Default `30000`.
    pub port: u16,
    /// Browser origins allowed to open `/ws`. Default: empty = the server's own origin
    /// (the Host header). Requests without `Origin` (websocat, scripts) are allowed.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` are believed (nginx). Default
    /// `127.0.0.1,::1` (loopback).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// HTTP worker threads. Default 0 = one per core.
    pub workers: usize,
    /// Seconds to finish in-flight work on SIGTERM. Default `10`.
    pub shutdown_timeout_secs: u64,
    /// A client must send its request head within this many seconds (slowloris).
    /// Default `10`.
    pub request_timeout_secs: u64,
    /// Idle keep-alive HTTP connections are closed after this long. Default `30`.
    pub keep_alive_secs: u64,
    /// Connections the kernel may hold waiting to be accepted (capped by
    /// `net.core.somaxconn`). Default `4096`: a wave of reconnects after a restart
    /// must not overflow it (a dropped SYN costs the client a 1 s retransmit).
    pub listen_backlog: u32,
    /// The address people open Parley at, without a trailing slash: the links the
    /// admin CLI prints (invites, password resets) start with it. Default
    /// `http://127.0.0.1:30000`.
    pub public_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `mysql://user:password@host:port/database`. Default `mysql://root@127.0.0.1:3306/parley`.
    #[serde(skip_serializing)]
    pub url: SecretString,
    /// The nodes of a Galera cluster, each `mysql://user:password@host:port/database`
    /// with the same database name (a list, or one comma-separated string). Parley
    /// writes to one node at a time: the first healthy one in this order (Synced,
    /// Primary, `wsrep_ready=ON`), so every Parley process picks the same node and
    /// goes back to the first once it has rejoined. When set, `url` is ignored.
    /// Default unset (the one server of `url`).
    #[serde(skip_serializing, default, deserialize_with = "secret_list")]
    pub urls: Vec<SecretString>,
    /// Most connections in the pool (each node's pool with `urls`). Default `32`.
    pub pool_max: usize,
    /// Create the database when it does not exist. Default `true`.
    pub create_if_missing: bool,
    /// Parallel message writers (each a multi-row INSERT at a time; a chat always
    /// uses the same one). Default `2`: measured on 2 cores, fewer lanes make larger
    /// batches and fewer durable commits competing for the log (8 lanes: 34k msg/s,
    /// p99 31 ms at 5,000/s; 2 lanes: 56k msg/s, p99 11 ms). More cores or a faster
    /// disk may want more.
    pub writer_lanes: usize,
    /// Longest wait for a pooled connection (a free one, or one of the user's share)
    /// before the request is answered `unavailable` (503): never a hang. Default `3000`.
    pub acquire_timeout_ms: u64,
    /// Most pooled connections one user's requests and WebSocket sessions hold at
    /// once, so no single account can take the pool from everyone else. Default `4`.
    pub per_user_connections: usize,
}

impl DatabaseSettings {
    /// The node URLs Parley connects to: `urls`, or the one `url`.
    pub fn node_urls(&self) -> Vec<String> {
        if self.urls.is_empty() {
            vec![self.url.expose_secret().to_owned()]
        } else {
            self.urls
                .iter()
                .map(|u| u.expose_secret().trim().to_owned())
                .collect()
        }
    }
}

/// A list of secrets from a TOML array or one comma-separated string (the way the
/// environment gives lists).
fn secret_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let items = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
        .collect())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://127.0.0.1:6379`; unset = a single node with no Redis (unless
    /// `redis.sentinels` is set: then it may only carry a password and database, and
    /// names the master, `redis://:PASSWORD@MASTER_NAME/DB`). Default unset.
    pub url: Option<String>,
    /// Sentinels to ask for the Redis primary, `"h1:26379,h2:26379,h3:26379"`: Parley
    /// then uses whichever server they name and follows a failover. Unset = no
    /// Sentinel (`redis.url` names the server). Default unset.
    pub sentinels: Option<String>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor NAME …`);
    /// used only with `redis.sentinels`. Default `parley`.
    pub master_name: String,
    /// Prefix of every key and channel, so several clusters can share one Redis.
    /// Default `parley`.
    pub prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 signing secret, at least 32 bytes. Required outside `--dev`. Default unset.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<SecretString>,
    /// Token lifetime. Default `604800` (7 days).
    pub token_ttl_secs: u64,
    /// PBKDF2-HMAC-SHA256 iterations for new hashes. Default `600000` (OWASP); minimum 1000.
    pub pbkdf2_iterations: u32,
    /// Password hashes computed at once (each takes a core). Default 0 = half the
    /// cores (at least one), so a login storm never takes every core from messaging.
    pub hash_concurrency: usize,
    /// Hash requests allowed to wait for a free hasher before new ones get 503 at once.
    /// Default `8` (with one hasher at ~150 ms a hash, no login waits much over a second).
    pub hash_queue: usize,
    /// A login or registration refused because the hashers are full gets its 503
    /// after this many milliseconds, not at once: a client retrying in a loop is
    /// paced instead of taking a core from messaging. Default `100`.
    pub busy_delay_ms: u64,
    /// Each hashing thread is busy at most this share of the time (it rests after a
    /// hash). Default `50`: on two cores, messaging p99 during a login storm 2.4× →
    /// under 2×; the peak login rate halves (about 3 a second per hashing thread).
    pub hash_duty_percent: u8,
    /// Live sign-in sessions one account may have; a new sign-in past it revokes the
    /// oldest (so one account cannot grow the session table or a node's cache
    /// without bound). Default `50`.
    pub max_sessions_per_user: usize,
    /// Who may register: `open` (anyone), `invite` (with a token from `parley admin
    /// invite create`) or `closed` (nobody; the admin CLI still creates accounts).
    /// Default `open` (development; `deploy.sh install` writes `invite`).
    pub registration: RegistrationMode,
}

/// `auth.registration`: who may create an account through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Open,
    Invite,
    Closed,
}

impl RegistrationMode {
    /// The setting's (and `GET /api/auth/registration`'s) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Open => "open",
            RegistrationMode::Invite => "invite",
            RegistrationMode::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Where uploads live: voice messages in `audio/`, images and files in `media/`,
    /// thumbnails in `media/thumbs/`. Default `uploads`.
    pub uploads_dir: PathBuf,
    /// When set (e.g. `/_parley_audio/`), voice-message downloads answer with
    /// `X-Accel-Redirect` so nginx sends the bytes of `uploads_dir/audio/`. Default unset.
    pub x_accel_prefix: Option<String>,
    /// When set (e.g. `/_parley_media/`), image, file and thumbnail downloads answer with
    /// `X-Accel-Redirect` so nginx sends the bytes of `uploads_dir/media/`. Default unset.
    pub x_accel_media_prefix: Option<String>,
    /// Uploads of any kind never attached to a message are deleted (with their
    /// thumbnails) after this long. Default `3600`.
    pub unattached_audio_ttl_secs: u64,
    /// Uploads are refused (507 `storage_full`) when they would leave the uploads file
    /// system with less than this free, so uploads never fill a disk the database may
    /// share. Default `1073741824` (1 GiB); 0 = only a really full disk refuses.
    pub min_free_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSettings {
    /// The SPA's files, served with a fallback to `index.html`. Default `static`.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSettings {
    /// An unanswered call ends after this long. Default `45`.
    pub ring_timeout_secs: u64,
    /// STUN URLs handed to clients. Default `stun:stun.l.google.com:19302`.
    #[serde(default)]
    pub stun_urls: Vec<String>,
    /// TURN URLs handed to clients with time-limited credentials. Default none.
    #[serde(default)]
    pub turn_urls: Vec<String>,
    /// coturn `static-auth-secret`. Default unset (no TURN).
    #[serde(skip_serializing)]
    pub turn_secret: Option<SecretString>,
    /// Lifetime of TURN credentials. Default `86400`.
    pub turn_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSettings {
    /// How long after sending its sender may edit a message. Default `172800`.
    pub edit_window_secs: u64,
    /// Most of the time the search indexer may be busy, in percent: it yields the
    /// rest to sending (under overload search falls behind, then catches up).
    /// 1–100. Default `1` (measured: at 10 the latency p99 at 5,000 msg/s rose from
    /// 8 to 14 ms; at 1 it is unchanged, and the indexer still keeps up with a few
    /// hundred messages a second while busy, any rate while the server is quiet).
    pub search_index_duty_percent: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest JSON request body. Default `65536`.
    pub json_body_bytes: usize,
    /// Largest inbound WebSocket frame. Default `65536`.
    pub ws_frame_bytes: usize,
    /// Bytes queued for one WebSocket client that is not reading before it is closed
    /// with 1013 (it reconnects and `sync`s; nothing is lost). Default `4194304` (4 MiB).
    pub ws_outbound_bytes: usize,
    /// Largest voice message upload (`POST /api/messages/upload-audio`). Default
    /// `10485760` (10 MiB).
    pub audio_max_bytes: u64,
    /// Largest upload to `POST /api/media` (image, file or audio; an image as stored
    /// after re-encoding too). Default `26214400` (25 MiB).
    pub media_max_bytes: u64,
    /// Images with more pixels (width × height, read from the header before any
    /// decoding) are refused with 413 `image_too_large`. Default `40000000`.
    pub image_max_pixels: u64,
    /// Animated GIFs with more frames are refused with 413 `image_too_large`.
    /// Default `300`.
    pub image_max_frames: u32,
    /// Images decoded and encoded at once, each on its own thread off the async
    /// runtime. Default `2`.
    pub image_workers: usize,
    /// Image uploads that may wait for a free worker; past it 503 `busy`. Default `8`.
    pub image_queue: usize,
    /// Sustained WebSocket events per second per connection. Default `50`.
    pub ws_events_per_sec: u32,
    /// Burst of WebSocket events above the sustained rate. Default `200`.
    pub ws_events_burst: u32,
    /// Login attempts per client IP per minute. Default `30`.
    pub login_per_ip_per_min: u32,
    /// No longer used: the per-account login limit is a growing delay
    /// (`login_free_failures`, `login_delay_max_secs`), not a bucket that locks the
    /// owner out. Still accepted so existing files load. Default `10`.
    pub login_per_account_per_min: u32,
    /// Login attempts per account that go through at once — counted per (account,
    /// source network) and per account across sources it was not last signed in
    /// from — before each further one must wait 1 s, 2 s, 4 s … Default `5`.
    pub login_free_failures: u32,
    /// The longest login delay, in seconds; a count also forgets one failure per
    /// this long without one. Default `300`.
    pub login_delay_max_secs: u64,
    /// User searches per user per minute (beyond: 429 `rate_limited`). Default `30`.
    pub search_per_min: u32,
    /// Registrations per client IP per minute. Default `10`.
    pub register_per_ip_per_min: u32,
    /// WebSockets one user may hold open at once (tabs, devices). Default `32`.
    pub max_sessions_per_user: usize,
    /// WebSockets this process holds open at most. Default `100000`.
    pub max_connections: usize,
    /// Bytes of uploads (voice messages, images with their thumbnails, files) one
    /// user may keep stored (sent or not yet sent); past it an upload gets 413
    /// `quota_exceeded`. Default `1073741824` (1 GiB).
    pub user_storage_bytes: u64,
    /// Uploads of any kind one user may start per minute (a burst of this many,
    /// then one every `60 / n` seconds); past it 429 `rate_limited`. Default `10`.
    pub uploads_per_min: u32,
    /// New chats (direct or group) one user may start per minute. Default `20`.
    pub chats_per_min: u32,
    /// Most members of a group, its creator included. Default `256`.
    pub group_max_members: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSettings {
    /// A node that stops heartbeating is considered dead after this long. Default `30`.
    pub node_ttl_secs: u64,
    /// Server pings a WebSocket this often. Default `10`.
    pub ping_interval_secs: u64,
    /// A WebSocket silent for this long is closed. Default `30`.
    pub client_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Prometheus `/metrics` listen address; empty disables. Default `127.0.0.1:30001`.
    pub listen: String,
}

/// `[push]`: Web Push to browsers whose tab is closed (README "Notifications",
/// ARCHITECTURE.md "Web Push").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSettings {
    /// Send Web Push at all; it also needs `push.vapid_private_key`. Default `true`.
    pub enabled: bool,
    /// The VAPID private key (RFC 8292): a P-256 scalar, 32 bytes in base64url, from
    /// `parley admin push generate-keys`, in parley.env as
    /// `PARLEY__PUSH__VAPID_PRIVATE_KEY`. Default unset: no push (`push_disabled`).
    #[serde(skip_serializing)]
    pub vapid_private_key: Option<SecretString>,
    /// Who push services may contact about this server: a `mailto:` or `https:` URL
    /// (the VAPID `sub` claim). Default unset = `server.public_url`.
    pub subject: Option<String>,
    /// How long a push service keeps an undelivered message push (`TTL`). Calls
    /// always use 60 s. Default `86400`.
    pub ttl_secs: u64,
    /// A plaintext chat's push shows the message text; `false` shows "New message"
    /// (an encrypted chat's never shows content either way). Default `true`.
    pub include_content: bool,
    /// Attempts per push when the push service answers 429 or 5xx (with backoff,
    /// honouring `Retry-After`). Default `5`.
    pub max_attempts: u32,
    /// Pushes waiting to be sent; when full, the oldest is dropped (counted in
    /// `parley_push_dropped_total`). Default `10000`.
    pub queue: usize,
    /// Pushes sent at once; half of them at most to one push service. Default `32`.
    pub workers: usize,
    /// A push service's answer (connect included) is awaited this long. Default `10000`.
    pub timeout_ms: u64,
    /// TESTS ONLY: accept `http` endpoints and loopback, private and link-local
    /// addresses (the SSRF guard is off). Never set it on a server. Default `false`.
    pub allow_insecure_endpoints: bool,
    /// Push subscriptions (browsers) per account; a new one past it replaces the
    /// account's oldest. Default `10`.
    pub max_subscriptions_per_user: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `pretty` or `json`. Default `pretty`.
    pub format: LogFormat,
    /// A tracing filter such as `info,parley=debug`. `RUST_LOG` wins when set. Default `info`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server: ServerSettings {
                host: "127.0.0.1".into(),
                port: 30000,
                allowed_origins: vec![],
                trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
                workers: 0,
                shutdown_timeout_secs: 10,
                request_timeout_secs: 10,
                keep_alive_secs: 30,
                listen_backlog: 4096,
                public_url: "http://127.0.0.1:30000".into(),
            },
            database: DatabaseSettings {
                url: SecretString::from(DEFAULT_DATABASE_URL),
                urls: Vec::new(),
                pool_max: 32,
                create_if_missing: true,
                writer_lanes: 2,
                acquire_timeout_ms: 3000,
                per_user_connections: 4,
            },
            redis: RedisSettings {
                url: None,
                sentinels: None,
                master_name: "parley".into(),
                prefix: "parley".into(),
            },
            auth: AuthSettings {
                jwt_secret: None,
                token_ttl_secs: 7 * 24 * 3600,
                pbkdf2_iterations: 600_000,
                hash_concurrency: 0,
                hash_queue: 8,
                busy_delay_ms: 100,
                hash_duty_percent: 50,
                max_sessions_per_user: 50,
                registration: RegistrationMode::Open,
            },
            storage: StorageSettings {
                uploads_dir: "uploads".into(),
                x_accel_prefix: None,
                x_accel_media_prefix: None,
                unattached_audio_ttl_secs: 3600,
                min_free_bytes: 1024 * 1024 * 1024,
            },
            static_files: StaticSettings {
                dir: "static".into(),
            },
            calls: CallSettings {
                ring_timeout_secs: 45,
                stun_urls: vec!["stun:stun.l.google.com:19302".into()],
                turn_urls: vec![],
                turn_secret: None,
                turn_ttl_secs: 86400,
            },
            messages: MessageSettings {
                edit_window_secs: 48 * 3600,
                search_index_duty_percent: 1,
            },
            limits: LimitSettings {
                json_body_bytes: 64 * 1024,
                ws_frame_bytes: 64 * 1024,
                ws_outbound_bytes: 4 * 1024 * 1024,
                audio_max_bytes: 10 * 1024 * 1024,
                media_max_bytes: 25 * 1024 * 1024,
                image_max_pixels: 40_000_000,
                image_max_frames: 300,
                image_workers: 2,
                image_queue: 8,
                ws_events_per_sec: 50,
                ws_events_burst: 200,
                login_per_ip_per_min: 30,
                login_per_account_per_min: 10,
                login_free_failures: 5,
                login_delay_max_secs: 300,
                search_per_min: 30,
                register_per_ip_per_min: 10,
                max_sessions_per_user: 32,
                max_connections: 100_000,
                user_storage_bytes: 1024 * 1024 * 1024,
                uploads_per_min: 10,
                chats_per_min: 20,
                group_max_members: 256,
            },
            presence: PresenceSettings {
                node_ttl_secs: 30,
                ping_interval_secs: 10,
                client_timeout_secs: 30,
            },
            metrics: MetricsSettings {
                listen: "127.0.0.1:30001".into(),
            },
            log: LogSettings {
                format: LogFormat::Pretty,
                level: "info".into(),
            },
            push: PushSettings {
                enabled: true,
                vapid_private_key: None,
                subject: None,
                ttl_secs: 86400,
                include_content: true,
                max_attempts: 5,
                queue: 10_000,
                workers: 32,
                timeout_ms: 10_000,
                allow_insecure_endpoints: false,
                max_subscriptions_per_user: 10,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads defaults, then `path` (or the default file when it exists), then the
    /// environment. `dev` generates a throwaway JWT secret when none is configured.
    pub fn load(path: Option<&Path>, dev: bool) -> Result<Settings, ConfigError> {
        Self::load_from(path, dev, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given (so tests need not touch the process's).
    pub fn load_from(
        path: Option<&Path>,
        dev: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let defaults = Config::try_from(&Settings::default())?;
        let mut builder = Config::builder().add_source(defaults);
        // Secrets are never serialized, so their defaults are given here.
        builder = builder.set_default("database.url", DEFAULT_DATABASE_URL)?;
        match path {
            Some(p) => {
                builder = builder.add_source(File::from(p).format(FileFormat::Toml).required(true))
            }
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                builder = builder.add_source(File::new(DEFAULT_CONFIG_PATH, FileFormat::Toml))
            }
            None => {}
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("PARLEY__"))
            .collect();
        let mut environment = Environment::with_prefix("PARLEY")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(Some(env));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let mut settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        settings.finish(dev)?;
        Ok(settings)
    }

    /// Checks what types cannot, and fills in what depends on the machine.
    fn finish(&mut self, dev: bool) -> Result<(), ConfigError> {
        // A `sync` step (256 KiB) must fit beside the queue's low mark (256 KiB) and
        // a frame, or an honest client catching up would be closed as "not reading".
        if self.limits.ws_outbound_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "limits.ws_outbound_bytes must be at least 1048576 (1 MiB)".into(),
            ));
        }
        self.database
            .urls
            .retain(|u| !u.expose_secret().trim().is_empty());
        let names: std::collections::BTreeSet<Option<String>> = self
            .database
            .urls
            .iter()
            .map(|u| {
                mysql_async::Opts::from_url(u.expose_secret().trim())
                    .map(|o| o.db_name().map(str::to_owned))
                    .map_err(|e| ConfigError::Invalid(format!("database.urls: {e}")))
            })
            .collect::<Result<_, _>>()?;
        if names.len() > 1 {
            return Err(ConfigError::Invalid(
                "database.urls must name the same database on every node".into(),
            ));
        }
        if self.database.per_user_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.per_user_connections must be at least 1".into(),
            ));
        }
        match &self.auth.jwt_secret {
            Some(s) if s.expose_secret().len() < 32 => {
                return Err(ConfigError::Invalid(
                    "auth.jwt_secret must be at least 32 bytes (set PARLEY__AUTH__JWT_SECRET)"
                        .into(),
                ))
            }
            Some(_) => {}
            None if dev => {
                tracing::warn!(
                    "no auth.jwt_secret configured: generated a throwaway one for --dev; \
                     tokens will not survive a restart"
                );
                self.auth.jwt_secret = Some(SecretString::from(random_secret()));
            }
            None => {
                return Err(ConfigError::Invalid(
                    "auth.jwt_secret is not set: put it in the config file or \
                     PARLEY__AUTH__JWT_SECRET (e.g. `openssl rand -hex 32`), or run with --dev"
                        .into(),
                ))
            }
        }
        if self.auth.pbkdf2_iterations < 1000 {
            return Err(ConfigError::Invalid(
                "auth.pbkdf2_iterations must be at least 1000".into(),
            ));
        }
        if self.auth.max_sessions_per_user == 0 {
            return Err(ConfigError::Invalid(
                "auth.max_sessions_per_user must be at least 1".into(),
            ));
        }
        if self.auth.hash_concurrency == 0 {
            self.auth.hash_concurrency = (available_cores() / 2).max(1);
        }
        if self.server.workers == 0 {
            self.server.workers = available_cores();
        }
        for (name, v) in [
            (
                "limits.login_per_ip_per_min",
                self.limits.login_per_ip_per_min,
            ),
            (
                "limits.login_per_account_per_min",
                self.limits.login_per_account_per_min,
            ),
            (
                "limits.register_per_ip_per_min",
                self.limits.register_per_ip_per_min,
            ),
            (
                "limits.login_free_failures",
                self.limits.login_free_failures,
            ),
            ("limits.search_per_min", self.limits.search_per_min),
            ("limits.ws_events_per_sec", self.limits.ws_events_per_sec),
            ("limits.ws_events_burst", self.limits.ws_events_burst),
            ("limits.uploads_per_min", self.limits.uploads_per_min),
            ("limits.chats_per_min", self.limits.chats_per_min),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.limits.image_workers == 0 || self.limits.image_max_pixels == 0 {
            return Err(ConfigError::Invalid(
                "limits.image_workers and limits.image_max_pixels must be at least 1".into(),
            ));
        }
        // The stored name is appended as is: without the slashes nginx would look
        // for `/_parley_mediaabc.png`.
        if let Some(p) = &self.storage.x_accel_media_prefix {
            if !p.starts_with('/') || !p.ends_with('/') {
                return Err(ConfigError::Invalid(
                    "storage.x_accel_media_prefix must start and end with '/' \
                     (e.g. \"/_parley_media/\")"
                        .into(),
                ));
            }
        }
        if !(1..=100).contains(&self.messages.search_index_duty_percent) {
            return Err(ConfigError::Invalid(
                "messages.search_index_duty_percent must be 1 to 100".into(),
            ));
        }
        if self.limits.group_max_members < 2 {
            return Err(ConfigError::Invalid(
                "limits.group_max_members must be at least 2".into(),
            ));
        }
        // Links are `<public_url>/reset?token=…`: a trailing slash would double it.
        while self.server.public_url.ends_with('/') {
            self.server.public_url.pop();
        }
        if !(self.server.public_url.starts_with("http://")
            || self.server.public_url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(
                "server.public_url must start with http:// or https:// \
                 (e.g. \"https://chat.example.org\")"
                    .into(),
            ));
        }
        self.finish_redis()?;
        self.finish_push()?;
        Ok(())
    }

    /// `[redis]`: Sentinel addresses are `host:port`, and with Sentinel `redis.url`
    /// names no server (which would contradict the primary Sentinel names).
    fn finish_redis(&mut self) -> Result<(), ConfigError> {
        let r = &mut self.redis;
        if r.url.as_deref().is_some_and(|u| u.trim().is_empty()) {
            r.url = None;
        }
        if r.sentinels.as_deref().is_some_and(|s| s.trim().is_empty()) {
            r.sentinels = None;
        }
        let parse_url = |url: &str| {
            deadpool_redis::redis::IntoConnectionInfo::into_connection_info(url)
                .map(drop)
                .map_err(|e| ConfigError::Invalid(format!("redis.url: {e}")))
        };
        let Some(list) = &r.sentinels else {
            return r.url.as_deref().map_or(Ok(()), parse_url);
        };
        let name = r.master_name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid(
                "redis.master_name must be the name the Sentinels monitor (e.g. \"parley\")".into(),
            ));
        }
        for entry in list.split(',') {
            let entry = entry.trim();
            let valid = entry.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && !host.contains(char::is_whitespace)
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "redis.sentinels: {entry:?} is not host:port \
                     (e.g. \"10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379\")"
                )));
            }
        }
        if let Some(url) = &r.url {
            let parsed = url::Url::parse(url)
                .map_err(|e| ConfigError::Invalid(format!("redis.url: {e}")))?;
            if parsed.scheme() != "redis" {
                return Err(ConfigError::Invalid(format!(
                    "redis.url: with redis.sentinels only redis:// is supported, not {}://",
                    parsed.scheme()
                )));
            }
            let host = parsed.host_str().unwrap_or_default();
            if host != name || parsed.port().is_some() {
                let server = match parsed.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                };
                return Err(ConfigError::Invalid(format!(
                    "redis.url names the server {server} but redis.sentinels is set, and \
                     Parley then uses whichever server the Sentinels name as the primary of \
                     redis.master_name {name:?}. Either leave redis.url unset, or give only \
                     a password and database in it, naming the master instead of a server: \
                     redis://:PASSWORD@{name}/DB"
                )));
            }
            parse_url(url)?;
        }
        Ok(())
    }

    /// Where Redis is (`None`: no Redis, a single node). `finish` has checked it.
    pub fn redis_source(&self) -> Option<RedisSource> {
        let r = &self.redis;
        let Some(list) = &r.sentinels else {
            return r.url.clone().map(RedisSource::Url);
        };
        // The credentials and database of `redis.url`, parsed (and percent-decoded)
        // as the redis crate does; its host is the master's name, not a server.
        let node = r.url.as_deref().and_then(|u| {
            deadpool_redis::redis::IntoConnectionInfo::into_connection_info(u)
                .ok()
                .map(|i| i.redis)
        });
        let node = node.unwrap_or_default();
        Some(RedisSource::Sentinel {
            sentinels: list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            master_name: r.master_name.trim().to_owned(),
            username: node.username,
            password: node.password,
            db: node.db,
        })
    }

    /// `[push]`: a key that is set must be a usable one; the subject a contact.
    fn finish_push(&mut self) -> Result<(), ConfigError> {
        let p = &mut self.push;
        if p.vapid_private_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().trim().is_empty())
        {
            p.vapid_private_key = None;
        }
        if p.subject.as_deref().is_some_and(|s| s.trim().is_empty()) {
            p.subject = None;
        }
        if let Some(key) = &p.vapid_private_key {
            crate::push::vapid::VapidKey::from_base64url(key.expose_secret()).map_err(|e| {
                ConfigError::Invalid(format!(
                    "push.vapid_private_key: {e} (make one with `parley admin push generate-keys`)"
                ))
            })?;
        }
        if let Some(subject) = &p.subject {
            if !crate::push::vapid::valid_subject(subject) {
                return Err(ConfigError::Invalid(
                    "push.subject must be a mailto: or https: URL \
                     (e.g. \"mailto:admin@example.org\")"
                        .into(),
                ));
            }
        }
        if p.max_attempts == 0 || p.queue == 0 || p.workers == 0 || p.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "push.max_attempts, push.queue, push.workers and push.timeout_ms \
                 must be at least 1"
                    .into(),
            ));
        }
        if p.max_subscriptions_per_user == 0 {
            return Err(ConfigError::Invalid(
                "push.max_subscriptions_per_user must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Whether Web Push is on: enabled and a key configured.
    pub fn push_active(&self) -> bool {
        self.push.enabled && self.push.vapid_private_key.is_some()
    }

    /// The VAPID `sub` claim: `push.subject`, or the public URL.
    pub fn push_subject(&self) -> String {
        self.push
            .subject
            .clone()
            .unwrap_or_else(|| self.server.public_url.clone())
    }

    /// The realtime actors' settings, in their units: the only way they are made, so
    /// the actors have no defaults of their own.
    pub fn realtime(&self) -> RealtimeSettings {
        RealtimeSettings {
            ws_frame_bytes: self.limits.ws_frame_bytes,
            outbound_bytes: self.limits.ws_outbound_bytes,
            events_per_sec: self.limits.ws_events_per_sec,
            events_burst: self.limits.ws_events_burst,
            ping_interval: Duration::from_secs(self.presence.ping_interval_secs.max(1)),
            client_timeout: Duration::from_secs(self.presence.client_timeout_secs.max(1)),
            ring_timeout: Duration::from_secs(self.calls.ring_timeout_secs.max(1)),
            room_arbiters: self.server.workers.clamp(1, 4),
            writer_lanes: self.database.writer_lanes.clamp(1, 64),
            room_idle: ROOM_IDLE,
            signal_max_bytes: SIGNAL_MAX_BYTES,
            edit_window: Duration::from_secs(self.messages.edit_window_secs),
        }
    }

    /// The JWT secret; `finish` guarantees one is present.
    pub fn jwt_secret(&self) -> &[u8] {
        self.auth
            .jwt_secret
            .as_ref()
            .map(|s| s.expose_secret().as_bytes())
            .unwrap_or_default()
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn random_secret() -> String {
    use rand::RngExt;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_a_secret_outside_dev() {
        let err = Settings::load_from(None, false, env(&[])).unwrap_err();
        assert!(err.to_string().contains("jwt_secret"), "{err}");
        let s = Settings::load_from(None, true, env(&[])).unwrap();
        assert_eq!(s.server.port, 30000);
        assert_eq!(s.server.host, "127.0.0.1");
        assert!(s.jwt_secret().len() >= 32);
        assert_eq!(
            s.database.url.expose_secret(),
            "mysql://root@127.0.0.1:3306/parley"
        );
    }

    #[test]
    fn environment_overrides_and_lists_split_on_commas() {
        let s = Settings::load_from(
            None,
            false,
            env(&[
                (
                    "PARLEY__AUTH__JWT_SECRET",
                    "0123456789abcdef0123456789abcdef",
                ),
                ("PARLEY__SERVER__PORT", "4000"),
                ("PARLEY__CALLS__STUN_URLS", "stun:a:1,stun:b:2"),
                ("PARLEY__REDIS__URL", "redis://127.0.0.1:6379"),
                ("PARLEY__DATABASE__URL", "mysql://u:p@db:3306/x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 4000);
        assert_eq!(s.calls.stun_urls, vec!["stun:a:1", "stun:b:2"]);
        assert_eq!(s.redis.url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(s.database.url.expose_secret(), "mysql://u:p@db:3306/x");
    }

    /// The settings with `pairs` over a valid secret, or the error `finish` gave.
    fn with_redis(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut all = vec![(
            "PARLEY__AUTH__JWT_SECRET",
            "0123456789abcdef0123456789abcdef",
        )];
        all.extend_from_slice(pairs);
        Settings::load_from(None, false, env(&all))
    }

    #[test]
    fn sentinels_name_the_primary_and_the_url_only_credentials() {
        let s = with_redis(&[(
            "PARLEY__REDIS__SENTINELS",
            "10.0.0.1:26379, 10.0.0.2:26379,sentinel-3:26380",
        )])
        .unwrap();
        let Some(RedisSource::Sentinel {
            sentinels,
            master_name,
            username,
            password,
            db,
        }) = s.redis_source()
        else {
            panic!("sentinels set: {:?}", s.redis_source());
        };
        assert_eq!(
            sentinels,
            ["10.0.0.1:26379", "10.0.0.2:26379", "sentinel-3:26380"]
        );
        assert_eq!(master_name, "parley");
        assert_eq!((username, password, db), (None, None, 0));

        // The URL's credentials (percent-decoded) and database, its host the master.
        let s = with_redis(&[
            ("PARLEY__REDIS__SENTINELS", "127.0.0.1:26379"),
            ("PARLEY__REDIS__MASTER_NAME", "mymaster"),
            ("PARLEY__REDIS__URL", "redis://app:s%40cret@mymaster/3"),
        ])
        .unwrap();
        let Some(RedisSource::Sentinel {
            master_name,
            username,
            password,
            db,
            ..
        }) = s.redis_source()
        else {
            panic!("sentinels set");
        };
        assert_eq!(master_name, "mymaster");
        assert_eq!(username.as_deref(), Some("app"));
        assert_eq!(password.as_deref(), Some("s@cret"));
        assert_eq!(db, 3);

        // Without Sentinel the URL is the server; empty values are unset.
        let s = with_redis(&[
            ("PARLEY__REDIS__URL", "redis://127.0.0.1:6379/1"),
            ("PARLEY__REDIS__SENTINELS", " "),
        ])
        .unwrap();
        assert!(
            matches!(s.redis_source(), Some(RedisSource::Url(u)) if u == "redis://127.0.0.1:6379/1")
        );
        let s = with_redis(&[("PARLEY__REDIS__URL", "")]).unwrap();
        assert!(s.redis_source().is_none());
    }

    #[test]
    fn contradictory_or_malformed_redis_settings_are_refused_with_what_to_write() {
        let refused = |pairs: &[(&str, &str)]| with_redis(pairs).unwrap_err().to_string();

        // A URL naming a server beside Sentinels: which would be the primary?
        let err = refused(&[
            ("PARLEY__REDIS__SENTINELS", "127.0.0.1:26379"),
            ("PARLEY__REDIS__URL", "redis://10.0.0.5:6379/0"),
        ]);
        assert!(
            err.contains("redis.url names the server 10.0.0.5:6379 but redis.sentinels is set"),
            "{err}"
        );
        assert!(err.contains("redis://:PASSWORD@parley/DB"), "{err}");
        // The master's name with a port is a server too.
        let err = refused(&[
            ("PARLEY__REDIS__SENTINELS", "127.0.0.1:26379"),
            ("PARLEY__REDIS__URL", "redis://parley:6379"),
        ]);
        assert!(err.contains("names the server parley:6379"), "{err}");
        let err = refused(&[
            ("PARLEY__REDIS__SENTINELS", "127.0.0.1:26379"),
            ("PARLEY__REDIS__URL", "rediss://:pw@parley/0"),
        ]);
        assert!(err.contains("only redis:// is supported"), "{err}");

        for list in [
            "127.0.0.1",
            "127.0.0.1:0",
            "h1:26379,,h2:26379",
            ":26379",
            "h:x",
        ] {
            let err = refused(&[("PARLEY__REDIS__SENTINELS", list)]);
            assert!(
                err.contains("redis.sentinels:") && err.contains("is not host:port"),
                "{list}: {err}"
            );
        }
        let err = refused(&[
            ("PARLEY__REDIS__SENTINELS", "127.0.0.1:26379"),
            ("PARLEY__REDIS__MASTER_NAME", " "),
        ]);
        assert!(err.contains("redis.master_name"), "{err}");
        let err = refused(&[("PARLEY__REDIS__URL", "http://127.0.0.1:6379")]);
        assert!(err.contains("redis.url"), "{err}");
    }

    #[test]
    fn a_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("parley-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("parley.toml");
        std::fs::write(
            &file,
            "[server]\nport = 5000\nhost = \"0.0.0.0\"\n[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&file), false, env(&[("PARLEY__SERVER__PORT", "6000")]))
            .unwrap();
        assert_eq!(s.server.port, 6000);
        assert_eq!(s.server.host, "0.0.0.0");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn database_urls_come_as_a_list_or_a_comma_separated_string_and_win_over_url() {
        let a = "mysql://u:p@10.0.0.1:3306/parley";
        let b = "mysql://u:p@10.0.0.2:3307/parley";
        let cluster = Settings::load_from(
            None,
            true,
            env(&[
                ("PARLEY__DATABASE__URLS", &format!("{a}, {b}")),
                ("PARLEY__DATABASE__URL", "mysql://x@elsewhere/other"),
            ]),
        )
        .unwrap();
        assert_eq!(
            cluster.database.node_urls(),
            vec![a.to_string(), b.to_string()]
        );
        let dir = std::env::temp_dir().join(format!("parley-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("parley.toml");
        for toml in [
            format!("[database]\nurls = [\"{a}\", \"{b}\"]\n"),
            format!("[database]\nurls = \"{a},{b}\"\n"),
        ] {
            std::fs::write(&file, &toml).unwrap();
            let s = Settings::load_from(Some(&file), true, env(&[])).unwrap();
            assert_eq!(
                s.database.node_urls(),
                vec![a.to_string(), b.to_string()],
                "{toml}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
        // Unset: the one `url`.
        let s = Settings::load_from(None, true, env(&[])).unwrap();
        assert_eq!(
            s.database.node_urls(),
            vec![DEFAULT_DATABASE_URL.to_string()]
        );
        // Different databases on different nodes, or a bad URL: refused at start.
        let err = Settings::load_from(
            None,
            true,
            env(&[(
                "PARLEY__DATABASE__URLS",
                &format!("{a},mysql://u@h:3306/other"),
            )]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("same database"), "{err}");
        let err = Settings::load_from(None, true, env(&[("PARLEY__DATABASE__URLS", "nope")]))
            .unwrap_err();
        assert!(err.to_string().contains("database.urls"), "{err}");
        // Credentials never appear in Debug output.
        assert!(!format!("{cluster:?}").contains("u:p@"));
    }

    #[test]
    fn short_secrets_and_unknown_keys_are_refused() {
        let err = Settings::load_from(None, false, env(&[("PARLEY__AUTH__JWT_SECRET", "short")]))
            .unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
        let err =
            Settings::load_from(None, true, env(&[("PARLEY__SERVER__PROT", "1")])).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn secrets_are_never_printed() {
        let s = Settings::load_from(
            None,
            false,
            env(&[(
                "PARLEY__AUTH__JWT_SECRET",
                "0123456789abcdef0123456789abcdef",
            )]),
        )
        .unwrap();
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }
}

#[cfg(test)]
mod example_file {
    /// The shipped example must load: it documents every key, so a key renamed in
    /// code and not in the example fails here.
    #[test]
    fn the_shipped_example_config_loads() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/parley.toml.example");
        let s = super::Settings::load_from(Some(&path), true, Vec::new()).unwrap();
        assert_eq!(s.server.port, 30000);
        assert_eq!(s.log.format, super::LogFormat::Json);
    }
}

/// `Settings::default()` is the one source of defaults; these tests hold the two
/// hand-written descriptions of the settings to it: every key documented in the
/// example file and the README table, each with the default the code has.
#[cfg(test)]
mod documented_defaults {
    use std::collections::{BTreeMap, BTreeSet};

    use secrecy::ExposeSecret;
    use serde_json::Value;

    use super::Settings;

    /// Every key (`section.key`) with its default; `Null` when it has none.
    fn defaults() -> BTreeMap<String, Value> {
        let d = Settings::default();
        let mut keys = BTreeMap::new();
        let Value::Object(sections) = serde_json::to_value(&d).unwrap() else {
            panic!("Settings serialises as a map")
        };
        for (section, fields) in sections {
            let Value::Object(fields) = fields else {
                panic!("{section} is not a section")
            };
            for (key, value) in fields {
                keys.insert(format!("{section}.{key}"), value);
            }
        }
        // Secrets are never serialised; their defaults, by hand. Each must also
        // be a key `Settings` accepts (checked by the example, which names them).
        keys.insert(
            "database.url".into(),
            Value::String(d.database.url.expose_secret().to_owned()),
        );
        // Unset: `database.url` alone.
        keys.insert("database.urls".into(), Value::Null);
        keys.insert("auth.jwt_secret".into(), Value::Null);
        keys.insert("calls.turn_secret".into(), Value::Null);
        keys.insert("push.vapid_private_key".into(), Value::Null);
        keys
    }

    /// A default said in words rather than as a value: only for no value, an empty
    /// list or a 0 that means "work it out".
    fn may_be_described(default: &Value) -> bool {
        match default {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Number(n) => n.as_u64() == Some(0),
            _ => false,
        }
    }

    /// The value as the README writes it (lists as the environment takes them).
    fn plain(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
            other => other.to_string(),
        }
    }

    fn read(relative: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Each field's `///` text in this file, by key.
    fn doc_comments() -> BTreeMap<String, String> {
        let text = read("src/config.rs");
        let block = |name: &str| -> Vec<&str> {
            let head = format!("pub struct {name} {{");
            text.lines()
                .skip_while(|l| l.trim() != head)
                .skip(1)
                .take_while(|l| l.trim() != "}")
                .map(str::trim)
                .collect()
        };
        // `pub server: ServerSettings,` (renamed by serde where it says so).
        let mut sections = Vec::new();
        let mut rename = None;
        for line in block("Settings") {
            if let Some(r) = line.strip_prefix("#[serde(rename = \"") {
                rename = r.split('"').next().map(str::to_owned);
            } else if let Some((field, ty)) =
                line.strip_prefix("pub ").and_then(|l| l.split_once(": "))
            {
                let section = rename.take().unwrap_or_else(|| field.to_owned());
                sections.push((section, ty.trim_end_matches(',').to_owned()));
            }
        }
        let mut docs = BTreeMap::new();
        for (section, ty) in sections {
            let mut doc = String::new();
            for line in block(&ty) {
                if let Some(d) = line.strip_prefix("///") {
                    doc.push_str(d);
                } else if let Some((field, _)) =
                    line.strip_prefix("pub ").and_then(|l| l.split_once(':'))
                {
                    docs.insert(format!("{section}.{field}"), std::mem::take(&mut doc));
                }
            }
        }
        docs
    }

    #[test]
    fn the_field_comments_give_each_default() {
        let defaults = defaults();
        let docs = doc_comments();
        let mut problems = Vec::new();
        for (key, default) in &defaults {
            let Some(doc) = docs.get(key) else {
                problems.push(format!("{key}: no field found in src/config.rs"));
                continue;
            };
            let Some((_, said)) = doc.split_once("Default") else {
                problems.push(format!("{key}: its comment does not say its default"));
                continue;
            };
            match said
                .trim_start()
                .strip_prefix('`')
                .and_then(|s| s.split_once('`'))
            {
                Some((value, _)) if value != plain(default) => problems.push(format!(
                    "{key}: the comment says `{value}`, Settings::default() `{}`",
                    plain(default)
                )),
                Some(_) => {}
                None if may_be_described(default) => {}
                None => problems.push(format!(
                    "{key}: the comment says {:?}; write `{}`",
                    said.trim(),
                    plain(default)
                )),
            }
        }
        assert_eq!(
            docs.len(),
            defaults.len(),
            "fields vs keys: {:?}",
            docs.keys()
        );
        assert!(
            problems.is_empty(),
            "src/config.rs comments disagree with Settings::default():\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_example_file_has_every_key_with_its_default() {
        let defaults = defaults();
        let text = read("systemd/parley.toml.example");
        let parsed: toml::Table = toml::from_str(&text).expect("the example is TOML");
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            // `key = value  # comment` or, for a key with no default, `# key = …`.
            let (commented, body) = match line.strip_prefix('#') {
                Some(rest) => (true, rest.trim_start()),
                None => (false, line),
            };
            let Some((key, _)) = body.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                continue;
            }
            let full = format!("{section}.{key}");
            let Some(default) = defaults.get(&full) else {
                problems.push(format!("{full}: no such setting"));
                continue;
            };
            seen.insert(full.clone());
            if commented {
                if !default.is_null() {
                    problems.push(format!(
                        "{full}: commented out, but its default is {default}; write it out"
                    ));
                }
                continue;
            }
            let value = &parsed[section.as_str()][key];
            let value = serde_json::to_value(value).unwrap();
            // A value chosen for a systemd install says so: `# default: <value>`.
            let comment = line.split_once('#').map(|(_, c)| c).unwrap_or("");
            let marked = format!("default: {}", serde_json::to_string(default).unwrap());
            if value != *default && !comment.contains(&marked) {
                problems.push(format!(
                    "{full} = {value}, but the default is {default} (mark a deliberate \
                     difference with `# {marked}`)"
                ));
            }
        }
        for key in defaults.keys() {
            if !seen.contains(key) {
                problems.push(format!("{key}: not in the example"));
            }
        }
        assert!(
            problems.is_empty(),
            "systemd/parley.toml.example disagrees with Settings::default():\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_readme_table_has_every_key_with_its_default() {
        let defaults = defaults();
        let text = read("README.md");
        let start = text
            .find("| key | default | meaning |")
            .expect("README.md has the configuration table");
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for row in text[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
        {
            let cells: Vec<&str> = row
                .split(" | ")
                .map(|c| c.trim_matches('|').trim())
                .collect();
            // `a` / `b` rows give several keys and their defaults in the same order.
            let keys: Vec<&str> = cells[0].split(" / ").map(|k| k.trim_matches('`')).collect();
            let said: Vec<&str> = cells.get(1).copied().unwrap_or("").split(" / ").collect();
            if keys.len() != said.len() {
                problems.push(format!(
                    "row {row:?}: {} keys, {} defaults",
                    keys.len(),
                    said.len()
                ));
                continue;
            }
            for (key, said) in keys.into_iter().zip(said) {
                let Some(default) = defaults.get(key) else {
                    problems.push(format!("{key}: no such setting"));
                    continue;
                };
                seen.insert(key.to_owned());
                let said = said.trim();
                match said.strip_prefix('`').and_then(|s| s.split_once('`')) {
                    Some((value, _)) if value != plain(default) => problems.push(format!(
                        "{key}: README says `{value}`, the default is `{}`",
                        plain(default)
                    )),
                    Some(_) => {}
                    None if may_be_described(default) => {}
                    None => problems.push(format!(
                        "{key}: README says {said:?}; write the default `{}`",
                        plain(default)
                    )),
                }
            }
        }
        for key in defaults.keys() {
            if !seen.contains(key) {
                problems.push(format!("{key}: not in the README's configuration table"));
            }
        }
        assert!(
            problems.is_empty(),
            "README.md's configuration table disagrees with Settings::default():\n{}",
            problems.join("\n")
        );
    }
}
