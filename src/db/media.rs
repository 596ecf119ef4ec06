//! The `audio_files` table: uploaded voice messages.

use mysql_async::prelude::Queryable;
use parley_actors::{AudioId, ChatId, UserId};

use super::{Db, DbError};

pub struct AudioRow {
    pub id: AudioId,
    pub chat: ChatId,
    pub storage_name: String,
    pub mime: String,
}

pub struct NewAudio<'a> {
    pub uploader: UserId,
    pub chat: ChatId,
    pub storage_name: &'a str,
    pub mime: &'a str,
    pub bytes: u64,
    pub duration_ms: Option<u32>,
}

impl Db {
    pub async fn insert_audio(&self, a: &NewAudio<'_>) -> Result<AudioId, DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO audio_files (uploader_id, chat_id, storage_name, mime, bytes, duration_ms) VALUES (?,?,?,?,?,?)",
            (a.uploader.0, a.chat.0, a.storage_name, a.mime, a.bytes, a.duration_ms),
        )
        .await?;
        Ok(AudioId(conn.last_insert_id().unwrap_or_default()))
    }

    pub async fn audio(&self, id: AudioId) -> Result<Option<AudioRow>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, String, String)> = conn
            .exec_first(
                "SELECT chat_id, storage_name, mime FROM audio_files WHERE id = ?",
                (id.0,),
            )
            .await?;
        Ok(row.map(|(chat, storage_name, mime)| AudioRow {
            id,
            chat: ChatId(chat),
            storage_name,
            mime,
        }))
    }

    /// Uploads never attached to a message and older than `older_than_secs`.
    pub async fn stale_audio(
        &self,
        older_than_secs: u64,
    ) -> Result<Vec<(AudioId, String)>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, String)> = conn
            .exec(
                "SELECT id, storage_name FROM audio_files \
                 WHERE message_id IS NULL AND created_at < UTC_TIMESTAMP(3) - INTERVAL ? SECOND LIMIT 500",
                (older_than_secs,),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| (AudioId(id), name))
            .collect())
    }

    /// Deletes an upload's row unless a message claimed it meanwhile; true when deleted.
    pub async fn delete_unattached_audio(&self, id: AudioId) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM audio_files WHERE id = ? AND message_id IS NULL",
            (id.0,),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }
}
