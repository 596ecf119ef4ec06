//! Proof under faults: real faults injected into real processes, then every
//! client's log reconciled against MySQL.
#![allow(clippy::unwrap_used)]

/// tests/api's helper names (this suite once included that file), from the test kit.
#[allow(unused_imports)]
mod helpers {
    pub use parley_testkit::app::{spawn, spawn_app, spawn_app_with, test_settings, TestApp};
    pub use parley_testkit::client::{assert_error, TestUser, WsClient, WAIT};
    pub use parley_testkit::db::{fresh_db_url, mysql_server};
    pub use parley_testkit::util::closed_port;
    pub use parley_testkit::JWT_SECRET;
}

#[allow(dead_code)]
mod peer;
#[allow(dead_code)]
mod reconcile;
#[allow(dead_code)]
mod scenario;
#[allow(unused_imports)]
mod support;

mod authz;
mod crash;
mod fuzz;
mod ha;
mod ha_redis;
mod hostile;
mod outages;
mod pressure;
mod soak;
