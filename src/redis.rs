//! The Redis connection pool (only when `redis.url` is set).

use std::time::Duration;

use deadpool_redis::{Config, Pool, Runtime};

pub fn pool(url: &str) -> anyhow::Result<Pool> {
    Ok(Config::from_url(url).create_pool(Some(Runtime::Tokio1))?)
}

/// `PING` with a deadline: true when Redis answered `PONG`.
pub async fn ping(pool: &Pool, timeout: Duration) -> bool {
    let fut = async {
        let mut conn = pool.get().await.ok()?;
        deadpool_redis::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(tokio::time::timeout(timeout, fut).await, Ok(Some(ref p)) if p == "PONG")
}
