//! Receiving a voice message: the multipart body streamed to a temporary file while
//! its type is sniffed from the first bytes, within the size limit, the user's quota
//! and upload rate (reserved before a byte is read) and the disk's free-space floor;
//! then renamed into place and recorded. `routes::media` keeps the HTTP side.

use actix_web::web;
use bytes::Bytes;
use futures_util::StreamExt;
use multer::{Constraints, Multipart, SizeLimit};
use parley_actors::ErrorCode;
use parley_actors::{AudioId, ChatId, UserId};
use tokio::io::AsyncWriteExt;

use crate::audio::{self, AudioType, PartialFile, SNIFF_BYTES};
use crate::config::Settings;
use crate::db::media::{NewAudio, Reservation, ReservationId, UploadLimits};
use crate::db::Db;
use crate::error::ApiError;
use crate::routes::require_member;

/// Room for the multipart framing and the small fields around the file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// While streaming, the free space is checked again after every this many bytes
/// (a statvfs is a microsecond; a chunk is at most a few KiB).
const FREE_SPACE_CHECK_EVERY: u64 = 256 * 1024;

/// A voice message as stored.
pub struct Stored {
    pub id: AudioId,
    pub bytes: u64,
    pub kind: AudioType,
    pub duration_ms: Option<u32>,
}

/// 413 before reading a body whose announced length cannot fit the limit.
pub fn refuse_oversized(declared: Option<u64>, max: u64) -> Result<(), ApiError> {
    if declared.is_some_and(|n| n > max + MULTIPART_OVERHEAD) {
        return Err(ApiError::TooLarge(format!(
            "voice messages are limited to {max} bytes"
        )));
    }
    Ok(())
}

