//! Voice message files: what a file is (decided by its first bytes, never by its
//! name or the client's Content-Type), where it lives (`uploads_dir/audio/<random>`),
//! how much room its file system has left. The sweep of unsent uploads is
//! `crate::media::sweep`.

use std::path::{Path, PathBuf};

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

/// Bytes an unprivileged process may still write on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs writes only into the zeroed struct we own; the path is a valid
    // NUL-terminated string that outlives the call.
    let (rc, st) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c_path.as_ptr(), &mut st), st)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // f_bavail, not f_bfree: the blocks reserved for root are not ours to count on.
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
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
