//! Where each account last signed in from, shared by every node when Redis is
//! configured. The login delay (`login_delay`) spares an account's *known sources*
//! from the failures others cause; with several nodes behind nginx, the owner's next
//! login may reach a node that did not see the last one, and must not be slowed there.
//! So a successful login is also written to Redis (`{prefix}:known:{user}`, a sorted
//! set of networks by time, the newest 4 kept, forgotten after 90 days), and a node
//! asks it before judging an attempt. Without Redis the delay's own memory is enough.
//! Best effort: if Redis does not answer, an attempt is judged as from an unknown
//! source — slowed, never refused for that reason alone.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use parley_actors::cluster::RedisPrimary;
use parley_actors::UserId;

use super::login_delay::Source;

/// Networks kept per account (as in the in-memory map).
const KEPT: isize = 4;
/// A network not used for this long is forgotten.
const TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// A known-source check never holds a login up for longer than this.
const DEADLINE: Duration = Duration::from_millis(250);

#[derive(Clone, Default)]
pub struct KnownSources {
    redis: Option<(Arc<RedisPrimary>, String)>,
}

impl KnownSources {
    pub fn in_redis(primary: Arc<RedisPrimary>, prefix: &str) -> KnownSources {
        KnownSources {
            redis: Some((primary, prefix.to_owned())),
        }
    }

    fn key(prefix: &str, user: UserId) -> String {
        format!("{prefix}:known:{user}")
    }

    /// Whether any node recorded a sign-in of `user` from `ip`'s network.
    pub async fn contains(&self, user: UserId, ip: IpAddr) -> bool {
        let Some((primary, prefix)) = &self.redis else {
            return false;
        };
        let check = async {
            let mut conn = primary.get().await.ok()?;
            redis::cmd("ZSCORE")
                .arg(Self::key(prefix, user))
                .arg(Source::of(ip).to_string())
                .query_async::<Option<f64>>(&mut conn)
                .await
                .ok()?
        };
        matches!(tokio::time::timeout(DEADLINE, check).await, Ok(Some(_)))
    }

    /// Records a successful sign-in of `user` from `ip`'s network.
    pub async fn remember(&self, user: UserId, ip: IpAddr) {
        let Some((primary, prefix)) = &self.redis else {
            return;
        };
        let key = Self::key(prefix, user);
        let now = crate::auth::jwt::unix_now();
        let write = async {
            let mut conn = primary.get().await.ok()?;
            redis::pipe()
                .atomic()
                .cmd("ZADD")
                .arg(&key)
                .arg(now)
                .arg(Source::of(ip).to_string())
                .ignore()
                .cmd("ZREMRANGEBYRANK")
                .arg(&key)
                .arg(0)
                .arg(-KEPT - 1)
                .ignore()
                .cmd("EXPIRE")
                .arg(&key)
                .arg(TTL.as_secs())
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .ok()
        };
        if !matches!(tokio::time::timeout(DEADLINE, write).await, Ok(Some(()))) {
            tracing::debug!(user_id = %user, "could not record the sign-in source in Redis");
        }
    }
}
