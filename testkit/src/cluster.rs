//! Two in-process nodes sharing one fresh database and one Redis: the cluster as the
//! API tests start it.

use std::time::Duration;

use parley::config::Settings;

use crate::app::{spawn, test_settings, TestApp};
use crate::db::Redis;
use crate::util::wait_until;

/// Two nodes on `redis` with the test settings.
pub async fn two_nodes(redis: &Redis) -> (TestApp, TestApp) {
    two_nodes_with(redis, |_| {}).await
}

/// Two nodes on `redis`, both with `configure` applied; the second has its own uploads
/// directory (a node's disk is its own) and does not drop the shared database.
pub async fn two_nodes_with(
    redis: &Redis,
    configure: impl Fn(&mut Settings),
) -> (TestApp, TestApp) {
    let mut s1 = test_settings();
    s1.redis.url = Some(redis.url());
    s1.presence.node_ttl_secs = 3;
    configure(&mut s1);
    let mut s2 = s1.clone();
    let n1 = spawn(s1, true).await;
    s2.storage.uploads_dir = std::env::temp_dir().join(format!(
        "parley-uploads-n2-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let n2 = spawn(s2, false).await;
    wait_until(Duration::from_secs(10), "both nodes ready", || async {
        ready(&n1).await && ready(&n2).await
    })
    .await;
    // Let both heartbeat once so each knows the other is alive.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    (n1, n2)
}

async fn ready(n: &TestApp) -> bool {
    n.http
        .get(n.url("/api/ready"))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}
