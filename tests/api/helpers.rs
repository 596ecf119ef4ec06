//! What the API tests share, from the test kit (testkit/): `spawn_app` (the real
//! application on port 0 against a fresh database, dropped with the `TestApp`), the
//! HTTP helpers, the WebSocket client and the ann/bob fixture.

pub use parley_testkit::app::{spawn, spawn_app, spawn_app_with, test_settings, TestApp};
pub use parley_testkit::client::{assert_error, TestUser, WsClient, WAIT};
pub use parley_testkit::cluster::{two_nodes, two_nodes_with};
pub use parley_testkit::db::{fresh_db_url, mysql_server, Redis};
pub use parley_testkit::fixture::AnnBob;
pub use parley_testkit::util::{closed_port, wait_until};
pub use parley_testkit::JWT_SECRET;