/// Streams the multipart `payload` (`file` + `chatId` (+ `durationMs`), split at
/// `boundary`, `declared` bytes long when the client said so) into a stored voice
/// message of `user`'s.
pub async fn receive(
    user: UserId,
    declared: Option<u64>,
    boundary: String,
    payload: web::Payload,
    db: &Db,
    settings: &Settings,
) -> Result<Stored, ApiError> {
    let max = settings.limits.audio_max_bytes;
    // Before a byte of the body is read: the file can be no larger than the body
    // (without a Content-Length, than the limit), so that much is checked against
    // the disk's floor and taken from the user's quota and upload rate.
    let most = declared.map_or(max, |n| n.min(max));
    let dir = audio::audio_dir(&settings.storage.uploads_dir);
    tokio::fs::create_dir_all(&dir).await.map_err(io_error)?;
    let min_free = settings.storage.min_free_bytes;
    check_free_space(&dir, most, min_free)?;
    let limits = UploadLimits {
        quota_bytes: settings.limits.user_storage_bytes,
        uploads_per_min: settings.limits.uploads_per_min,
    };
    let held = match db.reserve_upload(user, most, limits, unix_ms()).await? {
        Reservation::Granted(id) => Held {
            db: db.clone(),
            id: Some(id),
        },
        // Retry-After is rounded up: a client that waits it gets in.
        Reservation::RateLimited(retry_after) => return Err(ApiError::RateLimited { retry_after }),
        Reservation::OverQuota { used, quota } => {
            return Err(ApiError::QuotaExceeded { used, quota })
        }
    };

    // multer wants a Send stream; actix's payload is not. A bounded channel bridges
    // them chunk by chunk, so the body is never held in memory as a whole.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let mut payload = payload;
    actix_web::rt::spawn(async move {
        while let Some(chunk) = payload.next().await {
            let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    let constraints = Constraints::new()
        .allowed_fields(vec!["file", "chatId", "durationMs"])
        .size_limit(
            SizeLimit::new()
                .whole_stream(max + MULTIPART_OVERHEAD)
                .per_field(64)
                .for_field("file", max),
        );
    let mut multipart = Multipart::with_constraints(stream, boundary, constraints);

    let mut chat: Option<ChatId> = None;
    let mut member_checked = false;
    let mut duration_ms: Option<u32> = None;
    let mut file: Option<(PartialFile, AudioType, u64)> = None;

    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multer_error(e, max))?
    {
        match field.name().unwrap_or_default() {
            "chatId" => {
                let text = field.text().await.map_err(|e| multer_error(e, max))?;
                let id = text.trim().parse::<u64>().map_err(|_| {
                    ApiError::bad_request(ErrorCode::InvalidField, "chatId must be a chat id")
                })?;
                // Known before the file: refuse outsiders before reading it.
                require_member(db, ChatId(id), user).await?;
                chat = Some(ChatId(id));
                member_checked = true;
            }
            "durationMs" => {
                let text = field.text().await.map_err(|e| multer_error(e, max))?;
                duration_ms = Some(text.trim().parse::<u32>().map_err(|_| {
                    ApiError::bad_request(
                        ErrorCode::InvalidField,
                        "durationMs must be a whole number",
                    )
                })?);
            }
            "file" => {
                if file.is_some() {
                    return Err(ApiError::bad_request(
                        ErrorCode::BadMultipart,
                        "send one file",
                    ));
                }
                file = Some(write_file(&mut field, &dir, most, min_free, max).await?);
            }
            _ => {}
        }
    }

    let chat =
        chat.ok_or_else(|| ApiError::bad_request(ErrorCode::MissingField, "chatId is required"))?;
    let (partial, kind, bytes) = file.ok_or_else(|| {
        ApiError::bad_request(ErrorCode::MissingFile, "the multipart body has no file")
    })?;
    if !member_checked {
        require_member(db, chat, user).await?;
    }
    let name = audio::storage_name(kind);
    tokio::fs::rename(partial.path(), dir.join(&name))
        .await
        .map_err(io_error)?;
    partial.keep();
    let id = match db
        .insert_audio(
            &NewAudio {
                uploader: user,
                chat,
                storage_name: &name,
                mime: kind.mime(),
                bytes,
                duration_ms,
            },
            held.id(),
        )
        .await
    {
        Ok(id) => {
            held.stored();
            id
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(dir.join(&name)).await;
            return Err(e.into());
        }
    };
    Ok(Stored {
        id,
        bytes,
        kind,
        duration_ms,
    })
}

/// Streams the `file` field into a temporary file, sniffing its type from the first
/// bytes: never more than `most` bytes (what was reserved), the disk's floor checked
/// as it grows. Returns the file, its type and its length, synced.
async fn write_file(
    field: &mut multer::Field<'static>,
    dir: &std::path::Path,
    most: u64,
    min_free: u64,
    max: u64,
) -> Result<(PartialFile, AudioType, u64), ApiError> {
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
    let mut partial: Option<(PartialFile, tokio::fs::File, AudioType)> = None;
    let mut written = 0u64;
    let mut next_check = FREE_SPACE_CHECK_EVERY;
    while let Some(chunk) = field.chunk().await.map_err(|e| multer_error(e, max))? {
        let chunk: &[u8] = &chunk;
        // Never more than was reserved (the body cannot carry more than its
        // Content-Length; this holds whatever the transport does).
        if written + chunk.len() as u64 > most {
            return Err(ApiError::TooLarge(format!(
                "the file is larger than the {most} bytes announced or allowed"
            )));
        }
        if written >= next_check {
            check_free_space(dir, 0, min_free)?;
            next_check = written + FREE_SPACE_CHECK_EVERY;
        }
        let rest = match &mut partial {
            Some(_) => chunk,
            None => {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                if head.len() < SNIFF_BYTES {
                    continue;
                }
                partial = Some(open_for(dir, &head).await?);
                &chunk[take..]
            }
        };
        if let Some((_, f, _)) = &mut partial {
            if written == 0 {
                f.write_all(&head).await.map_err(io_error)?;
                written = head.len() as u64;
            }
            f.write_all(rest).await.map_err(io_error)?;
            written += rest.len() as u64;
        }
    }
    let (partial, mut f, kind) = match partial {
        Some(p) => p,
        // A file shorter than the sniffing window.
        None if !head.is_empty() => {
            let mut p = open_for(dir, &head).await?;
            p.1.write_all(&head).await.map_err(io_error)?;
            written = head.len() as u64;
            p
        }
        None => {
            return Err(ApiError::bad_request(
                ErrorCode::EmptyFile,
                "the file is empty",
            ))
        }
    };
    f.flush().await.map_err(io_error)?;
    f.sync_all().await.map_err(io_error)?;
    Ok((partial, kind, written))
}

/// An upload's reservation, given back when the upload does not end stored
/// (refused, failed, or the client went away and the handler was dropped).
struct Held {
    db: Db,
    id: Option<ReservationId>,
}

impl Held {
    fn id(&self) -> ReservationId {
        self.id.unwrap_or(ReservationId(0))
    }

    /// The upload is stored: its row ended the reservation in the same transaction.
    fn stored(mut self) {
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

/// 507 when writing `more` bytes would leave less than `min_free` on the uploads disk.
fn check_free_space(dir: &std::path::Path, more: u64, min_free: u64) -> Result<(), ApiError> {
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

fn multer_error(e: multer::Error, max: u64) -> ApiError {
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            ApiError::TooLarge(format!("voice messages are limited to {max} bytes"))
        }
        multer::Error::UnknownField { field_name } => ApiError::bad_request(
            ErrorCode::BadMultipart,
            format!(
                "unexpected field {:?}; send file, chatId and optionally durationMs",
                field_name.unwrap_or_default()
            ),
        ),
        other => ApiError::bad_request(
            ErrorCode::BadMultipart,
            format!("unreadable multipart body: {other}"),
        ),
    }
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

/// Opens a temporary file for an upload whose first bytes are `head`, or 415.
async fn open_for(
    dir: &std::path::Path,
    head: &[u8],
) -> Result<(PartialFile, tokio::fs::File, AudioType), ApiError> {
    let kind = AudioType::sniff(head).ok_or_else(|| {
        ApiError::UnsupportedMediaType(
            "voice messages must be WebM, Ogg, MP4/M4A or MP3 audio".into(),
        )
    })?;
    let path = dir.join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
    let f = tokio::fs::File::create(&path).await.map_err(io_error)?;
    Ok((PartialFile::new(path), f, kind))
}
