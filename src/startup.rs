//! Startup as a library: `Application::build` prepares the database, starts the
//! actors and binds the HTTP server; `main` and the tests call the same function.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_http::HttpService;
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Server};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::auth::known_sources::KnownSources;
use crate::auth::{AuthSessions, Hasher, JwtKeys, LoginThrottle, WsTickets};
use crate::config::Settings;
use crate::db::migrate::{self, MigrateError};
use crate::db::store::MysqlStore;
use crate::db::{Db, DbError};
use crate::error::extractors;
use crate::routes;
use crate::telemetry::RequestSpan;
use parley_actors::cluster::{ClusterSettings, RedisPrimary};
use parley_actors::Realtime;

/// What `/api/ready` checks.
pub struct Readiness {
    pub db: Db,
    pub redis: Option<Arc<RedisPrimary>>,
    migrated: Arc<AtomicBool>,
}

impl Readiness {
    pub fn migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }
}

pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    push: crate::push::Push,
    server: Server,
    metrics_server: Option<Server>,
    db: Db,
    realtime: Realtime,
    sockets: tokio_util::task::TaskTracker,
    migrated: Arc<AtomicBool>,
    shutdown_timeout: Duration,
}

/// Every socket Parley listens on, bound before anything else starts: a taken port
/// is then a start-up error naming its setting, with no actor or task to unwind.
pub struct Listeners {
    main: TcpListener,
    metrics: Option<TcpListener>,
}

/// A listening address that could not be bound, told in the operator's terms: which
/// setting holds it and what to change.
#[derive(Debug, thiserror::Error)]
#[error("{setting} {addr} {problem}: {hint}")]
pub struct BindError {
    setting: &'static str,
    addr: String,
    problem: String,
    hint: &'static str,
}

impl BindError {
    fn new(setting: &'static str, addr: String, e: &std::io::Error, hint: &'static str) -> Self {
        let problem = if e.kind() == std::io::ErrorKind::AddrInUse {
            "is in use".to_owned()
        } else {
            format!("cannot be listened on ({e})")
        };
        BindError {
            setting,
            addr,
            problem,
            hint,
        }
    }
}

impl Listeners {
    pub fn bind(settings: &Settings) -> Result<Listeners, BindError> {
        let s = &settings.server;
        let main = bind(&s.host, s.port, s.listen_backlog).map_err(|e| {
            BindError::new(
                "server.host:server.port",
                format!("{}:{}", s.host, s.port),
                &e,
                "set server.port (PARLEY__SERVER__PORT)",
            )
        })?;
        let metrics = match settings.metrics.listen.as_str() {
            "" => None,
            addr => Some(TcpListener::bind(addr).map_err(|e| {
                BindError::new(
                    "metrics.listen",
                    addr.to_owned(),
                    &e,
                    "set metrics.listen, or empty to disable",
                )
            })?),
        };
        Ok(Listeners { main, metrics })
    }
}

/// What the servers share: the pools, the realtime core and the HTTP handlers' state.
/// Preparing it connects to (and migrates) the database and starts the actors.
struct Resources {
    db: Db,
    migrated: Arc<AtomicBool>,
    realtime: Realtime,
    db_data: web::Data<Db>,
    settings: web::Data<Settings>,
    realtime_data: web::Data<Realtime>,
    readiness: web::Data<Readiness>,
    jwt: web::Data<JwtKeys>,
    hasher: web::Data<Hasher>,
    throttle: web::Data<LoginThrottle>,
    tickets: web::Data<WsTickets>,
    sessions: web::Data<AuthSessions>,
    chat_limit: web::Data<routes::chats::ChatRateLimit>,
    images: web::Data<crate::media::ImagePool>,
    push: web::Data<crate::push::Push>,
}

