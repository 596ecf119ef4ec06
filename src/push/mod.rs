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

use std::sync::Arc;

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
        })
    }
}
