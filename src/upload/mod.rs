//! Receiving an upload: the multipart body streamed to a temporary file (its first
//! bytes kept for sniffing), within the size limit, the user's quota and upload rate
//! (reserved before a byte is read) and the disk's free-space floor. What is done
//! with the file then is the route's: `voice` (the old audio-only route) and
//! `attachment` (`POST /api/media`). `routes::media` keeps the HTTP side.

pub mod attachment;
mod body;
pub mod voice;

use std::path::{Path, PathBuf};

use actix_web::web;
use parley_actors::{ChatId, ErrorCode, UserId};

use crate::audio::{self, PartialFile};
use crate::config::Settings;
use crate::db::media::{Reservation, ReservationId, UploadLimits};
use crate::db::Db;
use crate::error::ApiError;
use crate::media::kind::SNIFF_BYTES;
use crate::routes::require_member;

/// Room for the multipart framing and the small fields around the file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// What a route accepts.
pub struct Rules {
    /// The largest file, in bytes.
    pub max: u64,
    /// What the route takes, for messages ("voice messages", "uploads").
    pub what: &'static str,
    /// The multipart fields besides `file` and `chatId` (`durationMs`, `encrypted`).
    pub fields: &'static [&'static str],
    /// Judges the first bytes before the rest is read (415 early), or takes anything.
    pub accept: fn(&[u8]) -> Result<(), ApiError>,
    /// Where the temporary file is written (the file system the upload ends on).
    pub dir: PathBuf,
}

/// A body received: the file in a temporary place, its reservation still held.
pub struct Received {
    pub chat: ChatId,
    pub file: PartialFile,
    /// The first `SNIFF_BYTES` (all of a shorter file).
    pub head: Vec<u8>,
    pub bytes: u64,
    /// The client's file name, as sent (sanitise before showing it).
    pub file_name: Option<String>,
    pub duration_ms: Option<u32>,
    pub encrypted: bool,
    pub held: Held,
}

/// 413 before reading a body whose announced length cannot fit the limit.
pub fn refuse_oversized(declared: Option<u64>, max: u64, what: &str) -> Result<(), ApiError> {
    if declared.is_some_and(|n| n > max + MULTIPART_OVERHEAD) {
        return Err(ApiError::TooLarge(format!(
            "{what} are limited to {max} bytes"
        )));
    }
    Ok(())
}

/// Streams the multipart `payload` (`file` + `chatId` + the rule's fields, split at
/// `boundary`, `declared` bytes long when the client said so) into a temporary file
/// of `user`'s, reserving room for it first.
pub async fn receive(
    user: UserId,
    declared: Option<u64>,
    boundary: String,
    payload: web::Payload,
    db: &Db,
    settings: &Settings,
    rules: &Rules,
) -> Result<Received, ApiError> {
    // Before a byte of the body is read: the file can be no larger than the body
    // (without a Content-Length, than the limit), so that much is checked against
    // the disk's floor and taken from the user's quota and upload rate.
    let most = declared.map_or(rules.max, |n| n.min(rules.max));
    tokio::fs::create_dir_all(&rules.dir)
        .await
        .map_err(io_error)?;
    let min_free = settings.storage.min_free_bytes;
    check_free_space(&rules.dir, most, min_free)?;
    let held = reserve(user, most, db, settings).await?;

    let mut multipart = body::multipart(payload, boundary, rules);
    let mut chat: Option<ChatId> = None;
    let mut member_checked = false;
    let mut duration_ms: Option<u32> = None;
    let mut encrypted = false;
    let mut file: Option<body::Written> = None;
    let limit = body::Limit {
        most,
        min_free,
        rules,
    };
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| body::multer_error(e, rules))?
    {
        match field.name().unwrap_or_default() {
            "chatId" => {
                let id = body::text(field, rules)
                    .await?
                    .parse::<u64>()
                    .map_err(|_| {
                        ApiError::bad_request(ErrorCode::InvalidField, "chatId must be a chat id")
                    })?;
                // Known before the file: refuse outsiders before reading it.
                require_member(db, ChatId(id), user).await?;
                chat = Some(ChatId(id));
                member_checked = true;
            }
            "durationMs" => {
                let text = body::text(field, rules).await?;
                duration_ms = Some(text.parse::<u32>().map_err(|_| {
                    ApiError::bad_request(
                        ErrorCode::InvalidField,
                        "durationMs must be a whole number",
                    )
                })?);
            }
            "encrypted" => {
                encrypted = match body::text(field, rules).await?.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::bad_request(
                            ErrorCode::InvalidField,
                            "encrypted must be true or false",
                        ))
                    }
                };
            }
            "file" => {
                if file.is_some() {
                    return Err(ApiError::bad_request(
                        ErrorCode::BadMultipart,
                        "send one file",
                    ));
                }
                file = Some(body::write_file(&mut field, &limit).await?);
            }
            _ => {}
        }
    }

    let chat =
        chat.ok_or_else(|| ApiError::bad_request(ErrorCode::MissingField, "chatId is required"))?;
    let written = file.ok_or_else(|| {
        ApiError::bad_request(ErrorCode::MissingFile, "the multipart body has no file")
    })?;
    if !member_checked {
        require_member(db, chat, user).await?;
    }
    Ok(Received {
        chat,
        file: written.file,
        head: written.head,
        bytes: written.bytes,
        file_name: written.file_name,
        duration_ms,
        encrypted,
        held,
    })
}