impl Resources {
    async fn prepare(settings: Settings) -> anyhow::Result<Resources> {
        let db = Db::connect_nodes(&settings.database.node_urls(), settings.database.pool_max)?
            .with_acquire_timeout(Duration::from_millis(
                settings.database.acquire_timeout_ms.max(1),
            ))
            .with_per_user_connections(settings.database.per_user_connections);
        let migrated = Arc::new(AtomicBool::new(false));
        match prepare_database(&settings, &db).await {
            Ok(()) => migrated.store(true, Ordering::Release),
            // MySQL may come up after us (boot order): serve 503 on /api/ready and keep trying.
            Err(MigrateError::Db(DbError::Unavailable(e))) => {
                tracing::warn!(error = %e, "database unavailable at start; retrying in the background");
                actix_web::rt::spawn(retry_prepare(
                    settings.clone(),
                    db.clone(),
                    migrated.clone(),
                ));
            }
            Err(e) => return Err(e.into()),
        }

        let redis = crate::redis::connect(&settings)?;

        let store = MysqlStore::new(db.clone(), settings.storage.uploads_dir.clone()).await;
        let cluster = redis.as_ref().map(|redis| ClusterSettings {
            redis: redis.clone(),
            prefix: settings.redis.prefix.clone(),
            node_ttl: Duration::from_secs(settings.presence.node_ttl_secs),
        });
        let realtime = Realtime::start(Arc::new(store), settings.realtime(), cluster);

        actix_web::rt::spawn(crate::media::sweep::sweep_unattached(
            db.clone(),
            settings.storage.uploads_dir.clone(),
            Duration::from_secs(settings.storage.unattached_audio_ttl_secs),
        ));
        actix_web::rt::spawn(crate::search_index::run(
            db.clone(),
            settings.messages.search_index_duty_percent,
        ));

        let jwt = web::Data::new(JwtKeys::new(
            settings.jwt_secret(),
            Duration::from_secs(settings.auth.token_ttl_secs),
        ));
        let hasher = web::Data::new(
            Hasher::with_duty(
                settings.auth.pbkdf2_iterations,
                settings.auth.hash_concurrency,
                settings.auth.hash_queue,
                settings.auth.hash_duty_percent,
            )
            .with_busy_delay(Duration::from_millis(settings.auth.busy_delay_ms)),
        );
        // With Redis, tickets and known login sources are shared: nginx may send the
        // socket, or the owner's next login, to another node.
        let (throttle, tickets) = match &redis {
            Some(pool) => (
                LoginThrottle::with_known_sources(
                    &settings,
                    KnownSources::in_redis(pool.clone(), &settings.redis.prefix),
                ),
                WsTickets::in_redis(pool.clone(), &settings.redis.prefix),
            ),
            None => (LoginThrottle::new(&settings), WsTickets::in_memory()),
        };
        // Follows the revocation log from the start: it is how this node learns of
        // sessions revoked by the others (or by `parley admin`).
        let sessions = AuthSessions::new(
            db.clone(),
            realtime.clone(),
            settings.auth.max_sessions_per_user,
            Duration::from_secs(settings.auth.token_ttl_secs),
        );
        sessions.start();
        // Web Push: off the message path, on this runtime (push/engine.rs).
        let push = web::Data::new(crate::push::Push::start(&settings, &db, &realtime)?);
        Ok(Resources {
            push,
            sessions: web::Data::new(sessions),
            db_data: web::Data::new(db.clone()),
            readiness: web::Data::new(Readiness {
                db: db.clone(),
                redis,
                migrated: migrated.clone(),
            }),
            realtime_data: web::Data::new(realtime.clone()),
            chat_limit: web::Data::new(routes::chats::ChatRateLimit::new(&settings)),
            images: web::Data::new(crate::media::ImagePool::new(
                settings.limits.image_workers,
                settings.limits.image_queue,
            )),
            settings: web::Data::new(settings),
            throttle: web::Data::new(throttle),
            tickets: web::Data::new(tickets),
            jwt,
            hasher,
            db,
            migrated,
            realtime,
        })
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let listeners = Listeners::bind(&settings)?;
        let resources = Resources::prepare(settings).await?;
        let sockets = tokio_util::task::TaskTracker::new();
        let port = listeners.main.local_addr()?.port();
        let server = http_server(listeners.main, &resources, sockets.clone())?;
        let (metrics_server, metrics_port) = match listeners.metrics {
            Some(listener) => {
                let port = listener.local_addr()?.port();
                (Some(metrics_server(listener, &resources)?), Some(port))
            }
            None => (None, None),
        };
        let settings = &resources.settings;
        tracing::info!(
            host = %settings.server.host,
            port,
            redis = settings.redis_source().is_some(),
            "parley listening"
        );
        Ok(Application {
            port,
            metrics_port,
            push: resources.push.get_ref().clone(),
            server,
            metrics_server,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
            db: resources.db,
            realtime: resources.realtime,
            sockets,
            migrated: resources.migrated,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Web Push engine and key (tests offer events to it directly).
    pub fn push(&self) -> crate::push::Push {
        self.push.clone()
    }

    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Resolves once the database is migrated (at once, unless MySQL was down at start).
    pub fn ready(&self) -> impl std::future::Future<Output = ()> + 'static {
        let migrated = self.migrated.clone();
        async move {
            while !migrated.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: stop accepting,
    /// answer and store everything accepted, close every WebSocket with 1001, finish
    /// in-flight HTTP requests, close the pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let metrics_handle = self.metrics_server.as_ref().map(Server::handle);
        let realtime = self.realtime.clone();
        let timeout = self.shutdown_timeout;
        let sockets = self.sockets.clone();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            let until = tokio::time::Instant::now() + timeout;
            handle.pause().await;
            realtime.drain(timeout).await;
            // Each socket finishes its closing handshake (bounded by its linger)
            // before the workers, and the tasks they run, are stopped.
            sockets.close();
            if tokio::time::timeout_at(until, sockets.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    open = sockets.len(),
                    "closing handshakes unfinished at the shutdown deadline"
                );
            }
            if let Some(m) = metrics_handle {
                m.stop(true).await;
            }
            handle.stop(true).await;
        });
        if let Some(m) = self.metrics_server {
            actix_web::rt::spawn(m);
        }
        let result = self.server.await;
        self.db.close().await;
        tracing::info!("stopped");
        result
    }
}

