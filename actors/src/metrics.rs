//! Counters the realtime side keeps for `/metrics`: plain atomics, no locks on the
//! hot path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

pub struct Metrics {
    sessions_open: AtomicI64,
    sessions_total: AtomicU64,
    messages_stored: AtomicU64,
    receipts: AtomicU64,
    rooms_open: AtomicI64,
    /// Seconds from a `message:send` frame's arrival to its `ack` (stored first).
    send_to_ack: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            sessions_open: AtomicI64::new(0),
            sessions_total: AtomicU64::new(0),
            messages_stored: AtomicU64::new(0),
            receipts: AtomicU64::new(0),
            rooms_open: AtomicI64::new(0),
            // 0.25 ms .. ~4 s
            send_to_ack: Histogram::new(exponential_buckets(0.00025, 2.0, 15)),
        }
    }
}

impl Metrics {
    pub fn session_opened(&self) {
        self.sessions_open.fetch_add(1, Ordering::Relaxed);
        self.sessions_total.fetch_add(1, Ordering::Relaxed);
    }
    pub fn session_closed(&self) {
        self.sessions_open.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn message_stored(&self) {
        self.messages_stored.fetch_add(1, Ordering::Relaxed);
    }
    pub fn receipts(&self, n: usize) {
        self.receipts.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn room_started(&self) {
        self.rooms_open.fetch_add(1, Ordering::Relaxed);
    }
    pub fn room_stopped(&self) {
        self.rooms_open.fetch_sub(1, Ordering::Relaxed);
    }
    /// Room actors alive (one per chat in use on this node).
    pub fn rooms_open(&self) -> i64 {
        self.rooms_open.load(Ordering::Relaxed)
    }
    pub fn sessions_open(&self) -> i64 {
        self.sessions_open.load(Ordering::Relaxed)
    }
    pub fn sessions_total(&self) -> u64 {
        self.sessions_total.load(Ordering::Relaxed)
    }
    pub fn messages_stored(&self) -> u64 {
        self.messages_stored.load(Ordering::Relaxed)
    }
    pub fn receipts_total(&self) -> u64 {
        self.receipts.load(Ordering::Relaxed)
    }
    pub fn acked_after(&self, d: Duration) {
        self.send_to_ack.observe(d.as_secs_f64());
    }
    /// The histogram, to register with a scrape's registry (a cheap shared handle).
    pub fn send_to_ack(&self) -> Histogram {
        self.send_to_ack.clone()
    }
}
