//! The actors crate's one test kit, for unit-testing the actors without MySQL,
//! Redis or sockets. Built for this crate's tests and, behind the `testing`
//! feature, for other crates' tests.
//!
//! - [`store`]: [`MemoryStore`], an in-memory [`Store`] that logs every call and
//!   can be told to fail or stall.
//! - [`fake`]: [`Fake`] sessions that record every frame handed to them.
//! - [`push`]: [`RecordingSink`], a push engine that records the offers made.
//! - [`nodes`]: in-process nodes of an in-memory cluster (one `Hub`) and sessions
//!   registered with a node's presence, for the cluster seam's tests.
//! - here: the settings the tests run with, and [`shared`] for one node's state.

use std::sync::Arc;
use std::time::Duration;

use crate::directory::SessionDirectory;
use crate::store::Store;
use crate::{Bus, RealtimeSettings, Shared};

pub mod fake;
pub mod nodes;
pub mod push;
pub mod store;

pub use fake::{Fake, FakeSession, Frame};
pub use nodes::{close, node, open, report_visible, settle};
pub use push::RecordingSink;
pub use store::{broken, is_unavailable, unavailable, Failure, MemoryStore, Op};

/// How long a test waits for frames before it fails (a stuck actor fails fast).
pub const PATIENCE: Duration = Duration::from_secs(2);

/// The realtime settings unit tests start from. `RealtimeSettings` has no
/// defaults of its own (the application's `Settings` owns them); these are the
/// tests' own values, generous so nothing but the case under test trips a limit.
pub fn settings() -> RealtimeSettings {
    RealtimeSettings {
        ws_frame_bytes: 64 * 1024,
        outbound_bytes: 4 * 1024 * 1024,
        events_per_sec: 1_000,
        events_burst: 1_000,
        ping_interval: Duration::from_secs(10),
        client_timeout: Duration::from_secs(30),
        writer_lanes: 2,
        room_idle: crate::session::ROOM_IDLE,
        room_arbiters: 1,
        ring_timeout: Duration::from_secs(45),
        signal_max_bytes: crate::session::SIGNAL_MAX_BYTES,
        edit_window: std::time::Duration::from_secs(172_800),
    }
}

/// The shared state every realtime actor holds, over `store`, on one node.
/// Call it inside an actix system (it starts the receipt and connect lanes).
pub fn shared(store: Arc<dyn Store>, settings: RealtimeSettings) -> Arc<Shared> {
    let bus = Bus::new(
        SessionDirectory::default(),
        Arc::new(crate::cluster::Local::new()),
    );
    Arc::new(Shared::new(store, bus, settings))
}
