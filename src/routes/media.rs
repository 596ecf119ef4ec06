//! Uploads over HTTP: `POST /api/media` (any kind; the streaming, sniffing, image
//! processing and quota accounting are `crate::upload`), the old voice-message
//! upload, and the user's usage. Downloads are `routes::downloads`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use parley_actors::AudioId;
use serde::Serialize;

use super::resource;
use crate::auth::AuthUser;
use crate::config::Settings;
use crate::db::Db;
use crate::error::ApiError;
use crate::media::{media_url, thumbnail_url, ImagePool, MediaInfo};
use crate::upload::{self, attachment, voice};
use parley_actors::attachment::audio_url;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/messages/upload-audio").route(web::post().to(upload_audio)))
        .service(resource("/media").route(web::post().to(upload_media)))
        .service(resource("/media/usage").route(web::get().to(usage)));
    super::downloads::configure(cfg);
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    storage_used_bytes: u64,
    storage_quota_bytes: u64,
    uploads_per_min: u32,
}

/// GET /api/media/usage: how much of the caller's upload quota is used.
async fn usage(
    user: AuthUser,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Usage {
        storage_used_bytes: db.storage_used(user.0).await?,
        storage_quota_bytes: settings.limits.user_storage_bytes,
        uploads_per_min: settings.limits.uploads_per_min,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UploadedAudio {
    audio_id: AudioId,
    url: String,
    bytes: u64,
    mime: &'static str,
    duration_ms: Option<u32>,
}

/// The Content-Length (when sent) and the multipart boundary of an upload, after
/// refusing one whose announced length cannot fit `max`.
fn body_of(req: &HttpRequest, max: u64, what: &str) -> Result<(Option<u64>, String), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    upload::refuse_oversized(declared, max, what)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::UnsupportedMediaType("expected Content-Type: multipart/form-data".into())
    })?;
    Ok((declared, boundary))
}

/// POST /api/messages/upload-audio: multipart `file` + `chatId` (+ `durationMs`).
/// Audio only; the type comes from the file's first bytes; the body is streamed to disk.
async fn upload_audio(
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let (declared, boundary) = body_of(&req, settings.limits.audio_max_bytes, "voice messages")?;
    let stored = voice::receive_audio(user.0, declared, boundary, payload, &db, &settings).await?;
    Ok(HttpResponse::Created().json(UploadedAudio {
        audio_id: stored.id,
        url: audio_url(stored.id),
        bytes: stored.bytes,
        mime: stored.kind.mime(),
        duration_ms: stored.duration_ms,
    }))
}

/// POST /api/media: multipart `file` + `chatId` (+ `encrypted`, `durationMs`).
async fn upload_media(
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
    pool: web::Data<ImagePool>,
) -> Result<HttpResponse, ApiError> {
    let (declared, boundary) = body_of(&req, settings.limits.media_max_bytes, "uploads")?;
    let s = attachment::receive_media(user.0, declared, boundary, payload, &db, &settings, &pool)
        .await?;
    // The upload object of PROTOCOL.md, the same as a message's `media`.
    Ok(HttpResponse::Created().json(MediaInfo {
        media_id: s.id,
        kind: s.kind,
        mime: s.mime.to_owned(),
        bytes: s.bytes,
        name: s.name,
        url: media_url(s.id),
        width: s.width,
        height: s.height,
        thumbnail_url: s.has_thumbnail.then(|| thumbnail_url(s.id)),
        duration_ms: s.duration_ms,
    }))
}
