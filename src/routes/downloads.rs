//! Downloads of uploads: members of the upload's chat only (an unknown id gets the
//! same 403 as someone else's), with Range support, or handed to nginx with
//! `X-Accel-Redirect`. Every answer says `nosniff` and carries a sandboxing CSP;
//! images and audio are shown inline with their type, everything else is an
//! `application/octet-stream` attachment, so nothing uploaded can run in the
//! page's origin.

use std::path::PathBuf;

use actix_files::NamedFile;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use parley_actors::MediaId;

use super::{require_member, resource};
use crate::auth::AuthUser;
use crate::config::Settings;
use crate::db::media::MediaRow;
use crate::db::Db;
use crate::error::ApiError;
use crate::media::files::{self, MEDIA_CSP};
use crate::media::MediaKind;
use crate::upload::attachment::FILE_MIME;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/media/audio/{audioId}").route(web::get().to(audio)))
        .service(resource("/media/{mediaId}").route(web::get().to(media)))
        .service(resource("/media/{mediaId}/thumbnail").route(web::get().to(thumbnail)));
}

const CACHE: &str = "private, max-age=86400";

/// What to send and how.
struct Download {
    /// The file on disk (served by Parley).
    path: PathBuf,
    /// The X-Accel-Redirect target, when nginx serves the bytes.
    accel: Option<String>,
    mime: String,
    disposition: Option<String>,
}

/// The upload `id` when `user` is a member of its chat.
async fn visible(db: &Db, id: MediaId, user: AuthUser) -> Result<MediaRow, ApiError> {
    let row = db
        .media(id)
        .await?
        // Unknown ids look like someone else's: no probing which exist.
        .ok_or(ApiError::Forbidden("this file is not in a chat of yours"))?;
    require_member(db, row.chat, user.0).await?;
    Ok(row)
}

/// GET /api/media/audio/{audioId}: the old voice-message route (audio only).
async fn audio(
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<u64>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let row = visible(&db, MediaId(path.into_inner()), user).await?;
    if row.kind != MediaKind::Audio {
        return Err(ApiError::Forbidden("this audio is not in a chat of yours"));
    }
    let mut d = file_download(&row, &settings);
    // As before issue 18: no Content-Disposition on this route.
    d.disposition = None;
    send(&req, d).await
}

/// GET /api/media/{mediaId}: an upload's bytes.
async fn media(
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<u64>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let row = visible(&db, MediaId(path.into_inner()), user).await?;
    send(&req, file_download(&row, &settings)).await
}

/// GET /api/media/{mediaId}/thumbnail: an image's JPEG thumbnail.
async fn thumbnail(
    user: AuthUser,
    req: HttpRequest,
    path: web::Path<u64>,
    db: web::Data<Db>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let row = visible(&db, MediaId(path.into_inner()), user).await?;
    let thumb = row.thumb_name.ok_or(ApiError::NotFound("thumbnail"))?;
    let uploads = &settings.storage.uploads_dir;
    send(
        &req,
        Download {
            path: files::thumbs_dir(uploads).join(&thumb),
            accel: settings
                .storage
                .x_accel_media_prefix
                .as_ref()
                .map(|p| format!("{p}thumbs/{thumb}")),
            mime: "image/jpeg".into(),
            disposition: None,
        },
    )
    .await
}

fn file_download(row: &MediaRow, settings: &Settings) -> Download {
    let storage = &settings.storage;
    let prefix = match row.kind {
        MediaKind::Audio => storage.x_accel_prefix.as_ref(),
        MediaKind::Image | MediaKind::File => storage.x_accel_media_prefix.as_ref(),
    };
    // Images and audio are shown by the browser (its own decoders, with nosniff
    // and the CSP below); everything else only saved.
    let (mime, inline) = match row.kind {
        MediaKind::Image | MediaKind::Audio => (row.mime.clone(), true),
        MediaKind::File => (FILE_MIME.to_owned(), false),
    };
    Download {
        path: files::dir_for(&storage.uploads_dir, row.kind).join(&row.storage_name),
        accel: prefix.map(|p| format!("{p}{}", row.storage_name)),
        mime,
        disposition: Some(files::content_disposition(inline, &row.name)),
    }
}

async fn send(req: &HttpRequest, d: Download) -> Result<HttpResponse, ApiError> {
    let mime: actix_web::mime::Mime = d.mime.parse().map_err(ApiError::internal)?;
    let mut res = match d.accel {
        Some(target) => HttpResponse::Ok()
            .insert_header(("X-Accel-Redirect", target))
            .content_type(mime)
            .finish(),
        None => NamedFile::open_async(&d.path)
            .await
            .map_err(|_| ApiError::NotFound("file"))?
            .set_content_type(mime)
            .disable_content_disposition()
            .into_response(req),
    };
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(MEDIA_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(cd) = d.disposition {
        // Only attr-chars and %XX: always a valid header value.
        let value = HeaderValue::from_str(&cd).map_err(ApiError::internal)?;
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(res)
}
