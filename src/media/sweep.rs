//! Uploads never attached to a message are removed after
//! `storage.unattached_audio_ttl_secs` (any kind, with their thumbnails), and the
//! reservations of uploads a crashed process never finished are released.

use std::path::PathBuf;
use std::time::Duration;

use super::files;
use crate::db::Db;

/// Sweeps every `ttl / 2` (at least every minute, at most twice a second).
pub async fn sweep_unattached(db: Db, uploads: PathBuf, ttl: Duration) {
    let every = (ttl / 2).clamp(Duration::from_millis(500), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        sweep_once(&db, &uploads, ttl).await;
    }
}

async fn sweep_once(db: &Db, uploads: &std::path::Path, ttl: Duration) {
    match db.delete_stale_reservations(ttl.as_secs()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(reservations = n, "released abandoned upload reservations"),
        Err(e) => tracing::debug!(error = %e, "reservation sweep skipped"),
    }
    let stale = match db.stale_media(ttl.as_secs()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "upload sweep skipped");
            return;
        }
    };
    for m in stale {
        match db.delete_unattached_media(m.id).await {
            Ok(true) => {
                files::remove(uploads, m.kind, &m.storage_name, m.thumb_name.as_deref()).await
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(media = %m.id, error = %e, "upload sweep"),
        }
    }
}