/// Takes room for an upload of up to `most` bytes from `user`'s quota and rate.
async fn reserve(user: UserId, most: u64, db: &Db, settings: &Settings) -> Result<Held, ApiError> {
    let limits = UploadLimits {
        quota_bytes: settings.limits.user_storage_bytes,
        uploads_per_min: settings.limits.uploads_per_min,
    };
    match db.reserve_upload(user, most, limits, unix_ms()).await? {
        Reservation::Granted(id) => Ok(Held {
            db: db.clone(),
            id: Some(id),
        }),
        // Retry-After is rounded up: a client that waits it gets in.
        Reservation::RateLimited(retry_after) => Err(ApiError::RateLimited { retry_after }),
        Reservation::OverQuota { used, quota } => Err(ApiError::QuotaExceeded { used, quota }),
    }
}

/// An upload's reservation, given back when the upload does not end stored
/// (refused, failed, or the client went away and the handler was dropped).
pub struct Held {
    db: Db,
    id: Option<ReservationId>,
}

impl Held {
    pub fn id(&self) -> ReservationId {
        self.id.unwrap_or(ReservationId(0))
    }

    /// The upload is stored: its row ended the reservation in the same transaction.
    pub fn stored(mut self) {
        self.id = None;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let db = self.db.clone();
        // Drop cannot wait; outside a runtime (shutdown) the sweep releases it later.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = db.release_upload(id).await {
                    tracing::debug!(error = %e, "releasing an upload reservation");
                }
            });
        }
    }
}

/// Moves a received file to `dir/name` (the same file system: `uploads_dir`).
pub async fn move_into(file: PartialFile, dir: &Path, name: &str) -> Result<PartialFile, ApiError> {
    tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
    let target = dir.join(name);
    tokio::fs::rename(file.path(), &target)
        .await
        .map_err(io_error)?;
    file.keep();
    Ok(PartialFile::new(target))
}

/// Writes `data` to `dir/name`, synced; removed again unless kept.
pub async fn write_new(
    dir: &Path,
    name: &str,
    data: &[u8],
    min_free: u64,
) -> Result<PartialFile, ApiError> {
    use tokio::io::AsyncWriteExt;
    tokio::fs::create_dir_all(dir).await.map_err(io_error)?;
    check_free_space(dir, data.len() as u64, min_free)?;
    let path = dir.join(name);
    let guard = PartialFile::new(path.clone());
    let mut f = tokio::fs::File::create(&path).await.map_err(io_error)?;
    f.write_all(data).await.map_err(io_error)?;
    f.sync_all().await.map_err(io_error)?;
    Ok(guard)
}

/// 507 when writing `more` bytes would leave less than `min_free` on the uploads disk.
fn check_free_space(dir: &Path, more: u64, min_free: u64) -> Result<(), ApiError> {
    // The operator hears of it at most once a minute, however many clients retry.
    static LAST_WARNED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let free = audio::free_bytes(dir).map_err(io_error)?;
    if free < min_free.saturating_add(more) {
        let now = unix_ms();
        let last = LAST_WARNED_MS.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) >= 60_000
            && LAST_WARNED_MS
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                free_bytes = free,
                min_free_bytes = min_free,
                "uploads refused: the uploads file system is at its free-space floor \
                 (storage.min_free_bytes)"
            );
        }
        return Err(ApiError::StorageFull);
    }
    Ok(())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A full disk (or quota) is the operator's problem to hear about and the client's
/// to be told clearly; anything else is internal.
fn io_error(e: std::io::Error) -> ApiError {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    if e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
    {
        tracing::error!(error = %e, "the uploads directory is full");
        ApiError::StorageFull
    } else {
        ApiError::internal(e)
    }
}

/// The first bytes every route keeps for sniffing.
const HEAD_BYTES: usize = SNIFF_BYTES;
