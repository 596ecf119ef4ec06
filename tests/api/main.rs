//! One test binary for the HTTP and WebSocket API, against real MySQL (and Redis).
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod helpers;

mod auth;
mod calls;
mod chats;
mod cluster;
mod encryption;
mod health;
mod media;
mod migrations;
mod process;
mod realtime;
mod search;
mod spa;
mod users;
