//! The `media_files` table (uploaded images, files and voice messages) and what
//! bounds it per user: `user_storage` (stored bytes, upload rate) and
//! `upload_reservations` (uploads in flight).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use parley_actors::{ChatId, MediaId, UserId};

use super::{Db, DbError};
use crate::media::MediaKind;

/// A stored upload, as downloads need it.
#[derive(Debug, Clone)]
pub struct MediaRow {
    pub id: MediaId,
    pub chat: ChatId,
    pub kind: MediaKind,
    pub name: String,
    pub storage_name: String,
    pub mime: String,
    pub bytes: u64,
    pub duration_ms: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub thumb_name: Option<String>,
    pub encrypted: bool,
}

/// An upload to record.
pub struct NewMedia<'a> {
    pub uploader: UserId,
    pub chat: ChatId,
    pub kind: MediaKind,
    pub name: &'a str,
    pub storage_name: &'a str,
    pub mime: &'a str,
    pub bytes: u64,
    pub duration_ms: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub thumb: Option<(&'a str, u64)>,
    pub encrypted: bool,
}

/// An upload the sweep may remove.
pub struct StaleMedia {
    pub id: MediaId,
    pub kind: MediaKind,
    pub storage_name: String,
    pub thumb_name: Option<String>,
}

/// The columns `media_from_row` reads, in order.
const MEDIA_COLUMNS: &str = "id, chat_id, kind, name, storage_name, mime, bytes, duration_ms, \
     width, height, thumb_name, encrypted";

fn media_from_row(mut row: mysql_async::Row) -> Result<MediaRow, DbError> {
    fn col<T: mysql_async::prelude::FromValue>(
        row: &mut mysql_async::Row,
        i: usize,
    ) -> Result<T, DbError> {
        row.take_opt(i)
            .ok_or_else(|| DbError::Mapping(format!("media column {i} missing")))?
            .map_err(|e| DbError::Mapping(format!("media column {i}: {e}")))
    }
    let kind: String = col(&mut row, 2)?;
    Ok(MediaRow {
        id: MediaId(col(&mut row, 0)?),
        chat: ChatId(col(&mut row, 1)?),
        kind: MediaKind::parse(&kind)
            .ok_or_else(|| DbError::Mapping(format!("unknown media kind {kind:?}")))?,
        name: col(&mut row, 3)?,
        storage_name: col(&mut row, 4)?,
        mime: col(&mut row, 5)?,
        bytes: col(&mut row, 6)?,
        duration_ms: col(&mut row, 7)?,
        width: col(&mut row, 8)?,
        height: col(&mut row, 9)?,
        thumb_name: col(&mut row, 10)?,
        encrypted: col(&mut row, 11)?,
    })
}

/// Room taken for an upload in flight (a row of `upload_reservations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationId(pub u64);

/// What one user may upload: `uploads_per_min` uploads a minute (a burst of that many,
/// then one every `60 s / uploads_per_min`), `quota_bytes` stored in all.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub quota_bytes: u64,
    pub uploads_per_min: u32,
}

/// The answer to "may this user start an upload of up to `bytes`?".
#[derive(Debug, PartialEq, Eq)]
pub enum Reservation {
    Granted(ReservationId),
    /// Too many uploads lately; the next is allowed after this long.
    RateLimited(Duration),
    /// Stored plus in-flight bytes leave no room for this upload.
    OverQuota {
        used: u64,
        quota: u64,
    },
}

/// One GCRA step: with `tat` the stored theoretical arrival time and `now` (unix ms),
/// `Ok(new tat)` when an upload may start now, else how long until one may.
fn gcra(tat_ms: u64, now_ms: u64, per_min: u32) -> Result<u64, Duration> {
    let interval = 60_000 / u64::from(per_min.max(1));
    let burst_tolerance = 60_000 - interval;
    let tat = tat_ms.max(now_ms);
    if tat - now_ms > burst_tolerance {
        return Err(Duration::from_millis(tat - now_ms - burst_tolerance));
    }
    Ok(tat + interval)
}

