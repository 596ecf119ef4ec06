//! The realtime actors' settings (built from the server's `Settings`).

use std::time::Duration;

/// Settings the realtime actors need, in their own units. There is deliberately no
/// `Default`: the application's `Settings` (src/config.rs, `Settings::realtime`) is
/// the one place defaults live, so the two cannot disagree.
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
    /// Normally [`ROOM_IDLE`]; tests shorten it.
    pub room_idle: Duration,
    pub room_arbiters: usize,
    pub ring_timeout: Duration,
    /// Normally [`SIGNAL_MAX_BYTES`].
    pub signal_max_bytes: usize,
    /// How long after sending a message its sender may edit it.
    pub edit_window: Duration,
}

/// A room with no traffic for this long stops (its chat's next event starts it
/// again). Not a setting: nothing an operator would tune.
pub const ROOM_IDLE: Duration = Duration::from_secs(300);

/// Largest SDP or ICE candidate relayed between call parties. Not a setting.
pub const SIGNAL_MAX_BYTES: usize = 16 * 1024;
