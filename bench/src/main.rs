//! parley-bench: the load generator for Parley. It speaks docs/PROTOCOL.md like any
//! client, prepares its own users and chats (straight in MySQL), runs one scenario,
//! prints a table and one JSON line of figures, and checks correctness as it
//! measures: a run with any loss, duplicate or reordering exits non-zero.

mod check;
mod common;
mod engine;
mod idle;
mod report;
mod scaling;
mod scenarios;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use common::{Common, Ctx, Report};

#[derive(Parser, Debug)]
#[command(
    name = "parley-bench",
    version,
    about = "Load generator and correctness checker for Parley"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// P sender→receiver pairs, W messages in flight per sender.
    Throughput(scenarios::ThroughputArgs),
    /// Open loop at a fixed offered rate; latency from the scheduled send time.
    Latency(scenarios::LatencyArgs),
    /// Groups of G members, all online; deliveries/s and delivery latency.
    Fanout(scenarios::FanoutArgs),
    /// N authenticated idle connections; server RSS and CPU per connection.
    Idle(idle::IdleArgs),
    /// Logins beyond hashing capacity while the latency scenario runs.
    LoginStorm(scenarios::LoginStormArgs),
    /// A chat with many messages: page latency; a user with many chats: chat list latency.
    History(scenarios::HistoryArgs),
    /// Every scenario at small scale with the correctness checks on.
    Smoke,
    /// Markdown from JSON lines (results table, README section).
    Report(report::ReportArgs),
    /// A model, no server: Parley nodes, writer load and Redis load as users grow,
    /// from the measured costs (docs/ARCHITECTURE.md, Scaling).
    Scaling(scaling::ScalingArgs),
    /// Drops a database (run.sh cleans up with it).
    #[command(hide = true)]
    DropDb,
    #[command(hide = true)]
    IdleWorker,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("parley-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<bool> {
    match cli.cmd {
        Cmd::IdleWorker => {
            idle::worker().await?;
            return Ok(true);
        }
        Cmd::Report(a) => {
            report::write(&a)?;
            return Ok(true);
        }
        Cmd::Scaling(a) => {
            scaling::run(&a)?;
            return Ok(true);
        }
        Cmd::DropDb => {
            drop_db(&cli.common.database_url).await?;
            return Ok(true);
        }
        _ => {}
    }
    let ctx = Ctx::new(cli.common.clone()).await?;
    let result = match cli.cmd {
        Cmd::Throughput(a) => one(&ctx, scenarios::throughput(&ctx, &a).await, "throughput"),
        Cmd::Latency(a) => one(&ctx, scenarios::latency(&ctx, &a).await, "latency"),
        Cmd::Fanout(a) => one(&ctx, scenarios::fanout(&ctx, &a).await, "fanout"),
        Cmd::Idle(a) => one(&ctx, idle::idle(&ctx, &a).await, "idle"),
        Cmd::LoginStorm(a) => one(&ctx, scenarios::login_storm(&ctx, &a).await, "login-storm"),
        Cmd::History(a) => one(&ctx, scenarios::history(&ctx, &a).await, "history"),
        Cmd::Smoke => smoke(&ctx).await,
        Cmd::Report(_) | Cmd::Scaling(_) | Cmd::DropDb | Cmd::IdleWorker => unreachable!(),
    };
    ctx.pool.clone().disconnect().await.ok();
    result
}

/// Prints and records one scenario's report; an error becomes a failed report.
fn one(ctx: &Ctx, res: Result<Report>, name: &str) -> Result<bool> {
    let report = match res {
        Ok(r) => r,
        Err(e) => {
            let mut r = Report::new(name, serde_json::json!({}));
            r.problem(format!("scenario failed: {e:#}"));
            r
        }
    };
    report.print();
    report.write_json(ctx.common.json_out.as_deref())?;
    Ok(report.passed)
}

/// Every scenario at small scale, against the given server.
async fn smoke(ctx: &Ctx) -> Result<bool> {
    use scenarios::*;
    let mut passed = 0;
    let mut failed = 0;
    let mut tally = |ok: bool| if ok { passed += 1 } else { failed += 1 };

    let lat = LatencyArgs {
        rate: 200.0,
        pairs: 10,
        duration: 3.0,
        warmup: 1.0,
        drain: 10.0,
        pad: 16,
        push_hang: false,
    };
    let t = ThroughputArgs {
        pairs: 5,
        window: 4,
        delivered: false,
        duration: 3.0,
        warmup: 1.0,
        drain: 10.0,
        pad: 16,
    };
    // One tally per scenario: throughput counts as passed when both variants are clean.
    let plain = one(ctx, throughput(ctx, &t).await, "throughput")?;
    let td = ThroughputArgs {
        delivered: true,
        ..t
    };
    let with_receipts = one(ctx, throughput(ctx, &td).await, "throughput")?;
    tally(plain && with_receipts);
    tally(one(ctx, latency(ctx, &lat).await, "latency")?);
    let f = FanoutArgs {
        groups: 2,
        size: 5,
        senders: 2,
        rate: 100.0,
        duration: 3.0,
        warmup: 1.0,
        drain: 10.0,
        pad: 16,
    };
    tally(one(ctx, fanout(ctx, &f).await, "fanout")?);
    let i = idle::IdleArgs {
        connections: 200,
        per_worker: 100,
        per_address: 100,
        concurrency: 50,
        hold: 1.0,
    };
    tally(one(ctx, idle::idle(ctx, &i).await, "idle")?);
    let ls = LoginStormArgs {
        in_flight: 20,
        users: 20,
        login_timeout: 10.0,
        latency: LatencyArgs {
            duration: 3.0,
            ..lat
        },
    };
    tally(one(ctx, login_storm(ctx, &ls).await, "login-storm")?);
    let h = HistoryArgs {
        messages: 20_000,
        batch: 5000,
        requests: 30,
        chats: 100,
        list_requests: 10,
    };
    tally(one(ctx, history(ctx, &h).await, "history")?);

    println!("bench smoke: {passed} passed, {failed} failed");
    Ok(failed == 0)
}

async fn drop_db(url: &str) -> Result<()> {
    use mysql_async::prelude::Queryable;
    let (server, name) = url
        .rsplit_once('/')
        .ok_or_else(|| anyhow::anyhow!("database URL without a name"))?;
    let name = name.split('?').next().unwrap_or_default();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!("refusing to drop database {name:?}");
    }
    let mut conn = mysql_async::Conn::from_url(format!("{server}/")).await?;
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await?;
    conn.disconnect().await?;
    Ok(())
}