impl Db {
    /// Takes room for an upload of up to `bytes` when the rate and the quota allow it.
    /// The user's `user_storage` row is locked for the decision, so concurrent uploads
    /// of one user (on any node) are judged one after the other, each seeing the
    /// others' reservations: together they never exceed the quota.
    pub async fn reserve_upload(
        &self,
        user: UserId,
        bytes: u64,
        limits: UploadLimits,
        now_ms: u64,
    ) -> Result<Reservation, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            tx.exec_drop(
                "INSERT INTO user_storage (user_id) VALUES (?) ON DUPLICATE KEY UPDATE user_id = user_id",
                (user.0,),
            )
            .await?;
            let (used, tat): (u64, u64) = tx
                .exec_first(
                    "SELECT used_bytes, upload_tat_ms FROM user_storage WHERE user_id = ? FOR UPDATE",
                    (user.0,),
                )
                .await?
                .ok_or_else(|| DbError::Mapping("user_storage row vanished".into()))?;
            let in_flight: u64 = tx
                .exec_first(
                    "SELECT CAST(COALESCE(SUM(bytes), 0) AS UNSIGNED) FROM upload_reservations WHERE user_id = ?",
                    (user.0,),
                )
                .await?
                .unwrap_or(0);
            let next_tat = match gcra(tat, now_ms, limits.uploads_per_min) {
                Ok(t) => t,
                Err(wait) => {
                    tx.rollback().await?;
                    return Ok(Reservation::RateLimited(wait));
                }
            };
            let taken = used.saturating_add(in_flight);
            if taken.saturating_add(bytes) > limits.quota_bytes {
                tx.rollback().await?;
                return Ok(Reservation::OverQuota {
                    used: taken,
                    quota: limits.quota_bytes,
                });
            }
            tx.exec_drop(
                "UPDATE user_storage SET upload_tat_ms = ? WHERE user_id = ?",
                (next_tat, user.0),
            )
            .await?;
            tx.exec_drop(
                "INSERT INTO upload_reservations (user_id, bytes) VALUES (?, ?)",
                (user.0, bytes),
            )
            .await?;
            let id = tx.last_insert_id().unwrap_or_default();
            tx.commit().await?;
            Ok(Reservation::Granted(ReservationId(id)))
        })
        .await
    }

    /// Gives back the room of an upload that was refused or abandoned.
    pub async fn release_upload(&self, r: ReservationId) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("DELETE FROM upload_reservations WHERE id = ?", (r.0,))
            .await?;
        Ok(())
    }

    /// Stores an upload: its row, the uploader's stored bytes (the file's and its
    /// thumbnail's), and the end of its reservation, in one transaction (a crash
    /// never counts it twice or not at all).
    pub async fn insert_media(
        &self,
        m: &NewMedia<'_>,
        reservation: ReservationId,
    ) -> Result<MediaId, DbError> {
        self.retrying(false, || async {
                let mut conn = self.conn().await?;
                let mut tx = conn.start_transaction(TxOpts::default()).await?;
                let (thumb_name, thumb_bytes) = match m.thumb {
                    Some((name, bytes)) => (Some(name), Some(bytes)),
                    None => (None, None),
                };
                tx.exec_drop(
                "INSERT INTO media_files (uploader_id, chat_id, kind, name, storage_name, mime, bytes, \
                 duration_ms, width, height, thumb_name, thumb_bytes, encrypted) \
                 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                mysql_async::Params::Positional(vec![
                    m.uploader.0.into(),
                    m.chat.0.into(),
                    m.kind.as_str().into(),
                    m.name.into(),
                    m.storage_name.into(),
                    m.mime.into(),
                    m.bytes.into(),
                    m.duration_ms.into(),
                    m.width.into(),
                    m.height.into(),
                    thumb_name.into(),
                    thumb_bytes.into(),
                    m.encrypted.into(),
                ]),
            )
            .await?;
                let id = MediaId(tx.last_insert_id().unwrap_or_default());
                tx.exec_drop(
                    "INSERT INTO user_storage (user_id, used_bytes) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE used_bytes = used_bytes + VALUES(used_bytes)",
                    (m.uploader.0, m.bytes + thumb_bytes.unwrap_or(0)),
                )
                .await?;
                tx.exec_drop(
                    "DELETE FROM upload_reservations WHERE id = ?",
                    (reservation.0,),
                )
                .await?;
                tx.commit().await?;
                Ok(id)
            })
            .await
    }

    /// The bytes of every upload `user` stored (sent or not yet).
    pub async fn storage_used(&self, user: UserId) -> Result<u64, DbError> {
        let mut conn = self.conn().await?;
        let used: Option<u64> = conn
            .exec_first(
                "SELECT used_bytes FROM user_storage WHERE user_id = ?",
                (user.0,),
            )
            .await?;
        Ok(used.unwrap_or(0))
    }

    /// Deletes reservations older than `older_than_secs`: left by a process that died
    /// mid-upload. Returns how many.
    pub async fn delete_stale_reservations(&self, older_than_secs: u64) -> Result<u64, DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
                "DELETE FROM upload_reservations WHERE created_at < UTC_TIMESTAMP(3) - INTERVAL ? SECOND",
                (older_than_secs,),
            )
            .await?;
        Ok(conn.affected_rows())
    }

    /// The upload `id`, whatever its kind.
    pub async fn media(&self, id: MediaId) -> Result<Option<MediaRow>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<mysql_async::Row> = conn
            .exec_first(
                format!("SELECT {MEDIA_COLUMNS} FROM media_files WHERE id = ?"),
                (id.0,),
            )
            .await?;
        row.map(media_from_row).transpose()
    }

    /// Uploads of any kind never attached to a message and older than `older_than_secs`.
    pub async fn stale_media(&self, older_than_secs: u64) -> Result<Vec<StaleMedia>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, String, String, Option<String>)> = conn
                .exec(
                    "SELECT id, kind, storage_name, thumb_name FROM media_files \
                     WHERE message_id IS NULL AND created_at < UTC_TIMESTAMP(3) - INTERVAL ? SECOND LIMIT 500",
                    (older_than_secs,),
                )
                .await?;
        rows.into_iter()
            .map(|(id, kind, storage_name, thumb_name)| {
                Ok(StaleMedia {
                    id: MediaId(id),
                    kind: MediaKind::parse(&kind)
                        .ok_or_else(|| DbError::Mapping(format!("unknown media kind {kind:?}")))?,
                    storage_name,
                    thumb_name,
                })
            })
            .collect()
    }

    /// Deletes an upload's row unless a message claimed it meanwhile, and takes its
    /// bytes (and its thumbnail's) off the uploader's total in the same transaction;
    /// true when deleted.
    pub async fn delete_unattached_media(&self, id: MediaId) -> Result<bool, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let row: Option<(u64, u64)> = tx
                .exec_first(
                    "SELECT uploader_id, bytes + COALESCE(thumb_bytes, 0) FROM media_files \
                     WHERE id = ? AND message_id IS NULL FOR UPDATE",
                    (id.0,),
                )
                .await?;
            let Some((uploader, bytes)) = row else {
                tx.rollback().await?;
                return Ok(false);
            };
            tx.exec_drop("DELETE FROM media_files WHERE id = ?", (id.0,))
                .await?;
            // LEAST: the total is unsigned, and never goes below zero whatever happened.
            tx.exec_drop(
                "UPDATE user_storage SET used_bytes = used_bytes - LEAST(used_bytes, ?) WHERE user_id = ?",
                (bytes, uploader),
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_rate_allows_a_burst_then_one_per_interval() {
        let per_min = 6; // one every 10 s, a burst of 6
        let mut tat = 0;
        let now = 1_000_000;
        for n in 0..6 {
            tat = gcra(tat, now, per_min).unwrap_or_else(|w| panic!("upload {n}: wait {w:?}"));
        }
        assert_eq!(gcra(tat, now, per_min), Err(Duration::from_millis(10_000)));
        assert_eq!(
            gcra(tat, now + 4_000, per_min),
            Err(Duration::from_millis(6_000))
        );
        assert!(gcra(tat, now + 10_000, per_min).is_ok());
        // Idle for long: the whole burst again, not more.
        let later = now + 3_600_000;
        let mut tat2 = tat;
        for _ in 0..6 {
            tat2 = gcra(tat2, later, per_min).unwrap();
        }
        assert!(gcra(tat2, later, per_min).is_err());
    }
}
