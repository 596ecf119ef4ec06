//! What a message carries besides its text: an upload (image, voice message or any
//! file), as the `media` object of PROTOCOL.md shows it, and the rules for which
//! upload a message may carry. The rules live here, once, so the MySQL store and the
//! test kit's memory store refuse exactly the same messages.

use serde::{Deserialize, Serialize};

use crate::ids::{AudioId, MediaId};

/// What an upload is, as the server decided from its bytes (`media_files.kind`). An
/// encrypted upload is always `File`: the server cannot see what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Audio,
    File,
}

impl MediaKind {
    /// The name stored and sent (`"image"`, `"audio"`, `"file"`).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Audio => "audio",
            MediaKind::File => "file",
        }
    }

    /// The stored name back; `None` for anything else.
    pub fn parse(s: &str) -> Option<MediaKind> {
        match s {
            "image" => Some(MediaKind::Image),
            "audio" => Some(MediaKind::Audio),
            "file" => Some(MediaKind::File),
            _ => None,
        }
    }
}

/// The upload a message carries: the same object `POST /api/media` answers with.
/// Absent optional fields are left out of the JSON, not `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaInfo {
    pub media_id: MediaId,
    pub kind: MediaKind,
    pub mime: String,
    pub bytes: u64,
    /// The uploader's file name, sanitised for display (never a path).
    pub name: String,
    /// [`media_url`].
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// [`thumbnail_url`], when the server made a thumbnail (images only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u32>,
}

/// Where an upload's bytes are served.
pub fn media_url(id: MediaId) -> String {
    format!("/api/media/{id}")
}

/// Where a voice message is served by the route of before attachments (the same
/// bytes as [`media_url`]).
pub fn audio_url(id: AudioId) -> String {
    format!("/api/media/audio/{id}")
}

/// Where an upload's thumbnail is served.
pub fn thumbnail_url(id: MediaId) -> String {
    format!("/api/media/{id}/thumbnail")
}

/// The answer to a message that names an upload that is not the sender's, not of
/// this chat, already sent, or does not exist: one answer for all four, so nobody
/// learns whether someone else's upload exists.
pub const NOT_YOURS: &str = "this upload is not yours to send in this chat, or it was sent already";

/// Why a message whose kind names `carries` (`MessageKind::media_kind`: `None` for a
/// text message), `encrypted` or not, may not carry an upload of `upload` kind
/// (`upload_encrypted` or not); `None` when it may. Asked only once the
/// upload is known to be the sender's own, unsent, in the same chat (else
/// [`NOT_YOURS`]), so the answer tells nothing about other people's uploads.
///
/// A plaintext upload goes in a plaintext message of its own kind. An encrypted upload
/// is opaque bytes (stored as a file): only an encrypted message may carry it, and
/// only as an image or a file, the real type being inside the envelope.
pub fn refusal(
    carries: Option<MediaKind>,
    encrypted: bool,
    upload: MediaKind,
    upload_encrypted: bool,
) -> Option<String> {
    match (upload_encrypted, encrypted) {
        (true, true) => (!matches!(carries, Some(MediaKind::Image | MediaKind::File)))
            .then(|| "an encrypted upload is sent as kind \"image\" or \"file\"".to_owned()),
        (true, false) => {
            Some("an encrypted upload can only be sent in an encrypted message".to_owned())
        }
        (false, true) => {
            Some("a plaintext upload cannot be sent in an encrypted message".to_owned())
        }
        (false, false) => (carries != Some(upload)).then(|| {
            let said = carries.map_or("text", MediaKind::as_str);
            format!(
                "this upload is {} {}, not {} {said}",
                article(upload.as_str()),
                upload.as_str(),
                article(said),
            )
        }),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_plaintext_upload_goes_in_a_plaintext_message_of_its_kind() {
        use MediaKind::{Audio, File, Image};
        for kind in [Image, File, Audio] {
            assert_eq!(refusal(Some(kind), false, kind, false), None, "{kind:?}");
            assert!(refusal(Some(kind), true, kind, false).is_some(), "{kind:?}");
        }
        assert_eq!(
            refusal(Some(Image), false, File, false).as_deref(),
            Some("this upload is a file, not an image")
        );
        assert!(refusal(Some(File), false, Image, false).is_some());
        assert_eq!(
            refusal(None, false, Image, false).as_deref(),
            Some("this upload is an image, not a text")
        );
    }

    #[test]
    fn an_encrypted_upload_goes_only_in_an_encrypted_image_or_file_message() {
        use MediaKind::{Audio, File, Image};
        assert_eq!(refusal(Some(Image), true, File, true), None);
        assert_eq!(refusal(Some(File), true, File, true), None);
        assert!(refusal(Some(Audio), true, File, true).is_some());
        assert!(refusal(None, true, File, true).is_some());
        assert!(refusal(Some(File), false, File, true).is_some());
        assert!(refusal(Some(Image), false, File, true).is_some());
    }

    #[test]
    fn optional_fields_are_left_out() {
        let m = MediaInfo {
            media_id: MediaId(4),
            kind: MediaKind::File,
            mime: "application/octet-stream".into(),
            bytes: 10,
            name: "a.pdf".into(),
            url: media_url(MediaId(4)),
            width: None,
            height: None,
            thumbnail_url: None,
            duration_ms: None,
        };
        assert_eq!(
            serde_json::to_value(&m).expect("json"),
            json!({"mediaId": 4, "kind": "file", "mime": "application/octet-stream", "bytes": 10, "name": "a.pdf", "url": "/api/media/4"})
        );
        let image = MediaInfo {
            kind: MediaKind::Image,
            width: Some(640),
            height: Some(480),
            thumbnail_url: Some(thumbnail_url(MediaId(4))),
            ..m
        };
        let v = serde_json::to_value(&image).expect("json");
        assert_eq!(v["thumbnailUrl"], "/api/media/4/thumbnail");
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(640), Some(480))
        );
    }
}
