//! Where uploads live on disk and how their downloads are labelled. Voice messages
//! stay in `uploads/audio/` (old installs' files keep working); images and files go
//! to `uploads/media/`, thumbnails to `uploads/media/thumbs/`. Every name on disk is
//! random and server-chosen.

use std::path::{Path, PathBuf};

use super::MediaKind;
use crate::audio;

pub fn media_dir(uploads: &Path) -> PathBuf {
    uploads.join("media")
}

pub fn thumbs_dir(uploads: &Path) -> PathBuf {
    media_dir(uploads).join("thumbs")
}

/// The directory an upload of `kind` is stored in.
pub fn dir_for(uploads: &Path, kind: MediaKind) -> PathBuf {
    match kind {
        MediaKind::Audio => audio::audio_dir(uploads),
        MediaKind::Image | MediaKind::File => media_dir(uploads),
    }
}

/// A server-chosen file name with `extension` (none for files: nothing on disk
/// should suggest how to open them).
pub fn storage_name(extension: Option<&str>) -> String {
    let id = uuid::Uuid::new_v4().simple();
    match extension {
        Some(ext) => format!("{id}.{ext}"),
        None => format!("{id}.bin"),
    }
}

/// Removes an upload's file and thumbnail (after its row is gone: a failed removal
/// leaves an orphan file, logged, never a row pointing at a missing file).
pub async fn remove(uploads: &Path, kind: MediaKind, storage_name: &str, thumb: Option<&str>) {
    let file = dir_for(uploads, kind).join(storage_name);
    if let Err(e) = tokio::fs::remove_file(&file).await {
        tracing::warn!(file = %file.display(), error = %e, "removing an upload");
    }
    if let Some(t) = thumb {
        let file = thumbs_dir(uploads).join(t);
        if let Err(e) = tokio::fs::remove_file(&file).await {
            tracing::warn!(file = %file.display(), error = %e, "removing a thumbnail");
        }
    }
}

/// `Content-Disposition` for a download of `name`: `inline` (shown by the browser,
/// images and audio) or `attachment` (saved, everything else), with the name as
/// RFC 8187 `filename*` so any character survives and none can end the header.
pub fn content_disposition(inline: bool, name: &str) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename*=UTF-8''{}", pct_encode(name))
}

/// RFC 8187 `value-chars`: attr-chars as they are, every other byte as `%XX`.
fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let attr_char = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        if attr_char {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Content-Security-Policy of every media response: opened directly (a link,
/// a new tab), an uploaded file can run nothing and reach nothing in Parley's origin.
pub const MEDIA_CSP: &str =
    "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_percent_encoded_in_filename_star() {
        assert_eq!(
            content_disposition(false, "report 2024.pdf"),
            "attachment; filename*=UTF-8''report%202024.pdf"
        );
        assert_eq!(
            content_disposition(true, "фото;\"x\".jpg"),
            "inline; filename*=UTF-8''%D1%84%D0%BE%D1%82%D0%BE%3B%22x%22.jpg"
        );
    }

    #[test]
    fn each_kind_has_its_directory() {
        let up = Path::new("/u");
        assert_eq!(dir_for(up, MediaKind::Audio), Path::new("/u/audio"));
        assert_eq!(dir_for(up, MediaKind::Image), Path::new("/u/media"));
        assert_eq!(dir_for(up, MediaKind::File), Path::new("/u/media"));
        assert_eq!(thumbs_dir(up), Path::new("/u/media/thumbs"));
        assert!(storage_name(None).ends_with(".bin"));
        assert_ne!(storage_name(Some("png")), storage_name(Some("png")));
    }
}
