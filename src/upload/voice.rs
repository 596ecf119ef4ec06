//! `POST /api/messages/upload-audio`, as before issue 18: audio only (415 for
//! anything else, judged on the first bytes), its own `limits.audio_max_bytes`.

use actix_web::web;
use parley_actors::{AudioId, UserId};

use super::{move_into, receive, Rules};
use crate::audio::{self, AudioType};
use crate::config::Settings;
use crate::db::media::NewMedia;
use crate::db::Db;
use crate::error::ApiError;
use crate::media::{display_name, MediaKind};

/// A voice message as stored.
pub struct Stored {
    pub id: AudioId,
    pub bytes: u64,
    pub kind: AudioType,
    pub duration_ms: Option<u32>,
}

pub fn rules(settings: &Settings) -> Rules {
    Rules {
        max: settings.limits.audio_max_bytes,
        what: "voice messages",
        fields: &["durationMs"],
        accept: |head| {
            AudioType::sniff(head).map(|_| ()).ok_or_else(|| {
                ApiError::UnsupportedMediaType(
                    "voice messages must be WebM, Ogg, MP4/M4A or MP3 audio".into(),
                )
            })
        },
        dir: audio::audio_dir(&settings.storage.uploads_dir),
    }
}

/// Streams the body into a stored voice message of `user`'s.
pub async fn receive_audio(
    user: UserId,
    declared: Option<u64>,
    boundary: String,
    payload: web::Payload,
    db: &Db,
    settings: &Settings,
) -> Result<Stored, ApiError> {
    let rules = rules(settings);
    let got = receive(user, declared, boundary, payload, db, settings, &rules).await?;
    // `accept` let only audio through.
    let kind = AudioType::sniff(&got.head)
        .ok_or_else(|| ApiError::UnsupportedMediaType("not audio".into()))?;
    let name = audio::storage_name(kind);
    let file = move_into(got.file, &rules.dir, &name).await?;
    let id = db
        .insert_media(
            &NewMedia {
                uploader: user,
                chat: got.chat,
                kind: MediaKind::Audio,
                name: &display_name(got.file_name.as_deref()),
                storage_name: &name,
                mime: kind.mime(),
                bytes: got.bytes,
                duration_ms: got.duration_ms,
                width: None,
                height: None,
                thumb: None,
                encrypted: false,
            },
            got.held.id(),
        )
        .await?;
    got.held.stored();
    file.keep();
    Ok(Stored {
        id: AudioId(id.0),
        bytes: got.bytes,
        kind,
        duration_ms: got.duration_ms,
    })
}
