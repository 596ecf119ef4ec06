//! One test binary for the HTTP and WebSocket API, against real MySQL (and Redis).
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
mod helpers;

mod auth;
mod health;
mod migrations;
mod process;
mod users;
