use std::path::PathBuf;

use clap::{Parser, Subcommand};
use parley::config::Settings;
use parley::startup::{prepare_database, Application};
use parley::{db::Db, telemetry};

/// Parley: a self-hosted realtime messenger.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (TOML). Default: /etc/parley/parley.toml when it exists.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Development mode: generate a throwaway JWT secret when none is configured.
    #[arg(long, global = true)]
    dev: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket (the default).
    Serve,
    /// Create the database if needed, apply pending migrations, and exit.
    Migrate,
    /// Administer the community: users, invites, stats (same config and database as
    /// serve; e.g. `sudo -u parley parley --config /etc/parley/parley.toml admin stats`).
    Admin(parley::admin::cli::AdminArgs),
}

/// Every WebSocket is a file descriptor: lift the soft limit to the hard one.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    raise_open_file_limit();
    // Commands that need neither settings nor a database (key generation): deploy.sh
    // runs them before any configuration exists.
    if let Some(Command::Admin(args)) = &cli.command {
        if parley::admin::cli::run_offline(args) {
            return Ok(());
        }
    }
    // Migrations need no JWT secret: load as --dev so `parley migrate` works with
    // only a database URL, but never let a generated secret reach `serve`.
    let dev = cli.dev || matches!(cli.command, Some(Command::Migrate | Command::Admin(_)));
    let settings = match Settings::load(cli.config.as_deref(), dev) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("parley: {e}");
            std::process::exit(2);
        }
    };
    // The admin commands print for a person: no log lines among them.
    if !matches!(cli.command, Some(Command::Admin(_))) {
        telemetry::init(&settings.log);
    }
    actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app = match Application::build(settings).await {
                    Ok(app) => app,
                    // Said once, plainly, and gone: nothing a backtrace or the runtime's
                    // teardown would add helps the operator.
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "parley cannot start");
                        eprintln!("parley: {e:#}");
                        std::process::exit(1);
                    }
                };
                // Ready means ready: systemd (Type=notify) hears it once migrations are in.
                let ready = app.ready();
                actix_web::rt::spawn(async move {
                    ready.await;
                    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
                        tracing::warn!(error = %e, "sd_notify READY failed");
                    }
                });
                app.run_until_stopped().await?;
            }
            Command::Migrate => {
                let db =
                    Db::connect_nodes(&settings.database.node_urls(), settings.database.pool_max)?
                        .with_acquire_timeout(std::time::Duration::from_millis(
                            settings.database.acquire_timeout_ms.max(1),
                        ));
                let result = prepare_database(&settings, &db).await;
                db.close().await;
                result?;
                tracing::info!("migrations up to date");
            }
            Command::Admin(args) => {
                let db = Db::connect_nodes(
                    &settings.database.node_urls(),
                    settings.database.pool_max.min(4),
                )?
                .with_acquire_timeout(std::time::Duration::from_millis(
                    settings.database.acquire_timeout_ms.max(1),
                ));
                // The schema this binary expects (a no-op when `serve` is running it).
                let result = match prepare_database(&settings, &db).await {
                    Ok(()) => parley::admin::cli::run(&settings, &db, args)
                        .await
                        .map_err(|e| format!("{e}")),
                    Err(e) => Err(format!("{e}")),
                };
                db.close().await;
                if let Err(e) = result {
                    eprintln!("parley admin: {e}");
                    std::process::exit(1);
                }
            }
        }
        Ok(())
    })
}
