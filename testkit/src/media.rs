//! Voice messages as tests make them: WebM bytes, the upload request, the files on
//! disk, and a deliberately small disk.

use std::path::Path;

use reqwest::multipart::{Form, Part};
use reqwest::Response;

use crate::util::TempDir;

/// `len` bytes that start like a WebM file (an EBML header), the rest a pattern.
pub fn webm(len: usize) -> Vec<u8> {
    let mut v = vec![
        0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81, 0x01, 0x42, 0xF7, 0x81,
    ];
    v.extend((0..len.saturating_sub(12)).map(|i| (i * 7 % 251) as u8));
    v
}

/// `POST /api/messages/upload-audio` with this multipart form, as `token`.
pub async fn upload_audio(http: &reqwest::Client, url: &str, token: &str, form: Form) -> Response {
    http.post(url)
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("request")
}

/// The form the SPA sends: the chat and the file, named `name`, as audio/webm.
pub fn audio_form(chat: u64, bytes: Vec<u8>, name: &str) -> Form {
    Form::new().text("chatId", chat.to_string()).part(
        "file",
        Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str("audio/webm")
            .expect("mime"),
    )
}

/// The names in `dir` (none if it does not exist).
pub fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A small tmpfs mounted for the test (root only), unmounted on drop.
pub struct SmallDisk {
    pub dir: TempDir,
}

impl SmallDisk {
    pub fn mount(size: &str) -> SmallDisk {
        let dir = TempDir::new("disk");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs needs root (CAP_SYS_ADMIN) in this sandbox: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    /// Free bytes, as the server's floor check sees them.
    pub fn free(&self) -> u64 {
        parley::audio::free_bytes(self.dir.path()).unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}
