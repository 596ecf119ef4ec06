//! Voice message files: what a file is (decided by its first bytes, never by its
//! name or the client's Content-Type), where it lives (`uploads_dir/audio/<random>`),
//! and the sweep that removes uploads never attached to a message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::Db;

/// Bytes needed to recognise every supported container.
pub const SNIFF_BYTES: usize = 12;

/// The audio containers Parley accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioType {
    Webm,
    Ogg,
    Mp4,
    Mpeg,
}

impl AudioType {
    /// Recognises a container from its first bytes (`SNIFF_BYTES`, or all of a shorter file).
    pub fn sniff(head: &[u8]) -> Option<AudioType> {
        match head {
            [0x1A, 0x45, 0xDF, 0xA3, ..] => Some(AudioType::Webm),
            [b'O', b'g', b'g', b'S', ..] => Some(AudioType::Ogg),
            [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some(AudioType::Mp4),
            [b'I', b'D', b'3', ..] => Some(AudioType::Mpeg),
            // An MPEG audio frame header: 11 sync bits, then a valid version and layer.
            [0xFF, b, ..] if b & 0xE0 == 0xE0 && b & 0x18 != 0x08 && b & 0x06 != 0 => {
                Some(AudioType::Mpeg)
            }
            _ => None,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            AudioType::Webm => "audio/webm",
            AudioType::Ogg => "audio/ogg",
            AudioType::Mp4 => "audio/mp4",
            AudioType::Mpeg => "audio/mpeg",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            AudioType::Webm => "webm",
            AudioType::Ogg => "ogg",
            AudioType::Mp4 => "m4a",
            AudioType::Mpeg => "mp3",
        }
    }
}

pub fn audio_dir(uploads: &Path) -> PathBuf {
    uploads.join("audio")
}

/// A server-chosen file name: random, so no client input ever reaches a path.
pub fn storage_name(kind: AudioType) -> String {
    format!("{}.{}", uuid::Uuid::new_v4().simple(), kind.extension())
}

/// A file being written: removed on drop unless `keep` was called.
pub struct PartialFile {
    path: Option<PathBuf>,
}

impl PartialFile {
    pub fn new(path: PathBuf) -> PartialFile {
        PartialFile { path: Some(path) }
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Removes unattached uploads older than `ttl`, every `ttl / 2` (at most every minute).
pub async fn sweep_unattached(db: Db, uploads: PathBuf, ttl: Duration) {
    let every = (ttl / 2).clamp(Duration::from_millis(500), Duration::from_secs(60));
    let dir = audio_dir(&uploads);
    loop {
        tokio::time::sleep(every).await;
        let stale = match db.stale_audio(ttl.as_secs()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "audio sweep skipped");
                continue;
            }
        };
        for (id, name) in stale {
            match db.delete_unattached_audio(id).await {
                Ok(true) => {
                    if let Err(e) = tokio::fs::remove_file(dir.join(&name)).await {
                        tracing::warn!(audio = %id, error = %e, "removing an unattached upload");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "audio sweep"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AudioType;

    #[test]
    fn recognises_containers_by_their_first_bytes() {
        assert_eq!(
            AudioType::sniff(&[0x1A, 0x45, 0xDF, 0xA3, 1, 2]),
            Some(AudioType::Webm)
        );
        assert_eq!(AudioType::sniff(b"OggS\0\x02rest"), Some(AudioType::Ogg));
        assert_eq!(
            AudioType::sniff(b"\0\0\0\x20ftypM4A "),
            Some(AudioType::Mp4)
        );
        assert_eq!(AudioType::sniff(b"ID3\x04\0\0"), Some(AudioType::Mpeg));
        assert_eq!(
            AudioType::sniff(&[0xFF, 0xFB, 0x90, 0x64]),
            Some(AudioType::Mpeg)
        );
        for (bytes, why) in [
            (&b"#!/bin/sh\nrm -rf /"[..], "a shell script"),
            (&b"<html>"[..], "html"),
            (&b"RIFF\0\0\0\0WAVE"[..], "wav is not accepted"),
            (&[0xFF, 0x00][..], "broken sync"),
            (&[][..], "empty"),
        ] {
            assert_eq!(AudioType::sniff(bytes), None, "{why}");
        }
    }
}
