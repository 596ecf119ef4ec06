//! Redis, when configured (`redis.url`, or `redis.sentinels`): the one
//! [`RedisPrimary`] a process takes its connections from — the cluster seam, `/ws`
//! tickets, known login sources and the readiness ping alike, so a Sentinel
//! failover moves all of them to the new primary together.

use std::sync::Arc;
use std::time::Duration;

use parley_actors::cluster::RedisPrimary;

use crate::config::Settings;

/// The primary `settings` name (`None`: no Redis). With Sentinel, it is asked for
/// on first use and followed from then on (a task on the current runtime).
pub fn connect(settings: &Settings) -> anyhow::Result<Option<Arc<RedisPrimary>>> {
    let Some(source) = settings.redis_source() else {
        return Ok(None);
    };
    let what = if settings.redis.sentinels.is_some() {
        "redis.sentinels"
    } else {
        "redis.url"
    };
    Ok(Some(
        RedisPrimary::new(&source).map_err(|e| anyhow::anyhow!("{what}: {e}"))?,
    ))
}

/// `PING` with a deadline: true when the primary answered `PONG`.
pub async fn ping(redis: &RedisPrimary, timeout: Duration) -> bool {
    let fut = async {
        let mut conn = redis.get().await.ok()?;
        deadpool_redis::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(tokio::time::timeout(timeout, fut).await, Ok(Some(ref p)) if p == "PONG")
}
