//! `scaling`: what a Parley deployment needs as users grow, from the costs measured
//! on this machine (README, Performance; docs/ARCHITECTURE.md, Scaling). A model,
//! not a load test: it multiplies measured per-message, per-delivery and
//! per-connection costs by a traffic profile and says which limit is hit first —
//! the single database writer, the one Redis, or nothing but more Parley nodes.
//!
//! Every input is a flag, so an operator can put in their own figures (a faster
//! disk, more cores, another traffic profile) and see where the limits move.

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct ScalingArgs {
    /// User counts to model (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000u64, 10_000, 100_000, 1_000_000, 10_000_000])]
    pub users: Vec<u64>,
    /// Messages each user sends a day (WhatsApp's published totals are about 50).
    #[arg(long, default_value_t = 50.0)]
    pub messages_per_user_day: f64,
    /// Busiest hour's rate over the day's average.
    #[arg(long, default_value_t = 3.0)]
    pub peak_factor: f64,
    /// Share of messages sent to groups (the rest are direct, one recipient).
    #[arg(long, default_value_t = 0.3)]
    pub group_share: f64,
    /// Members of a typical group (the sender included).
    #[arg(long, default_value_t = 20.0)]
    pub group_size: f64,
    /// Share of users online (with a WebSocket) in the busiest hour.
    #[arg(long, default_value_t = 0.2)]
    pub online_share: f64,
    /// WebSockets per online user (phone, browser, …).
    #[arg(long, default_value_t = 1.3)]
    pub devices: f64,
    /// New WebSockets per user a day (reconnects, app starts): connect cost and
    /// Redis presence writes.
    #[arg(long, default_value_t = 20.0)]
    pub connects_per_user_day: f64,

    /// Parley CPU per message, sender side (decode, store call, ack), µs. Measured:
    /// README "Where the time goes", 13 µs a message for one send + ack + one delivery.
    #[arg(long, default_value_t = 9.0)]
    pub parley_us_per_message: f64,
    /// Parley CPU per delivery to one WebSocket (frame shared, written once per
    /// session), µs: the recipient's third of the measured 13 µs.
    #[arg(long, default_value_t = 4.0)]
    pub parley_us_per_delivery: f64,
    /// Parley CPU per bus message a node receives from another node, µs (decode the
    /// batch, fan out locally: like a delivery's decode).
    #[arg(long, default_value_t = 4.0)]
    pub parley_us_per_bus_message: f64,
    /// Parley CPU per connection set-up (token check, contacts, catch-up), µs.
    /// Measured: 0.066 ms (README, idle set-up rate).
    #[arg(long, default_value_t = 66.0)]
    pub parley_us_per_connect: f64,
    /// Server memory per idle WebSocket, KiB (README: 5.47 KiB; 12–14 on this box's
    /// kernel, so the larger figure is the default).
    #[arg(long, default_value_t = 14.0)]
    pub kib_per_connection: f64,
    /// Cores of one Parley node.
    #[arg(long, default_value_t = 8.0)]
    pub node_cores: f64,
    /// Memory of one Parley node, GiB.
    #[arg(long, default_value_t = 16.0)]
    pub node_mem_gib: f64,
    /// Share of a node's CPU and memory planned for at peak (the rest absorbs a
    /// failed node's users and bursts).
    #[arg(long, default_value_t = 0.5)]
    pub node_target: f64,
    /// Fewest Parley nodes (two: one may fail or be upgraded).
    #[arg(long, default_value_t = 2)]
    pub min_nodes: u64,

    /// Messages a second the single database writer sustains (stored, durable,
    /// acknowledged). Default: the README's quiet single-server figure (53,465 msg/s)
    /// times the Galera/single ratio measured in issue 21 (6,469 / 13,155 = 0.49,
    /// three nodes on the same two cores): a floor, since on machines of their own
    /// the other nodes' appliers do not take the writer's cores.
    #[arg(long, default_value_t = 26_000.0)]
    pub writer_msgs_per_sec: f64,
    /// Share of the writer's capacity planned for at peak.
    #[arg(long, default_value_t = 0.5)]
    pub writer_target: f64,
    /// Redis commands a second one Redis primary (one core) serves, pipelined as
    /// Parley sends them. Measured with redis-benchmark on this (busy) box, pipeline
    /// 16: SMEMBERS 264,550/s, PUBLISH 423,729/s; the slower one, rounded down.
    #[arg(long, default_value_t = 250_000.0)]
    pub redis_ops_per_sec: f64,
    /// Share of Redis's capacity planned for at peak.
    #[arg(long, default_value_t = 0.5)]
    pub redis_target: f64,
    /// Messages one bus batch carries on average (a PUBLISH per remote node per
    /// batch): 1 is the worst case, a quiet server.
    #[arg(long, default_value_t = 1.0)]
    pub messages_per_batch: f64,
    /// Bytes a stored message takes in MariaDB (row and indexes, text messages).
    #[arg(long, default_value_t = 250.0)]
    pub bytes_per_message: f64,
}

