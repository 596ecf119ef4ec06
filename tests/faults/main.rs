//! Proof under faults: real faults injected into real processes, then every
//! client's log reconciled against MySQL.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

#[allow(dead_code)]
mod peer;
#[allow(dead_code)]
mod reconcile;
#[allow(dead_code)]
mod scenario;
#[allow(dead_code)]
mod support;

mod authz;
mod crash;
mod fuzz;
mod hostile;
mod outages;
mod pressure;
mod soak;
