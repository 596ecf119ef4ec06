pub mod admin;
pub mod audio;
pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod e2ee;
pub mod error;
pub mod media;
pub mod metrics;
pub mod push;
pub mod redis;
pub mod routes;
pub mod search_index;
pub mod startup;
pub mod telemetry;
pub mod transport;
pub mod upload;

pub use parley_actors::{
    AudioId, AuthSessionId, CallId, ChatId, MessageId, SessionId, Timestamp, UserId,
};
