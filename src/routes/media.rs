//! Voice messages over HTTP: upload (the streaming, sniffing and quota accounting
//! are `crate::upload`), download (members only, with Range support, or handed to
//! nginx with `X-Accel-Redirect`) and the user's usage.

use actix_files::NamedFile;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use parley_actors::AudioId;
use serde::Serialize;

use super::{require_member, resource};
use crate::audio;
use crate::auth::AuthUser;
use crate::config::Settings;
use crate::db::messages::audio_url;
use crate::db::Db;
use crate::error::ApiError;
use crate::upload;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/messages/upload-audio").route(web::post().to(upload)))
        .service(resource("/media/audio/{audioId}").route(web::get().to(download)))
        .service(resource("/media/usage").route(web::get().to(usage)));
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    storage_used_bytes: u64,
    storage_quota_bytes: u64,
    uploads_per_min: u32,
}

/// GET /api/media/usage: how much of the caller's voice-message quota is used.
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
struct Uploaded {
    audio_id: AudioId,
    url: String,
    bytes: u64,
    mime: &'static str,
    duration_ms: Option<u32>,
}

/// POST /api/messages/upload-audio: multipart `file` + `chatId` (+ `durationMs`).
/// The type comes from the file's first bytes; the body is streamed to disk.
async fn upload(
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    upload::refuse_oversized(declared, settings.limits.audio_max_bytes)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::UnsupportedMediaType("expected Content-Type: multipart/form-data".into())
    })?;
    let stored = upload::receive(user.0, declared, boundary, payload, &db, &settings).await?;
    Ok(HttpResponse::Created().json(Uploaded {
        audio_id: stored.id,
        url: audio_url(stored.id),
        bytes: stored.bytes,
        mime: stored.kind.mime(),
        duration_ms: stored.duration_ms,
    }))
}

/// GET /api/media/audio/{audioId}: the bytes, to members of the audio's chat only.
async fn download(
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<u64>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let audio = db
        .audio(AudioId(path.into_inner()))
        .await?
        // Unknown ids look like someone else's: no probing which exist.
        .ok_or(ApiError::Forbidden("this audio is not in a chat of yours"))?;
    require_member(&db, audio.chat, user.0).await?;
    let mime: actix_web::mime::Mime = audio.mime.parse().map_err(ApiError::internal)?;
    if let Some(prefix) = &settings.storage.x_accel_prefix {
        return Ok(HttpResponse::Ok()
            .insert_header((
                "X-Accel-Redirect",
                format!("{prefix}{}", audio.storage_name),
            ))
            .insert_header((header::CACHE_CONTROL, "private, max-age=86400"))
            .content_type(mime)
            .finish());
    }
    let file = NamedFile::open_async(
        audio::audio_dir(&settings.storage.uploads_dir).join(&audio.storage_name),
    )
    .await
    .map_err(|_| ApiError::NotFound("audio file"))?
    .set_content_type(mime)
    .disable_content_disposition();
    let mut res = file.into_response(&req);
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, max-age=86400"),
    );
    Ok(res)
}
