//! The test kit of tests/api, tests/faults and tests/deploy: one way to start the app
//! in-process ([`app`]) and one to start the real binary ([`binary`]), one HTTP and
//! WebSocket protocol client ([`client`]), one MariaDB/Redis harness ([`db`]), the
//! ann/bob/direct-chat [`fixture`], voice messages ([`media`]), images ([`pictures`]), raw WebSocket frames
//! ([`raw`]), two nodes on one Redis ([`cluster`]), request/reply over the WebSocket
//! ([`requests`]), a Redis primary + replica + three Sentinels ([`sentinel`]) and the small things every suite needs ([`util`]).
//!
//! A dev-dependency of the root package only (`publish = false`); each suite keeps a
//! thin `helpers`/`support` module that re-exports from here, so a test file names
//! things the way it always has.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

pub mod app;
pub mod binary;
pub mod client;
pub mod cluster;
pub mod db;
pub mod fixture;
pub mod galera;
pub mod media;
pub mod pictures;
pub mod push;
pub mod raw;
pub mod requests;
pub mod sentinel;
pub mod util;

/// The JWT secret every test server signs with (in-process and binary alike).
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";
