//! `POST /api/media`: any file up to `limits.media_max_bytes`. Its kind comes from
//! its bytes: an image is checked, cleaned and thumbnailed on the image workers and
//! stored as re-encoded; audio and anything else are stored as sent; an encrypted
//! upload is opaque (kind file, no sniffing, no thumbnail).

use actix_web::web;
use parley_actors::{MediaId, UserId};

use super::{move_into, receive, write_new, Received, Rules};
use crate::audio::PartialFile;
use crate::config::Settings;
use crate::db::media::NewMedia;
use crate::db::Db;
use crate::error::ApiError;
use crate::media::images::{self, ImageLimits, Processed, Refused};
use crate::media::{display_name, files, ImagePool, ImageType, MediaKind, Sniffed};

/// What every file of kind `file` is served as: bytes to save, never to render.
pub const FILE_MIME: &str = "application/octet-stream";

/// An upload as stored (the 201 answer is made of it).
#[derive(Debug)]
pub struct StoredMedia {
    pub id: MediaId,
    pub kind: MediaKind,
    pub mime: &'static str,
    pub bytes: u64,
    pub name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub has_thumbnail: bool,
    pub duration_ms: Option<u32>,
}

pub fn rules(settings: &Settings) -> Rules {
    Rules {
        max: settings.limits.media_max_bytes,
        what: "uploads",
        fields: &["encrypted", "durationMs"],
        // Every type is taken; which kind it is is decided once the body is in.
        accept: |_| Ok(()),
        dir: files::media_dir(&settings.storage.uploads_dir),
    }
}

/// Streams the body into a stored upload of `user`'s.
pub async fn receive_media(
    user: UserId,
    declared: Option<u64>,
    boundary: String,
    payload: web::Payload,
    db: &Db,
    settings: &Settings,
    pool: &ImagePool,
) -> Result<StoredMedia, ApiError> {
    let rules = rules(settings);
    let got = receive(user, declared, boundary, payload, db, settings, &rules).await?;
    let sniffed = if got.encrypted {
        Sniffed::File
    } else {
        Sniffed::of(&got.head)
    };
    match sniffed {
        Sniffed::Image(ty) => store_image(user, got, ty, db, settings, pool).await,
        Sniffed::Audio(ty) => {
            let (dir, name) = (
                files::dir_for(&settings.storage.uploads_dir, MediaKind::Audio),
                crate::audio::storage_name(ty),
            );
            store_as_sent(
                user,
                got,
                MediaKind::Audio,
                ty.mime(),
                (dir.as_path(), name.as_str()),
                db,
            )
            .await
        }
        Sniffed::File => {
            let name = files::storage_name(None);
            store_as_sent(
                user,
                got,
                MediaKind::File,
                FILE_MIME,
                (rules.dir.as_path(), name.as_str()),
                db,
            )
            .await
        }
    }
}

/// Audio and files: the bytes as they came, moved into place and recorded.
async fn store_as_sent(
    user: UserId,
    got: Received,
    kind: MediaKind,
    mime: &'static str,
    (dir, name): (&std::path::Path, &str),
    db: &Db,
) -> Result<StoredMedia, ApiError> {
    let file = move_into(got.file, dir, name).await?;
    let display = display_name(got.file_name.as_deref());
    // A duration only means something for audio the server can see.
    let duration_ms = got.duration_ms.filter(|_| kind == MediaKind::Audio);
    let id = db
        .insert_media(
            &NewMedia {
                uploader: user,
                chat: got.chat,
                kind,
                name: &display,
                storage_name: name,
                mime,
                bytes: got.bytes,
                duration_ms,
                width: None,
                height: None,
                thumb: None,
                encrypted: got.encrypted,
            },
            got.held.id(),
        )
        .await?;
    got.held.stored();
    file.keep();
    Ok(StoredMedia {
        id,
        kind,
        mime,
        bytes: got.bytes,
        name: display,
        width: None,
        height: None,
        has_thumbnail: false,
        duration_ms,
    })
}

/// An image: processed on the image workers, stored re-encoded with its thumbnail.
async fn store_image(
    user: UserId,
    got: Received,
    ty: ImageType,
    db: &Db,
    settings: &Settings,
    pool: &ImagePool,
) -> Result<StoredMedia, ApiError> {
    let processed = process(&got.file, ty, settings, pool).await?;
    // What is stored is what counts: a re-encoded image may be larger than sent.
    let max = settings.limits.media_max_bytes;
    if processed.data.len() as u64 > max {
        return Err(ApiError::TooLarge(format!(
            "the image is {} bytes once cleaned of its metadata; uploads are limited to {max} bytes",
            processed.data.len()
        )));
    }
    let uploads = &settings.storage.uploads_dir;
    let min_free = settings.storage.min_free_bytes;
    let name = files::storage_name(Some(processed.ty.extension()));
    let file = write_new(&files::media_dir(uploads), &name, &processed.data, min_free).await?;
    let thumb_name = files::storage_name(Some("jpg"));
    let thumb = write_new(
        &files::thumbs_dir(uploads),
        &thumb_name,
        &processed.thumbnail,
        min_free,
    )
    .await?;
    // The original (with its metadata) goes now, not when the handler ends.
    drop(got.file);
    let display = display_name(got.file_name.as_deref());
    let bytes = processed.data.len() as u64;
    let id = db
        .insert_media(
            &NewMedia {
                uploader: user,
                chat: got.chat,
                kind: MediaKind::Image,
                name: &display,
                storage_name: &name,
                mime: processed.ty.mime(),
                bytes,
                duration_ms: None,
                width: Some(processed.width),
                height: Some(processed.height),
                thumb: Some((thumb_name.as_str(), processed.thumbnail.len() as u64)),
                encrypted: false,
            },
            got.held.id(),
        )
        .await?;
    got.held.stored();
    file.keep();
    thumb.keep();
    Ok(StoredMedia {
        id,
        kind: MediaKind::Image,
        mime: processed.ty.mime(),
        bytes,
        name: display,
        width: Some(processed.width),
        height: Some(processed.height),
        has_thumbnail: true,
        duration_ms: None,
    })
}

/// Reads the received image and runs `images::process` on a worker.
async fn process(
    file: &PartialFile,
    ty: ImageType,
    settings: &Settings,
    pool: &ImagePool,
) -> Result<Processed, ApiError> {
    let data = tokio::fs::read(file.path())
        .await
        .map_err(ApiError::internal)?;
    let limits = ImageLimits {
        max_pixels: settings.limits.image_max_pixels,
        max_frames: settings.limits.image_max_frames,
    };
    let started = std::time::Instant::now();
    let result = pool
        .run(move || images::process(&data, ty, limits))
        .await
        .map_err(|_| ApiError::Unavailable("too many images are being processed; retry shortly"))?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "image processed"
    );
    result.map_err(|e| match e {
        Refused::TooLarge(m) => ApiError::ImageTooLarge(m),
        Refused::Unsupported(m) => ApiError::UnsupportedMediaType(m),
    })
}
