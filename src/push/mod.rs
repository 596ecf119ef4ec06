//! Web Push (issue 20): notifications for users whose Parley tab is closed or
//! hidden, sent per RFC 8030 with RFC 8291 encryption and RFC 8292 (VAPID)
//! identification. See ARCHITECTURE.md, "Web Push".
//!
//! - [`vapid`]: the server's key pair and the `Authorization` header.
//! - [`endpoint`]: the SSRF guard on subscription endpoints, and key validation.
//! - [`payload`]: what a notification says (never an encrypted chat's content).
//! - [`engine`]: the queue, the dispatcher and the senders (`PushSink`).
//!
//! The routes are in `routes/push.rs`, the SQL in `db/push.rs`.

pub mod endpoint;
pub mod engine;
pub mod payload;
pub mod vapid;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parley_actors::Realtime;
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::db::Db;
use engine::PushEngine;
use vapid::VapidKey;

/// What the routes and `/metrics` need (app data): the key when push is on, and
/// the engine sending.
#[derive(Clone, Default)]
pub struct Push {
    pub key: Option<Arc<VapidKey>>,
    pub engine: Option<Arc<PushEngine>>,
    /// Subscribes per account (`SUBSCRIBES_PER_MIN`).
    pub subscribes: Arc<SubscribeLimit>,
}

/// Subscribes per account per minute. A browser subscribes once per device (again
/// when its key changes); each subscribe costs a DNS lookup (up to its timeout) and a
/// transaction, so one account must not loop on it.
pub const SUBSCRIBES_PER_MIN: u32 = 20;

/// GCRA buckets per account, in memory per process (like the chat limits).
pub struct SubscribeLimit {
    by_user: DefaultKeyedRateLimiter<u64>,
    checks: AtomicU64,
}

impl Default for SubscribeLimit {
    fn default() -> SubscribeLimit {
        let n = NonZeroU32::new(SUBSCRIBES_PER_MIN).unwrap_or(NonZeroU32::MIN);
        SubscribeLimit {
            by_user: RateLimiter::keyed(Quota::per_minute(n)),
            checks: AtomicU64::new(0),
        }
    }
}

impl SubscribeLimit {
    /// Counts one subscribe by `user`: how long to wait when over the limit.
    pub fn check(&self, user: u64) -> Result<(), Duration> {
        // Buckets that are full again are forgotten now and then: memory stays bounded.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.by_user.retain_recent();
        }
        self.by_user
            .check_key(&user)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

impl Push {
    /// Loads the key and, when push is on, starts the engine and attaches it to the
    /// realtime core. Must run inside the main runtime.
    pub fn start(settings: &Settings, db: &Db, realtime: &Realtime) -> anyhow::Result<Push> {
        let Some(secret) = settings
            .push
            .vapid_private_key
            .as_ref()
            .filter(|_| settings.push_active())
        else {
            tracing::info!("web push is off (no push.vapid_private_key, or push.enabled = false)");
            return Ok(Push::default());
        };
        let key = Arc::new(
            VapidKey::from_base64url(secret.expose_secret())
                .map_err(|e| anyhow::anyhow!("push.vapid_private_key: {e}"))?,
        );
        if settings.push.allow_insecure_endpoints {
            tracing::warn!(
                "push.allow_insecure_endpoints is on: push endpoints may be http and on \
                 private addresses (for tests only)"
            );
        }
        let engine = PushEngine::start(
            settings.push.clone(),
            key.clone(),
            settings.push_subject(),
            db.clone(),
            realtime.clone(),
        )?;
        realtime.attach_push(engine.clone());
        Ok(Push {
            key: Some(key),
            engine: Some(engine),
            subscribes: Arc::default(),
        })
    }
}