/// The API, the SPA and `/ws` on `listener`: actix-web's `HttpServer`, assembled by
/// hand for one thing it cannot do: hand WebSocket upgrades to our own service (see
/// `routes::ws`).
fn http_server(
    listener: TcpListener,
    r: &Resources,
    sockets: tokio_util::task::TaskTracker,
) -> std::io::Result<Server> {
    let settings = r.settings.clone();
    let gate = routes::ws::Gate {
        jwt: r.jwt.clone(),
        settings: settings.clone(),
        realtime: r.realtime.clone(),
        tickets: r.tickets.clone(),
        sessions: r.sessions.clone(),
        sockets,
    };
    let gate_data = web::Data::new(gate.clone());
    let json_limit = settings.limits.json_body_bytes;
    let static_dir = settings.static_files.dir.clone();
    let (db_data, jwt, hasher, throttle, tickets, chat_limit, readiness, realtime_data) = (
        r.db_data.clone(),
        r.jwt.clone(),
        r.hasher.clone(),
        r.throttle.clone(),
        r.tickets.clone(),
        r.chat_limit.clone(),
        r.readiness.clone(),
        r.realtime_data.clone(),
    );
    let settings_data = settings.clone();
    let images = r.images.clone();
    let sessions = r.sessions.clone();
    let push = r.push.clone();
    let app = move || {
        App::new()
            .app_data(extractors::json_config(json_limit))
            .app_data(extractors::query_config())
            .app_data(extractors::path_config())
            .app_data(web::PayloadConfig::new(json_limit))
            .app_data(db_data.clone())
            .app_data(jwt.clone())
            .app_data(hasher.clone())
            .app_data(throttle.clone())
            .app_data(tickets.clone())
            .app_data(sessions.clone())
            .app_data(chat_limit.clone())
            .app_data(images.clone())
            .app_data(readiness.clone())
            .app_data(settings_data.clone())
            .app_data(realtime_data.clone())
            .app_data(gate_data.clone())
            .app_data(push.clone())
            .configure(routes::ws::configure)
            .service(
                web::scope("/api")
                    .configure(routes::configure)
                    .default_service(web::to(routes::api_not_found))
                    .wrap(actix_web::middleware::from_fn(
                        crate::auth::extractor::act_as_caller,
                    )),
            )
            .service(routes::spa::service_worker(static_dir.clone()))
            .service(routes::spa::service(static_dir.clone()))
            .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
            .wrap(TracingLogger::<RequestSpan>::new())
    };
    let user_timeout = Duration::from_secs(settings.presence.client_timeout_secs.max(1));
    let request_timeout = Duration::from_secs(settings.server.request_timeout_secs.max(1));
    let keep_alive = Duration::from_secs(settings.server.keep_alive_secs.max(1));
    let local_addr = listener.local_addr()?;
    let builder = actix_server::Server::build();
    let shutdown_signal = builder.graceful_shutdown_signal();
    Ok(builder
        .workers(settings.server.workers)
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // SIGTERM is ours: the realtime side drains before the server stops.
        .disable_signals()
        .listen("parley", listener, move || {
            let signal = shutdown_signal.clone();
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                // Chat frames are small and latency matters: no Nagle delay.
                .tcp_nodelay(true)
                .client_request_timeout(request_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .keep_alive(keep_alive)
                .local_addr(local_addr)
                .on_connect_ext(move |io: &actix_web::rt::net::TcpStream, _| {
                    use std::os::fd::AsRawFd;
                    abort_when_unacknowledged(io.as_raw_fd(), user_timeout);
                })
                .upgrade(routes::ws::upgrade_service(gate.clone()))
                .finish(map_config(
                    app().into_factory().map_err(|e| e.error_response()),
                    move |_| AppConfig::default(),
                ))
                .tcp()
        })?
        .run())
}

/// Prometheus `/metrics` on its own listener (kept off the public port).
fn metrics_server(listener: TcpListener, r: &Resources) -> std::io::Result<Server> {
    let (rt, dbd, rd, push) = (
        r.realtime_data.clone(),
        r.db_data.clone(),
        r.readiness.clone(),
        r.push.clone(),
    );
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(rt.clone())
            .app_data(push.clone())
            .app_data(dbd.clone())
            .app_data(rd.clone())
            .configure(crate::metrics::configure)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// A listening socket with our backlog (std's `TcpListener::bind` uses 128, which a
/// few hundred simultaneous connects overflow) and, like std, `SO_REUSEADDR`.
fn bind(host: &str, port: u16, backlog: u32) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// TCP_USER_TIMEOUT: the kernel drops a connection whose sent data stays
/// unacknowledged — including a peer that stopped reading and keeps advertising a
/// zero window — for longer than `timeout`. That cuts off a stalled WebSocket client
/// even though its session can no longer run (its connection waits on the socket),
/// at no cost per connection.
fn abort_when_unacknowledged(fd: std::os::fd::RawFd, timeout: Duration) {
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: `fd` is the accepted socket, open while on_connect runs; the option
    // value is a u32 that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("could not set TCP_USER_TIMEOUT");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot listen for signals; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Creates the database when allowed and missing, then applies migrations.
pub async fn prepare_database(settings: &Settings, db: &Db) -> Result<(), MigrateError> {
    if settings.database.create_if_missing {
        // A server that accepts connections but never answers must not hang the start.
        let limit =
            Duration::from_millis(settings.database.acquire_timeout_ms).max(Duration::from_secs(5));
        tokio::time::timeout(
            limit,
            migrate::create_database_if_missing_on_any(&settings.database.node_urls()),
        )
        .await
        .map_err(|_| DbError::Unavailable("the database server did not answer".into()))??;
    }
    migrate::run(db).await?;
    Ok(())
}

async fn retry_prepare(settings: Settings, db: Db, migrated: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        match prepare_database(&settings, &db).await {
            Ok(()) => {
                tracing::info!("database reachable; migrations applied");
                migrated.store(true, Ordering::Release);
                return;
            }
            Err(MigrateError::Db(DbError::Unavailable(_))) => continue,
            Err(e) => {
                tracing::error!(error = %e, "database preparation failed; not retrying");
                return;
            }
        }
    }
}
