//! One test binary for the HTTP and WebSocket API, against real MySQL (and Redis).
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod helpers;

mod admin_cli;
mod attachment_messages;
mod attachments;
mod auth;
mod blocking;
mod calls;
mod change_rules;
mod changes;
mod chats;
mod cluster;
mod convergence;
mod db_retries;
mod deletion;
mod encryption;
mod export;
mod groups_admin;
mod health;
mod invites;
mod media;
mod migrations;
mod notify;
mod process;
mod push;
mod races;
mod reactions;
mod realtime;
mod search;
mod sessions;
mod spa;
mod users;
