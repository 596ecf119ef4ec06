//! The realtime half of Parley: session, room, presence and call actors. It knows
//! nothing of MySQL: persistence comes in through the `Store` trait, and nothing of
//! how many nodes there are: that goes through the `Cluster` seam (`cluster`).
//!
//! Modules depend on each other in one direction only (a unit test checks it):
//! message types live in `messages`, what the actors share in `shared`, and an
//! actor reaches another through a message, a `Recipient` or the seam.

pub mod arrivals;
mod asap;
pub mod attachment;
pub mod bus;
pub mod call;
pub mod changes;
pub mod cluster;
pub mod directory;
pub mod e2ee;
pub mod error_code;
pub mod ids;
pub mod messages;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod push;
pub mod realtime;
pub mod room;
pub mod session;
pub mod settings;
pub mod shared;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod visibility;
pub mod writer;

#[cfg(test)]
mod module_graph;

pub use bus::Bus;
pub use cluster::{Cluster, ClusterError};
pub use directory::{Deliver, SessionDirectory};
pub use error_code::ErrorCode;
pub use ids::{
    AudioId, AuthSessionId, CallId, ChangeId, ChatId, MediaId, MessageId, SessionId, UserId,
};
pub use metrics::Metrics;
pub use realtime::{OpenRefused, Realtime};
pub use session::Session;
pub use settings::RealtimeSettings;
pub use shared::Shared;
pub use store::Store;
pub use time::Timestamp;
