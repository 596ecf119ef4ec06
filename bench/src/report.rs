//! `report`: turns the JSON lines of a run into a Markdown results table and the
//! README's draft "Performance" section.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;

use crate::common::fmt_num;

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// The JSON lines written with --json-out.
    #[arg(long)]
    pub jsonl: PathBuf,
    /// Where to write the Markdown results.
    #[arg(long)]
    pub md: Option<PathBuf>,
    /// Where to write the README "Performance" section.
    #[arg(long)]
    pub readme: Option<PathBuf>,
}

/// The README's targets: scenario, what is measured, the goal, and the prefix of
/// the target name the scenario reports it under.
const TARGETS: &[(&str, &str, &str, &str)] = &[
    (
        "throughput",
        "P=100 W=10, msg/s stored+acked+received",
        "≥ 17,000 msg/s",
        "throughput P=100 W=10 (msg/s)",
    ),
    (
        "throughput",
        "P=100 W=10 --delivered, msg/s (+ receipts)",
        "≥ 10,000 msg/s",
        "throughput P=100 W=10 --delivered",
    ),
    (
        "throughput",
        "server RSS during throughput",
        "≤ 150 MiB",
        "server RSS during throughput",
    ),
    (
        "latency",
        "5,000 msg/s open loop, p99",
        "≤ 15 ms",
        "latency at 5000/s p99 (ms)",
    ),
    (
        "latency",
        "5,000 msg/s open loop, p99.9",
        "≤ 50 ms",
        "latency at 5000/s p99.9",
    ),
    (
        "fanout",
        "groups of 100, deliveries/s",
        "≥ 100,000 /s",
        "fanout groups of 100",
    ),
    (
        "idle",
        "19,000 connections, server RSS per connection",
        "≤ 8 KiB",
        "idle 19000 conns RSS per conn",
    ),
    (
        "idle",
        "connection set-up rate",
        "≥ 5,000 /s",
        "idle set-up rate",
    ),
    (
        "login-storm",
        "messaging p99 during the storm / without",
        "≤ 2×",
        "login-storm messaging p99",
    ),
    (
        "login-storm",
        "logins timed out (excess answered 429/503 fast)",
        "0",
        "login-storm timeouts",
    ),
    (
        "history",
        "oldest page p99 (1,000,000 messages)",
        "≤ 10 ms, ≤ 1.5× newest",
        "history oldest page p99",
    ),
    (
        "history",
        "newest page p99",
        "≤ 10 ms",
        "history newest page p99",
    ),
    (
        "history",
        "oldest p99 / newest p99",
        "≤ 1.5",
        "history oldest p99 / newest p99",
    ),
];

/// The run with the median value of a target (the lower middle of an even count),
/// and whether every run passed its correctness checks.
fn median_of(runs: &[(Value, bool)]) -> Option<(Value, bool)> {
    let mut sorted: Vec<&(Value, bool)> = runs.iter().collect();
    sorted.sort_by(|a, b| {
        let v = |x: &(Value, bool)| x.0["value"].as_f64().unwrap_or(0.0);
        v(a).total_cmp(&v(b))
    });
    let mid = sorted.get(sorted.len().checked_sub(1)? / 2)?;
    Some((mid.0.clone(), runs.iter().all(|(_, p)| *p)))
}

