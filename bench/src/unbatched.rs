//! `unbatched`: clients as people use them. Every client of a pair sends on a timer
//! of its own (open loop, a few messages a second), each frame is written and
//! flushed on its own, and each recipient answers every message with a
//! `message:delivered` of its own. Nothing is pipelined or coalesced on the client
//! side, so the figure that matters is the server's CPU per message — its wake-ups,
//! system calls and small writes — rather than throughput.

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use crate::common::{dummy_hash, insert_direct_chats, insert_users, max_ms, ms, Ctx, Report};
use crate::engine::{self, Member, Mode, Plan};
use crate::scenarios::{check_outcome, counts};

#[derive(Args, Debug, Clone)]
pub struct UnbatchedArgs {
    /// Pairs of users, each a direct chat; both of a pair send (2 connections a pair).
    #[arg(long, short = 'p', default_value_t = 1000)]
    pub pairs: usize,
    /// Messages per second each client sends, on its own jittered timer.
    #[arg(long, default_value_t = 2.5)]
    pub rate_per_client: f64,
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Seconds allowed after the window for the last acks, deliveries and receipts.
    #[arg(long, default_value_t = 15.0)]
    pub drain: f64,
    /// Extra bytes of content per message.
    #[arg(long, default_value_t = 32)]
    pub pad: usize,
    /// Count the server's system calls (`perf stat`) for this many seconds in the
    /// middle of the window; 0 leaves them uncounted (perf adds a little CPU).
    #[arg(long, default_value_t = 0.0)]
    pub syscalls: f64,
}

/// Pairs whose two users both send into their chat and expect each other.
async fn prepare(ctx: &Ctx, pairs: usize) -> Result<(Vec<Member>, Vec<u64>)> {
    let ids = insert_users(ctx, "u", pairs * 2, &dummy_hash()).await?;
    let pair_ids: Vec<(u64, u64)> = (0..pairs).map(|i| (ids[2 * i], ids[2 * i + 1])).collect();
    let chats = insert_direct_chats(ctx, &pair_ids).await?;
    let mut members = Vec::with_capacity(pairs * 2);
    for (i, &(a, b)) in pair_ids.iter().enumerate() {
        for (me, peer) in [(a, b), (b, a)] {
            members.push(Member {
                user_id: me,
                send_chat: Some(chats[i]),
                expect_from: vec![peer],
            });
        }
    }
    Ok((members, chats))
}

pub async fn unbatched(ctx: &Ctx, a: &UnbatchedArgs) -> Result<Report> {
    if a.pairs == 0 || a.rate_per_client <= 0.0 {
        bail!("unbatched needs --pairs >= 1 and --rate-per-client > 0");
    }
    let mut r = Report::new(
        "unbatched",
        json!({"pairs": a.pairs, "connections": a.pairs * 2, "ratePerClient": a.rate_per_client,
               "offered": a.rate_per_client * (a.pairs * 2) as f64,
               "duration": a.duration, "warmup": a.warmup, "pad": a.pad}),
    );
    let (members, chats) = prepare(ctx, a.pairs).await?;
    let out = engine::run(
        ctx,
        Plan {
            members,
            mode: Mode::PerClient {
                rate: a.rate_per_client,
            },
            delivered: true,
            hidden: false,
            warmup: a.warmup,
            duration: a.duration,
            drain: a.drain,
            pad: a.pad,
            count_syscalls: (a.syscalls > 0.0).then_some(a.syscalls),
            gate: None,
            track_last: false,
        },
    )
    .await?;
    let sent = out.sent_in_window as f64;
    r.fig("messages/s sent", sent / out.window_secs, "msg/s");
    r.fig(
        "messages/s received",
        out.received_in_window as f64 / out.window_secs,
        "msg/s",
    );
    r.fig("send→received p50", ms(&out.latency, 0.5), "ms");
    r.fig("send→received p99", ms(&out.latency, 0.99), "ms");
    r.fig("send→received p99.9", ms(&out.latency, 0.999), "ms");
    r.fig("send→received max", max_ms(&out.latency), "ms");
    r.fig("send→ack p50", ms(&out.ack_latency, 0.5), "ms");
    r.fig("send→ack p99", ms(&out.ack_latency, 0.99), "ms");
    // Per message the server stored and acknowledged in the window (with its
    // delivery and receipt): an overloaded server refusing sends does not look cheap.
    let acked = out.acked_in_window as f64;
    r.fig("messages/s acked", acked / out.window_secs, "msg/s");
    if let Some(cpu) = out.server_cpu_secs {
        r.fig("server CPU", cpu / out.window_secs * 100.0, "% of a core");
        if acked > 0.0 {
            let us = cpu * 1e6 / acked;
            r.fig("server CPU per message (incl. receipt)", us, "µs");
            r.target("unbatched server CPU per message (µs)", us, "<=", 20.0);
        }
    } else {
        eprintln!("parley-bench: no server pid: server CPU not measured (--server-pid)");
    }
    if let Some(s) = &out.syscalls {
        let msgs = s.sent_per_sec * s.secs;
        if msgs > 0.0 {
            r.fig(
                "server syscalls per message (incl. receipt)",
                s.total as f64 / msgs,
                "calls",
            );
            for (name, n) in s.top.iter().take(6) {
                r.fig(
                    &format!("syscalls {name} per message"),
                    *n as f64 / msgs,
                    "calls",
                );
            }
        }
    }
    r.target(
        "unbatched send→received p99 (ms)",
        ms(&out.latency, 0.99),
        "<=",
        10.0,
    );
    r.fig("receipts confirmed", out.receipts as f64, "receipts");
    counts(&mut r, &out, "");
    if let Some(rss) = out.server_rss_max {
        r.fig("server RSS max", rss as f64 / (1024.0 * 1024.0), "MiB");
    }
    check_outcome(ctx, &mut r, &out, &chats, "").await?;
    if out.receipts > out.receipts_expected {
        r.problem(format!(
            "{} delivery receipts reached senders, {} messages delivered",
            out.receipts, out.receipts_expected
        ));
    }
    Ok(r)
}
