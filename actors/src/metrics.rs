//! Counters the realtime side keeps for `/metrics`: plain atomics, no locks on the
//! hot path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    sessions_open: AtomicI64,
    sessions_total: AtomicU64,
    messages_stored: AtomicU64,
    receipts: AtomicU64,
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
}