pub fn write(a: &ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.jsonl).with_context(|| a.jsonl.display().to_string())?;
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let first = lines.first().cloned().unwrap_or(Value::Null);
    let commit = first["commit"].as_str().unwrap_or("unknown");
    let date = first["date"].as_str().unwrap_or("");
    let machine = &first["machine"];
    let machine_txt = format!(
        "{} cores, {}, {} MiB RAM",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("unknown CPU"),
        machine["memMiB"]
    );
    if let Some(md) = &a.md {
        let mut s = format!("# Parley benchmark {date}\n\nCommit `{commit}`, {machine_txt}.\n\n");
        s.push_str("| scenario | result | settings |\n|---|---|---|\n");
        for l in &lines {
            s.push_str(&format!(
                "| {} | {} | `{}` |\n",
                l["scenario"].as_str().unwrap_or("?"),
                if l["passed"] == true {
                    "passed"
                } else {
                    "FAILED"
                },
                l["settings"]
            ));
        }
        s.push_str("\n| scenario | figure | value | unit |\n|---|---|---:|---|\n");
        for l in &lines {
            let sc = l["scenario"].as_str().unwrap_or("?");
            if let Some(figs) = l["figures"].as_object() {
                for (k, v) in figs {
                    let unit = l["units"][k].as_str().unwrap_or("");
                    s.push_str(&format!(
                        "| {sc} | {k} | {} | {unit} |\n",
                        fmt_num(v.as_f64().unwrap_or(0.0))
                    ));
                }
            }
        }
        s.push_str("\n| target | measured | goal | met |\n|---|---:|---|---|\n");
        for l in &lines {
            for t in l["targets"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "| {} | {} | {} {} | {} |\n",
                    t["name"].as_str().unwrap_or("?"),
                    fmt_num(t["value"].as_f64().unwrap_or(0.0)),
                    t["op"].as_str().unwrap_or(""),
                    fmt_num(t["limit"].as_f64().unwrap_or(0.0)),
                    if t["met"] == true { "yes" } else { "**no**" }
                ));
            }
        }
        let problems: Vec<String> = lines
            .iter()
            .flat_map(|l| {
                let sc = l["scenario"].as_str().unwrap_or("?").to_string();
                l["problems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |p| format!("- {sc}: {}", p.as_str().unwrap_or("")))
            })
            .collect();
        if !problems.is_empty() {
            s.push_str("\n## Problems\n\n");
            s.push_str(&problems.join("\n"));
            s.push('\n');
        }
        std::fs::write(md, s)?;
    }
    if let Some(readme) = &a.readme {
        let mut s = String::from(
            "## Performance\n\n\
             `bench/` holds `parley-bench`, a load generator that speaks the wire protocol\n\
             like any client and checks correctness while it measures (every message\n\
             acknowledged once, received once per recipient in per-sender order, and\n\
             stored in MySQL). `bench/run.sh` builds the release binary, starts a fresh\n\
             Parley on a fresh database, runs every scenario and writes\n\
             `bench/results/<date>-<commit>.md` and `.jsonl`; it also regenerates this\n\
             section. `bench/run.sh --smoke` runs every scenario at small scale (CI).\n\n",
        );
        s.push_str(&format!(
            "Reference: commit `{commit}`, {date}, {machine_txt}; server and bench on the same machine.\n\n"
        ));
        s.push_str("| scenario | figure | target | reference |\n|---|---|---|---|\n");
        for (sc, fig, goal, prefix) in TARGETS {
            let runs: Vec<(Value, bool)> = lines
                .iter()
                .filter_map(|l| {
                    l["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|t| t["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
                        .map(|t| (t.clone(), l["passed"] == true))
                })
                .collect();
            let reference = match median_of(&runs) {
                Some((t, all_passed)) => {
                    let values: Vec<String> = runs
                        .iter()
                        .map(|(t, _)| fmt_num(t["value"].as_f64().unwrap_or(0.0)))
                        .collect();
                    format!(
                        "{}{}{}{}",
                        fmt_num(t["value"].as_f64().unwrap_or(0.0)),
                        if t["met"] == true { "" } else { " (not met)" },
                        if runs.len() > 1 {
                            format!(" (median of {}: {})", runs.len(), values.join(", "))
                        } else {
                            String::new()
                        },
                        if all_passed {
                            ""
                        } else {
                            ", a run FAILED its checks"
                        }
                    )
                }
                None => "not measured".into(),
            };
            s.push_str(&format!("| {sc} | {fig} | {goal} | {reference} |\n"));
        }
        std::fs::write(readme, s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_median_run_is_reported_and_a_failed_run_is_remembered() {
        let run = |v: f64, passed: bool| (json!({"value": v, "met": v >= 2.0}), passed);
        let (t, all) = median_of(&[run(3.0, true), run(1.0, true), run(2.0, false)]).unwrap();
        assert_eq!(t["value"], 2.0);
        assert!(!all);
        let (t, all) = median_of(&[run(5.0, true), run(4.0, true)]).unwrap();
        assert_eq!(t["value"], 4.0);
        assert!(all);
        assert!(median_of(&[]).is_none());
    }
}
