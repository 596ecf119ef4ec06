//! Deployment: the systemd unit, the nginx site and deploy.sh, tested for real.
#![allow(clippy::unwrap_used)]

/// tests/api's helper names (this suite once included that file), from the test kit.
#[allow(unused_imports)]
mod helpers {
    pub use parley_testkit::app::{spawn, spawn_app, spawn_app_with, test_settings, TestApp};
    pub use parley_testkit::client::{self, assert_error, TestUser, WsClient, WAIT};
    pub use parley_testkit::db::{fresh_db_url, mysql_server};
    pub use parley_testkit::util::closed_port;
    pub use parley_testkit::JWT_SECRET;
}

mod nginx;
mod script;
mod support;
mod systemd;