impl Default for ScalingArgs {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            a: ScalingArgs,
        }
        Wrap::parse_from(["scaling"]).a
    }
}

/// One row of the model: a user count and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub users: u64,
    pub peak_msgs_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub connections: f64,
    pub nodes: u64,
    /// What decides the node count: "cpu", "memory" or "minimum".
    pub nodes_bound_by: &'static str,
    pub cores_used: f64,
    /// Peak messages over the writer's capacity (1.0 = saturated).
    pub writer_load: f64,
    pub redis_ops_per_sec: f64,
    /// Peak Redis commands over one Redis's capacity.
    pub redis_load: f64,
    pub publishes_per_message: f64,
    pub storage_gib_per_year: f64,
}

impl ScalingArgs {
    fn check(&self) -> Result<()> {
        let positive = [
            ("--messages-per-user-day", self.messages_per_user_day),
            ("--peak-factor", self.peak_factor),
            ("--group-size", self.group_size),
            ("--devices", self.devices),
            ("--parley-us-per-message", self.parley_us_per_message),
            ("--kib-per-connection", self.kib_per_connection),
            ("--node-cores", self.node_cores),
            ("--node-mem-gib", self.node_mem_gib),
            ("--writer-msgs-per-sec", self.writer_msgs_per_sec),
            ("--redis-ops-per-sec", self.redis_ops_per_sec),
            ("--messages-per-batch", self.messages_per_batch),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a number above 0 (got {v})");
            }
        }
        let non_negative = [
            ("--parley-us-per-delivery", self.parley_us_per_delivery),
            (
                "--parley-us-per-bus-message",
                self.parley_us_per_bus_message,
            ),
            ("--parley-us-per-connect", self.parley_us_per_connect),
            ("--connects-per-user-day", self.connects_per_user_day),
            ("--bytes-per-message", self.bytes_per_message),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{name} must be a number of at least 0 (got {v})");
            }
        }
        let shares = [
            ("--group-share", self.group_share, true),
            ("--online-share", self.online_share, false),
            ("--node-target", self.node_target, false),
            ("--writer-target", self.writer_target, false),
            ("--redis-target", self.redis_target, false),
        ];
        for (name, v, zero_ok) in shares {
            if !(v.is_finite() && v <= 1.0 && (v > 0.0 || (zero_ok && v == 0.0))) {
                bail!("{name} must be a share between 0 and 1 (got {v})");
            }
        }
        if self.group_size < 2.0 {
            bail!("--group-size counts the sender: at least 2");
        }
        if self.users.is_empty() || self.users.contains(&0) {
            bail!("--users: a comma-separated list of user counts above 0");
        }
        if self.min_nodes == 0 {
            bail!("--min-nodes must be at least 1");
        }
        Ok(())
    }

    /// Recipients of an average message (not the sender).
    fn recipients(&self) -> f64 {
        (1.0 - self.group_share) + self.group_share * (self.group_size - 1.0)
    }

    /// PUBLISHes an average message costs on `nodes` nodes: one per remote node that
    /// hosts an online recipient's session (sessions spread evenly over the nodes),
    /// shared by the messages of one batch.
    fn publishes_per_message(&self, nodes: u64) -> f64 {
        if nodes <= 1 {
            return 0.0;
        }
        let n = nodes as f64;
        let direct = self.online_share * self.devices; // expected sessions, direct
        let group = self.online_share * self.devices * (self.group_size - 1.0);
        // A remote node is hit when at least one of k sessions lives there:
        // 1 - (1 - 1/n)^k, for each of the n - 1 remote nodes.
        let hit = |k: f64| (n - 1.0) * (1.0 - (1.0 - 1.0 / n).powf(k));
        ((1.0 - self.group_share) * hit(direct) + self.group_share * hit(group))
            / self.messages_per_batch
    }

    /// The model for one user count.
    pub fn row(&self, users: u64) -> Row {
        let u = users as f64;
        let peak = u * self.messages_per_user_day / 86_400.0 * self.peak_factor;
        let sessions_per_recipient = self.online_share * self.devices;
        let deliveries = peak * self.recipients() * sessions_per_recipient;
        let connections = u * self.online_share * self.devices;
        let connects = u * self.connects_per_user_day / 86_400.0 * self.peak_factor;
        let mem_nodes = connections * self.kib_per_connection
            / (1024.0 * 1024.0)
            / (self.node_mem_gib * self.node_target);
        // The bus cost grows with the node count, which depends on it: iterate to the
        // fixed point (a handful of steps; the count only grows).
        let mut nodes = self.min_nodes;
        let mut cores = 0.0;
        let mut publishes = 0.0;
        let mut bound = "minimum";
        for _ in 0..64 {
            publishes = self.publishes_per_message(nodes);
            let us = peak * self.parley_us_per_message
                + deliveries * self.parley_us_per_delivery
                + peak * publishes * self.parley_us_per_bus_message
                + connects * self.parley_us_per_connect;
            cores = us / 1e6;
            let cpu_nodes = cores / (self.node_cores * self.node_target);
            let need = cpu_nodes.max(mem_nodes).ceil().max(self.min_nodes as f64) as u64;
            bound = if (need as f64) <= self.min_nodes as f64 {
                "minimum"
            } else if cpu_nodes >= mem_nodes {
                "cpu"
            } else {
                "memory"
            };
            if need <= nodes {
                break;
            }
            nodes = need;
        }
        // Redis: one SMEMBERS per recipient (pipelined per batch, but each a command),
        // the PUBLISHes, and presence on connect and disconnect (the node set write and
        // the online/offline script: about 4 commands a connection).
        let redis = if nodes > 1 {
            peak * (self.recipients() + publishes) + connects * 4.0
        } else {
            0.0
        };
        Row {
            users,
            peak_msgs_per_sec: peak,
            deliveries_per_sec: deliveries,
            connections,
            nodes,
            nodes_bound_by: bound,
            cores_used: cores,
            writer_load: peak / self.writer_msgs_per_sec,
            redis_ops_per_sec: redis,
            redis_load: redis / self.redis_ops_per_sec,
            publishes_per_message: publishes,
            storage_gib_per_year: u * self.messages_per_user_day * 365.0 * self.bytes_per_message
                / (1024.0 * 1024.0 * 1024.0),
        }
    }

    /// The smallest user count (to 1%) at which `over` first holds, searched up to
    /// a billion users; None when it never does.
    fn threshold(&self, over: impl Fn(&Row) -> bool) -> Option<u64> {
        let (mut lo, mut hi) = (1u64, 1_000_000_000u64);
        if !over(&self.row(hi)) {
            return None;
        }
        if over(&self.row(lo)) {
            return Some(lo);
        }
        while hi - lo > lo / 100 + 1 {
            let mid = lo + (hi - lo) / 2;
            if over(&self.row(mid)) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }

    /// Where each limit is hit: (what, user count at which its planned share is
    /// used up).
    pub fn limits(&self) -> Vec<(&'static str, Option<u64>)> {
        vec![
            (
                "database writer (one Galera cluster)",
                self.threshold(|r| r.writer_load > self.writer_target),
            ),
            (
                "Redis (one primary)",
                self.threshold(|r| r.redis_load > self.redis_target),
            ),
        ]
    }

    /// The whole report, as printed.
    pub fn render(&self) -> Result<String> {
        self.check()?;
        let mut out = String::new();
        out.push_str(&format!(
            "Parley scaling model: {} messages/user/day, peak {}× average, {}% to groups of {}, \
             {}% online at peak × {} devices\n",
            self.messages_per_user_day,
            self.peak_factor,
            self.group_share * 100.0,
            self.group_size,
            self.online_share * 100.0,
            self.devices
        ));
        out.push_str(&format!(
            "costs: Parley {} µs/message + {} µs/delivery + {} µs/bus message + {} µs/connect, \
             {} KiB/connection; node {} cores, {} GiB, planned to {}%; writer {} msg/s, \
             Redis {} ops/s, each planned to {}% / {}%\n\n",
            self.parley_us_per_message,
            self.parley_us_per_delivery,
            self.parley_us_per_bus_message,
            self.parley_us_per_connect,
            self.kib_per_connection,
            self.node_cores,
            self.node_mem_gib,
            self.node_target * 100.0,
            self.writer_msgs_per_sec,
            self.redis_ops_per_sec,
            self.writer_target * 100.0,
            self.redis_target * 100.0
        ));
        out.push_str(
            "| users | peak msg/s | deliveries/s | WebSockets | Parley nodes (bound) | \
             Parley cores | writer load | Redis ops/s (load) | PUBLISH/msg | messages GiB/year |\n",
        );
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for &u in &self.users {
            let r = self.row(u);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} ({}) | {:.1} | {}{} | {} ({}) | {:.2} | {} |\n",
                group(r.users as f64),
                group(r.peak_msgs_per_sec),
                group(r.deliveries_per_sec),
                group(r.connections),
                r.nodes,
                r.nodes_bound_by,
                r.cores_used,
                pct(r.writer_load),
                if r.writer_load > 1.0 { " OVER" } else { "" },
                group(r.redis_ops_per_sec),
                pct(r.redis_load),
                r.publishes_per_message,
                group(r.storage_gib_per_year),
            ));
        }
        out.push('\n');
        let mut limits = self.limits();
        limits.sort_by_key(|(_, u)| u.unwrap_or(u64::MAX));
        for (i, (what, at)) in limits.iter().enumerate() {
            let first = if i == 0 { "first" } else { "then" };
            match at {
                Some(u) => out.push_str(&format!(
                    "{first}: {what} reaches its planned share at about {} users\n",
                    group(*u as f64)
                )),
                None => out.push_str(&format!("{what}: not reached below a billion users\n")),
            }
        }
        Ok(out)
    }
}

