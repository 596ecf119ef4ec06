//! The multipart body itself: bridged from actix's payload to multer chunk by chunk
//! (never held in memory as a whole), its small fields read as text, its file
//! streamed to a temporary file while the disk's floor is watched.

use actix_web::web;
use bytes::Bytes;
use futures_util::StreamExt;
use multer::{Constraints, Multipart, SizeLimit};
use parley_actors::ErrorCode;
use tokio::io::AsyncWriteExt;

use super::{check_free_space, io_error, Rules, HEAD_BYTES, MULTIPART_OVERHEAD};
use crate::audio::PartialFile;
use crate::error::ApiError;

/// While streaming, the free space is checked again after every this many bytes
/// (a statvfs is a microsecond; a chunk is at most a few KiB).
const FREE_SPACE_CHECK_EVERY: u64 = 256 * 1024;

/// The longest small field (`chatId`, `durationMs`, `encrypted`).
const FIELD_MAX_BYTES: u64 = 64;

/// How much one file may be: `most` (what was reserved), `min_free` left on disk.
pub(super) struct Limit<'a> {
    pub most: u64,
    pub min_free: u64,
    pub rules: &'a Rules,
}

/// A file field written to a temporary file, synced.
pub(super) struct Written {
    pub file: PartialFile,
    pub head: Vec<u8>,
    pub bytes: u64,
    pub file_name: Option<String>,
}

pub(super) fn multipart(
    payload: web::Payload,
    boundary: String,
    rules: &Rules,
) -> Multipart<'static> {
    // multer wants a Send stream; actix's payload is not. A bounded channel bridges
    // them chunk by chunk.
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
    let mut allowed = vec!["file", "chatId"];
    allowed.extend_from_slice(rules.fields);
    let constraints = Constraints::new().allowed_fields(allowed).size_limit(
        SizeLimit::new()
            .whole_stream(rules.max + MULTIPART_OVERHEAD)
            .per_field(FIELD_MAX_BYTES)
            .for_field("file", rules.max),
    );
    Multipart::with_constraints(stream, boundary, constraints)
}

/// A small field's text, trimmed.
pub(super) async fn text(field: multer::Field<'static>, rules: &Rules) -> Result<String, ApiError> {
    let text = field.text().await.map_err(|e| multer_error(e, rules))?;
    Ok(text.trim().to_owned())
}

/// Streams the `file` field into a temporary file in the rule's directory, its
/// first bytes judged by the rule before the rest is read: never more than
/// `limit.most` bytes, the disk's floor checked as it grows.
pub(super) async fn write_file(
    field: &mut multer::Field<'static>,
    limit: &Limit<'_>,
) -> Result<Written, ApiError> {
    let rules = limit.rules;
    let file_name = field.file_name().map(str::to_owned);
    let mut head: Vec<u8> = Vec::with_capacity(HEAD_BYTES);
    let mut open: Option<(PartialFile, tokio::fs::File)> = None;
    let mut written = 0u64;
    let mut next_check = FREE_SPACE_CHECK_EVERY;
    while let Some(chunk) = field.chunk().await.map_err(|e| multer_error(e, rules))? {
        let chunk: &[u8] = &chunk;
        // Never more than was reserved (the body cannot carry more than its
        // Content-Length; this holds whatever the transport does).
        if written + chunk.len() as u64 > limit.most {
            return Err(ApiError::TooLarge(format!(
                "the file is larger than the {} bytes announced or allowed",
                limit.most
            )));
        }
        if written >= next_check {
            check_free_space(&rules.dir, 0, limit.min_free)?;
            next_check = written + FREE_SPACE_CHECK_EVERY;
        }
        let rest = match &open {
            Some(_) => chunk,
            None => {
                let take = (HEAD_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                if head.len() < HEAD_BYTES {
                    continue;
                }
                open = Some(open_for(rules, &head).await?);
                &chunk[take..]
            }
        };
        if let Some((_, f)) = &mut open {
            if written == 0 {
                f.write_all(&head).await.map_err(io_error)?;
                written = head.len() as u64;
            }
            f.write_all(rest).await.map_err(io_error)?;
            written += rest.len() as u64;
        }
    }
    let (file, mut f) = match open {
        Some(p) => p,
        // A file shorter than the sniffing window.
        None if !head.is_empty() => {
            let mut p = open_for(rules, &head).await?;
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
    Ok(Written {
        file,
        head,
        bytes: written,
        file_name,
    })
}

/// Opens a temporary file for an upload whose first bytes are `head`, or the
/// rule's refusal.
async fn open_for(rules: &Rules, head: &[u8]) -> Result<(PartialFile, tokio::fs::File), ApiError> {
    (rules.accept)(head)?;
    let path = rules
        .dir
        .join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
    let f = tokio::fs::File::create(&path).await.map_err(io_error)?;
    Ok((PartialFile::new(path), f))
}

pub(super) fn multer_error(e: multer::Error, rules: &Rules) -> ApiError {
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            ApiError::TooLarge(format!("{} are limited to {} bytes", rules.what, rules.max))
        }
        multer::Error::UnknownField { field_name } => ApiError::bad_request(
            ErrorCode::BadMultipart,
            format!(
                "unexpected field {:?}; send file and chatId{}",
                field_name.unwrap_or_default(),
                rules
                    .fields
                    .iter()
                    .map(|f| format!(", optionally {f}"))
                    .collect::<String>()
            ),
        ),
        other => ApiError::bad_request(
            ErrorCode::BadMultipart,
            format!("unreadable multipart body: {other}"),
        ),
    }
}
