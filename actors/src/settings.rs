//! The realtime actors' settings (built from the server's `Settings`).

use std::time::Duration;

/// Settings the realtime actors need, in their own units.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    pub ws_frame_bytes: usize,
    /// Bytes a client that is not reading may have waiting for it (queued for its
    /// socket, or held behind a catch-up or a `sync`) before it is closed with 1013.
    pub outbound_bytes: usize,
    pub events_per_sec: u32,
    pub events_burst: u32,
    pub ping_interval: Duration,
    pub client_timeout: Duration,
    pub writer_lanes: usize,
    pub room_idle: Duration,
    pub room_arbiters: usize,
    pub ring_timeout: Duration,
    pub signal_max_bytes: usize,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        RealtimeSettings {
            ws_frame_bytes: 64 * 1024,
            outbound_bytes: 4 * 1024 * 1024,
            events_per_sec: 50,
            events_burst: 200,
            ping_interval: Duration::from_secs(10),
            client_timeout: Duration::from_secs(30),
            writer_lanes: 4,
            room_idle: Duration::from_secs(300),
            room_arbiters: 2,
            ring_timeout: Duration::from_secs(45),
            signal_max_bytes: 16 * 1024,
        }
    }
}