fn pct(x: f64) -> String {
    if x < 0.001 {
        format!("{:.3}%", x * 100.0)
    } else if x < 0.1 {
        format!("{:.1}%", x * 100.0)
    } else {
        format!("{:.0}%", x * 100.0)
    }
}

/// 1234567 → "1,234,567"; below 10 with one decimal.
fn group(x: f64) -> String {
    if x < 10.0 {
        return format!("{x:.1}");
    }
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn run(a: &ScalingArgs) -> Result<()> {
    print!("{}", a.render()?);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_model_prints_every_user_count_and_the_first_limit() {
        let a = ScalingArgs::default();
        let text = a.render().unwrap();
        for u in ["1,000", "10,000", "100,000", "1,000,000", "10,000,000"] {
            assert!(text.contains(&format!("\n| {u} |")), "{u}: {text}");
        }
        assert!(text.contains("first: "), "{text}");
        // 10 million users at 50 messages a day, peak 3×: 17,361 msg/s.
        let r = a.row(10_000_000);
        assert!((r.peak_msgs_per_sec - 17_361.1).abs() < 1.0, "{r:?}");
        assert!(
            (r.writer_load - r.peak_msgs_per_sec / a.writer_msgs_per_sec).abs() < 1e-9,
            "{r:?}"
        );
        assert_eq!(text.contains("OVER"), r.writer_load > 1.0, "{text}");
    }

    #[test]
    fn costs_grow_with_users_and_one_node_needs_no_redis() {
        let a = ScalingArgs::default();
        let rows: Vec<Row> = a.users.iter().map(|&u| a.row(u)).collect();
        for w in rows.windows(2) {
            assert!(w[1].peak_msgs_per_sec > w[0].peak_msgs_per_sec);
            assert!(w[1].nodes >= w[0].nodes);
            assert!(w[1].redis_ops_per_sec > w[0].redis_ops_per_sec);
        }
        assert_eq!(rows[0].nodes, 2, "two nodes at least");
        let one = ScalingArgs {
            min_nodes: 1,
            ..ScalingArgs::default()
        };
        let r = one.row(1_000);
        assert_eq!(r.nodes, 1);
        assert_eq!(r.redis_ops_per_sec, 0.0);
        assert_eq!(r.publishes_per_message, 0.0);
    }

    #[test]
    fn the_writer_limit_is_where_the_arithmetic_puts_it() {
        let a = ScalingArgs::default();
        // The planned share of the writer's messages a second at peak
        // = users × messages a day / 86,400 × peak factor.
        let expected = a.writer_msgs_per_sec * a.writer_target * 86_400.0
            / (a.messages_per_user_day * a.peak_factor);
        let at = a.limits()[0].1.unwrap() as f64;
        assert!((at / expected - 1.0).abs() < 0.02, "{at} vs {expected}");
        // A writer twice as fast moves it twice as far.
        let b = ScalingArgs {
            writer_msgs_per_sec: a.writer_msgs_per_sec * 2.0,
            ..ScalingArgs::default()
        };
        let at2 = b.limits()[0].1.unwrap() as f64;
        assert!((at2 / at - 2.0).abs() < 0.05, "{at} {at2}");
    }

    #[test]
    fn publishes_per_message_stay_below_the_remote_node_count() {
        let a = ScalingArgs::default();
        for n in [2u64, 3, 8, 64] {
            let p = a.publishes_per_message(n);
            assert!(p > 0.0 && p < (n - 1) as f64, "{n}: {p}");
        }
        // Batching shares a PUBLISH between the messages of a batch.
        let b = ScalingArgs {
            messages_per_batch: 10.0,
            ..ScalingArgs::default()
        };
        assert!((b.publishes_per_message(8) * 10.0 - a.publishes_per_message(8)).abs() < 1e-9);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        for (a, what) in [
            (
                ScalingArgs {
                    online_share: 1.5,
                    ..ScalingArgs::default()
                },
                "--online-share",
            ),
            (
                ScalingArgs {
                    writer_msgs_per_sec: 0.0,
                    ..ScalingArgs::default()
                },
                "--writer-msgs-per-sec",
            ),
            (
                ScalingArgs {
                    users: vec![],
                    ..ScalingArgs::default()
                },
                "--users",
            ),
            (
                ScalingArgs {
                    group_size: 1.0,
                    ..ScalingArgs::default()
                },
                "--group-size",
            ),
        ] {
            let e = a.render().unwrap_err().to_string();
            assert!(e.contains(what), "{what}: {e}");
        }
    }
}
