//! Proof under faults: real faults injected into real processes, then every
//! client's log reconciled against MySQL.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
