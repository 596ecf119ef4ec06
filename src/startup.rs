//! Startup as a library: `Application::build` prepares the database, starts the
//! actors and binds the HTTP server; `main` and the tests call the same function.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App, HttpServer};
use secrecy::ExposeSecret;
use tracing_actix_web::TracingLogger;

use crate::auth::{Hasher, JwtKeys, LoginThrottle};
use crate::config::Settings;
use crate::db::migrate::{self, MigrateError};
use crate::db::store::MysqlStore;
use crate::db::{Db, DbError};
use crate::error::extractors;
use crate::routes;
use crate::telemetry::RequestSpan;
use parley_actors::{Realtime, RealtimeSettings};

/// The actors' settings, from the application's.
fn realtime_settings(s: &Settings) -> RealtimeSettings {
    RealtimeSettings {
        ws_frame_bytes: s.limits.ws_frame_bytes,
        events_per_sec: s.limits.ws_events_per_sec,
        events_burst: s.limits.ws_events_burst,
        ping_interval: Duration::from_secs(s.presence.ping_interval_secs.max(1)),
        client_timeout: Duration::from_secs(s.presence.client_timeout_secs.max(1)),
        ring_timeout: Duration::from_secs(s.calls.ring_timeout_secs.max(1)),
        room_arbiters: s.server.workers.clamp(1, 4),
        ..RealtimeSettings::default()
    }
}

/// What `/api/ready` checks.
pub struct Readiness {
    pub db: Db,
    pub redis: Option<deadpool_redis::Pool>,
    migrated: Arc<AtomicBool>,
}

impl Readiness {
    pub fn migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }
}

pub struct Application {
    port: u16,
    server: Server,
    db: Db,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = Db::connect(
            settings.database.url.expose_secret(),
            settings.database.pool_max,
        )?;
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

        let redis = match &settings.redis.url {
            Some(url) => Some(crate::redis::pool(url)?),
            None => None,
        };

        let store = MysqlStore::new(db.clone()).await;
        let realtime = Realtime::start(Arc::new(store), realtime_settings(&settings));

        actix_web::rt::spawn(crate::audio::sweep_unattached(
            db.clone(),
            settings.storage.uploads_dir.clone(),
            Duration::from_secs(settings.storage.unattached_audio_ttl_secs),
        ));

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
        let port = listener.local_addr()?.port();

        let jwt = web::Data::new(JwtKeys::new(
            settings.jwt_secret(),
            Duration::from_secs(settings.auth.token_ttl_secs),
        ));
        let hasher = web::Data::new(Hasher::new(
            settings.auth.pbkdf2_iterations,
            settings.auth.hash_concurrency,
            settings.auth.hash_queue,
        ));
        let throttle = web::Data::new(LoginThrottle::new(&settings));
        let readiness = web::Data::new(Readiness {
            db: db.clone(),
            redis,
            migrated,
        });
        let db_data = web::Data::new(db.clone());
        let settings_data = web::Data::new(settings.clone());
        let realtime_data = web::Data::new(realtime.clone());
        let json_limit = settings.limits.json_body_bytes;
        let static_dir = settings.static_files.dir.clone();

        let server = HttpServer::new(move || {
            App::new()
                .app_data(extractors::json_config(json_limit))
                .app_data(extractors::query_config())
                .app_data(extractors::path_config())
                .app_data(web::PayloadConfig::new(json_limit))
                .app_data(db_data.clone())
                .app_data(jwt.clone())
                .app_data(hasher.clone())
                .app_data(throttle.clone())
                .app_data(readiness.clone())
                .app_data(settings_data.clone())
                .app_data(realtime_data.clone())
                .configure(routes::ws::configure)
                .service(
                    web::scope("/api")
                        .configure(routes::configure)
                        .default_service(web::to(routes::api_not_found)),
                )
                .service(routes::spa::service(static_dir.clone()))
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
                .wrap(TracingLogger::<RequestSpan>::new())
        })
        .workers(settings.server.workers)
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .listen(listener)?
        .run();

        tracing::info!(
            host = %settings.server.host,
            port,
            redis = settings.redis.url.is_some(),
            "parley listening"
        );
        Ok(Application { port, server, db })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.db.close().await;
        result
    }
}

/// Creates the database when allowed and missing, then applies migrations.
pub async fn prepare_database(settings: &Settings, db: &Db) -> Result<(), MigrateError> {
    if settings.database.create_if_missing {
        migrate::create_database_if_missing(settings.database.url.expose_secret()).await?;
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
