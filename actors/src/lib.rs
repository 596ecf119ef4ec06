//! The realtime half of Parley: session, room, presence and call actors. It knows
//! nothing of MySQL: persistence comes in through the `Store` trait.

pub mod ids;
pub mod time;

pub use ids::{AudioId, CallId, ChatId, MessageId, SessionId, UserId};
pub use time::Timestamp;
