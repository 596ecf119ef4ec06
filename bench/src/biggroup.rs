//! `big-group`: one group of `--members` (default 1,000), every member online, a
//! few messages a second into it from senders taking turns, and a 1:1 load of
//! other users beside it. The 1:1 load runs alone first, then again (fresh pairs:
//! a client id is never reused) together with the group, so its p99 with and
//! without the fan-out compare within one scenario on one server.

use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;

use crate::common::{count_messages, dummy_hash, insert_direct_chats, insert_group, insert_users};
use crate::common::{max_ms, ms, Ctx, Report};
use crate::engine::{self, Member, Mode, Outcome, Plan};

#[derive(Args, Debug, Clone)]
pub struct BigGroupArgs {
    /// Members of the group, all online (one WebSocket each).
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Messages per second into the group, across all its senders.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Members that send, taking turns (the open-loop schedule staggers them, so
    /// consecutive messages come from consecutive senders).
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Seconds measured with the group running (after the warm-up).
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Seconds the 1:1 load runs alone first (after the same warm-up).
    #[arg(long, default_value_t = 20.0)]
    pub alone_duration: f64,
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    #[arg(long, default_value_t = 20.0)]
    pub drain: f64,
    /// 1:1 sender→receiver pairs of the background load (0: none).
    #[arg(long, default_value_t = 100)]
    pub bg_pairs: usize,
    /// Messages per second of the background load, across all its pairs.
    #[arg(long, default_value_t = 1000.0)]
    pub bg_rate: f64,
    #[arg(long, default_value_t = 32)]
    pub pad: usize,
}

/// `pairs` fresh 1:1 chats as engine members (tag keeps each phase's users apart).
async fn pairs(ctx: &Ctx, tag: &str, n: usize) -> Result<(Vec<Member>, Vec<u64>)> {
    let ids = insert_users(ctx, tag, n * 2, &dummy_hash()).await?;
    let pair_ids: Vec<(u64, u64)> = (0..n).map(|i| (ids[2 * i], ids[2 * i + 1])).collect();
    let chats = insert_direct_chats(ctx, &pair_ids).await?;
    let mut members = Vec::with_capacity(n * 2);
    for (i, &(s, r)) in pair_ids.iter().enumerate() {
        members.push(Member {
            user_id: s,
            send_chat: Some(chats[i]),
            expect_from: vec![],
        });
        members.push(Member {
            user_id: r,
            send_chat: None,
            expect_from: vec![s],
        });
    }
    Ok((members, chats))
}

fn plan(members: Vec<Member>, rate: f64, a: &BigGroupArgs, duration: f64) -> Plan {
    Plan {
        members,
        mode: Mode::Open { rate },
        delivered: false,
        hidden: false,
        warmup: a.warmup,
        duration,
        drain: a.drain,
        pad: a.pad,
        count_syscalls: None,
        gate: None,
        track_last: false,
    }
}

/// Loss, duplicates, reordering, errors and MySQL rows = acks, labelled.
async fn check(ctx: &Ctx, r: &mut Report, out: &Outcome, chats: &[u64], label: &str) -> Result<()> {
    for p in out.verdict.problems() {
        r.problem(format!("{label}: {p}"));
    }
    for e in out.errors.iter().take(5) {
        r.problem(format!("{label}: {e}"));
    }
    if out.errors.len() > 5 {
        r.problem(format!("{label}: {} more errors", out.errors.len() - 5));
    }
    let rows = count_messages(ctx, chats).await?;
    if rows != out.verdict.acked {
        r.problem(format!(
            "{label}: {rows} rows in MySQL but {} messages acknowledged",
            out.verdict.acked
        ));
    }
    if out.verdict.sent == 0 {
        r.problem(format!("{label}: nothing was sent"));
    }
    Ok(())
}

pub async fn big_group(ctx: &Ctx, a: &BigGroupArgs) -> Result<Report> {
    if a.members < 2 || a.senders == 0 || a.senders > a.members {
        bail!("big-group needs --members >= 2 and 1 <= --senders <= --members");
    }
    let mut r = Report::new(
        "big-group",
        json!({"members": a.members, "rate": a.rate, "senders": a.senders,
               "duration": a.duration, "alone_duration": a.alone_duration,
               "warmup": a.warmup, "bg_pairs": a.bg_pairs, "bg_rate": a.bg_rate, "pad": a.pad}),
    );

    // 1. The 1:1 load alone.
    let alone = if a.bg_pairs > 0 {
        let (members, chats) = pairs(ctx, "ba", a.bg_pairs).await?;
        let out = engine::run(ctx, plan(members, a.bg_rate, a, a.alone_duration)).await?;
        check(ctx, &mut r, &out, &chats, "1:1 alone").await?;
        Some(out)
    } else {
        None
    };

    // 2. The group, and (fresh pairs) the same 1:1 load beside it, started together.
    let ids = insert_users(ctx, "g", a.members, &dummy_hash()).await?;
    let chat = insert_group(ctx, &format!("bench {} big group", ctx.run_id), &ids).await?;
    let senders = &ids[..a.senders];
    let members: Vec<Member> = ids
        .iter()
        .enumerate()
        .map(|(i, &u)| Member {
            user_id: u,
            send_chat: (i < a.senders).then_some(chat),
            expect_from: senders.iter().copied().filter(|&s| s != u).collect(),
        })
        .collect();
    let gate = Arc::new(tokio::sync::Barrier::new(if a.bg_pairs > 0 {
        2
    } else {
        1
    }));
    let mut group_plan = plan(members, a.rate, a, a.duration);
    group_plan.gate = Some(gate.clone());
    group_plan.track_last = true;
    let (group, beside) = if a.bg_pairs > 0 {
        let (members, chats) = pairs(ctx, "bb", a.bg_pairs).await?;
        let mut bg_plan = plan(members, a.bg_rate, a, a.duration);
        bg_plan.gate = Some(gate);
        let (g, b) = tokio::join!(engine::run(ctx, group_plan), engine::run(ctx, bg_plan));
        (g?, Some((b?, chats)))
    } else {
        (engine::run(ctx, group_plan).await?, None)
    };

    let dps = group.received_in_window as f64 / group.window_secs;
    r.fig("group deliveries/s", dps, "deliveries/s");
    r.fig(
        "group messages/s sent",
        group.sent_in_window as f64 / group.window_secs,
        "msg/s",
    );
    r.fig(
        "send→received p50 (all deliveries)",
        ms(&group.latency, 0.5),
        "ms",
    );
    r.fig(
        "send→received p99 (all deliveries)",
        ms(&group.latency, 0.99),
        "ms",
    );
    r.fig(
        "send→received p99.9 (all deliveries)",
        ms(&group.latency, 0.999),
        "ms",
    );
    r.fig(
        "send→received max (all deliveries)",
        max_ms(&group.latency),
        "ms",
    );
    r.fig("send→last member p50", ms(&group.last_latency, 0.5), "ms");
    r.fig("send→last member p99", ms(&group.last_latency, 0.99), "ms");
    r.fig(
        "send→last member p99.9",
        ms(&group.last_latency, 0.999),
        "ms",
    );
    r.fig("send→last member max", max_ms(&group.last_latency), "ms");
    r.fig("group deliveries", group.verdict.delivered as f64, "msgs");
    r.fig("group messages acked", group.verdict.acked as f64, "msgs");
    // Everything the server did in the window (the 1:1 load's deliveries count as
    // deliveries too), and the part above the 1:1 load alone, per group delivery.
    let bg_in_window = beside.as_ref().map_or(0, |(b, _)| b.received_in_window);
    if let Some(cpu) = group.server_cpu_secs {
        let all = group.received_in_window + bg_in_window;
        r.fig(
            "server CPU (window)",
            cpu / group.window_secs * 100.0,
            "% of a core",
        );
        if all > 0 {
            r.fig(
                "server CPU per delivery (all)",
                cpu * 1e6 / all as f64,
                "µs",
            );
        }
        if let (Some(alone), true) = (&alone, group.received_in_window > 0) {
            if let Some(base) = alone.server_cpu_secs {
                let base_rate = base / alone.window_secs;
                let extra = (cpu - base_rate * group.window_secs).max(0.0);
                r.fig(
                    "server CPU per group delivery (above the 1:1 load)",
                    extra * 1e6 / group.received_in_window as f64,
                    "µs",
                );
            }
        }
    }
    if let Some(rss) = group.server_rss_max {
        r.fig("server RSS max", rss as f64 / (1024.0 * 1024.0), "MiB");
    }
    let last_p99 = ms(&group.last_latency, 0.99);
    r.target(
        &format!(
            "big-group {} members: p99 to the last member (ms)",
            a.members
        ),
        last_p99,
        "<=",
        100.0,
    );
    r.target(
        &format!("big-group {} members (deliveries/s)", a.members),
        dps,
        ">=",
        10_000.0,
    );
    if let (Some(alone), Some((b, _))) = (&alone, &beside) {
        let p_alone = ms(&alone.latency, 0.99);
        let p_beside = ms(&b.latency, 0.99);
        r.fig("1:1 p99 alone", p_alone, "ms");
        r.fig("1:1 p99 with the group", p_beside, "ms");
        r.fig("1:1 p50 alone", ms(&alone.latency, 0.5), "ms");
        r.fig("1:1 p50 with the group", ms(&b.latency, 0.5), "ms");
        r.fig(
            "1:1 messages/s with the group",
            b.received_in_window as f64 / b.window_secs,
            "msg/s",
        );
        let ratio = if p_alone > 0.0 {
            p_beside / p_alone
        } else {
            f64::INFINITY
        };
        r.fig("1:1 p99 ratio (with group / alone)", ratio, "×");
        r.target(
            "big-group: 1:1 p99 with the group / alone",
            ratio,
            "<=",
            2.0,
        );
    }
    check(ctx, &mut r, &group, &[chat], "group").await?;
    if group.verdict.delivered != group.verdict.expected_deliveries {
        r.problem(format!(
            "group: {} deliveries, {} expected",
            group.verdict.delivered, group.verdict.expected_deliveries
        ));
    }
    if let Some((b, chats)) = &beside {
        check(ctx, &mut r, b, chats, "1:1 with the group").await?;
    }
    Ok(r)
}
