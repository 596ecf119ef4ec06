//! Changes to stored messages: edits, deletes for everyone and reactions, each
//! written in one transaction with its row in `message_changes` (whose id is the
//! `changeId` clients sync from), and the reads `sync` and `ready` need.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, TxOpts};
use parley_actors::attachment::MediaKind;
use parley_actors::store::{
    Change, ChangeKind, ChangeTarget, Edit, EditBody, Message, MessageKind, ReactOutcome,
};
use parley_actors::{ChangeId, ChatId, MessageId, Timestamp, UserId};

use super::messages::{kind_from, message_from_row, MESSAGE_COLUMNS, MESSAGE_JOINS};
use super::search_index::{self, searchable};
use super::{Db, DbError, MAX_ID_LIST};

/// What deleting a message left to do outside the database: its upload's files.
pub struct Deleted {
    pub change: ChangeId,
    /// The upload it carried, whose row is gone: its files are to remove from disk.
    pub upload: Option<RemovedUpload>,
}

/// Where a removed upload's files are (`media::files::remove` takes these).
pub struct RemovedUpload {
    pub kind: MediaKind,
    pub storage_name: String,
    pub thumb_name: Option<String>,
}

impl Db {
    /// The message `id` as a change by `user` needs it; `None` when there is no such
    /// message or `user` is not a member of its chat.
    pub async fn change_target(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<ChangeTarget>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, u64, String, bool, bool, NaiveDateTime)> = conn
            .exec_first(
                "SELECT m.chat_id, m.sender_id, m.kind, m.encrypted, m.deleted_at IS NOT NULL, m.created_at \
                 FROM messages m JOIN chat_members cm ON cm.chat_id = m.chat_id AND cm.user_id = ? \
                 WHERE m.id = ?",
                (user.0, id.0),
            )
            .await?;
        drop(conn);
        let Some((chat, sender, kind, encrypted, deleted, created)) = row else {
            return Ok(None);
        };
        let Some(members) = self.chat_members(ChatId(chat)).await? else {
            return Ok(None);
        };
        Ok(Some(ChangeTarget {
            members,
            sender_id: UserId(sender),
            kind: kind_from(&kind),
            encrypted,
            deleted,
            created_at: Timestamp::from(created),
        }))
    }

    /// Stores an edit by the message's sender; `None` when the message is no longer
    /// theirs to edit (deleted meanwhile). The message as stored, with its change id.
    pub async fn edit_message(&self, edit: &Edit) -> Result<Option<(Message, ChangeId)>, DbError> {
        let now = Timestamp::now();
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        // The conditions repeat what the actors checked, so an edit racing a delete
        // (or a forged target) changes nothing.
        let changed = match &edit.body {
            EditBody::Text(text) => {
                // The words are indexed under the message's chat (domain::search_text).
                let chat: Option<u64> = tx
                    .exec_first(
                        "SELECT chat_id FROM messages WHERE id = ? FOR UPDATE",
                        (edit.message.0,),
                    )
                    .await?;
                let Some(chat) = chat else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                tx.exec_drop(
                    "UPDATE messages SET content = ?, edited_at = ? \
                     WHERE id = ? AND sender_id = ? AND kind = 'text' AND encrypted = 0 AND deleted_at IS NULL",
                    (text.as_str(), now.naive(), edit.message.0, edit.editor.0),
                )
                .await?;
                let changed = tx.affected_rows();
                if changed == 1 {
                    let words = searchable(ChatId(chat), MessageKind::Text, false, text);
                    search_index::set_row(&mut tx, edit.message, words).await?;
                }
                changed
            }
            EditBody::Envelope(env) => {
                tx.exec_drop(
                    "UPDATE messages SET e2ee = ?, edited_at = ? \
                     WHERE id = ? AND sender_id = ? AND kind = 'text' AND encrypted = 1 AND deleted_at IS NULL",
                    (env.get(), now.naive(), edit.message.0, edit.editor.0),
                )
                .await?;
                tx.affected_rows()
            }
        };
        if changed != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.exec_drop(
            "INSERT INTO message_changes (chat_id, message_id, kind, user_id, created_at) \
             SELECT chat_id, id, 'edit', ?, ? FROM messages WHERE id = ?",
            (edit.editor.0, now.naive(), edit.message.0),
        )
        .await?;
        let change = ChangeId(tx.last_insert_id().unwrap_or_default());
        tx.commit().await?;
        drop(conn);
        // Read back on its own: a failure here must not re-run the committed edit.
        let message = self
            .retrying(true, || self.message_by_id(edit.message))
            .await
            .map_err(DbError::after_commit)?
            .ok_or_else(|| DbError::Mapping("an edited message vanished".into()))?;
        Ok(Some((message, change)))
    }

    /// Deletes `id` for everyone, by its sender `user`: the row keeps its id, chat,
    /// sender and time, and loses its content, envelope, reply, reactions and upload
    /// (row and quota, thumbnail included; the files are the caller's to remove).
    /// `None` when it is not `user`'s or was deleted already.
    pub async fn delete_message(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<Deleted>, DbError> {
        let now = Timestamp::now();
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let row: Option<(u64, Option<u64>)> = tx
            .exec_first(
                "SELECT m.chat_id, m.media_id FROM messages m \
                 WHERE m.id = ? AND m.deleted_at IS NULL AND m.kind <> 'system' AND (m.sender_id = ? \
                 OR EXISTS (SELECT 1 FROM chat_members cm WHERE cm.chat_id = m.chat_id \
                            AND cm.user_id = ? AND cm.role IN ('owner', 'admin'))) FOR UPDATE",
                (id.0, user.0, user.0),
            )
            .await?;
        let Some((chat, media)) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        tx.exec_drop(
            "UPDATE messages SET content = '', e2ee = NULL, media_id = NULL, reply_to_id = NULL, \
             edited_at = NULL, deleted_at = ? WHERE id = ?",
            (now.naive(), id.0),
        )
        .await?;
        search_index::set_row(&mut tx, id, None).await?;
        tx.exec_drop(
            "DELETE FROM message_reactions WHERE message_id = ?",
            (id.0,),
        )
        .await?;
        let mut upload = None;
        if let Some(media) = media {
            type FileRow = (u64, u64, String, String, Option<String>);
            // Counted against the quota as stored: the file and its thumbnail.
            let file: Option<FileRow> = tx
                .exec_first(
                    "SELECT uploader_id, bytes + COALESCE(thumb_bytes, 0), kind, storage_name, thumb_name \
                     FROM media_files WHERE id = ? FOR UPDATE",
                    (media,),
                )
                .await?;
            if let Some((uploader, bytes, kind, name, thumb)) = file {
                tx.exec_drop("DELETE FROM media_files WHERE id = ?", (media,))
                    .await?;
                // LEAST: the total is unsigned, and never goes below zero.
                tx.exec_drop(
                    "UPDATE user_storage SET used_bytes = used_bytes - LEAST(used_bytes, ?) WHERE user_id = ?",
                    (bytes, uploader),
                )
                .await?;
                upload = Some(RemovedUpload {
                    kind: MediaKind::parse(&kind).ok_or_else(|| {
                        DbError::Mapping(format!("media {media} has kind {kind:?}"))
                    })?,
                    storage_name: name,
                    thumb_name: thumb,
                });
            }
        }
        tx.exec_drop(
            "INSERT INTO message_changes (chat_id, message_id, kind, user_id, created_at) \
             VALUES (?, ?, 'delete', ?, ?)",
            (chat, id.0, user.0, now.naive()),
        )
        .await?;
        let change = ChangeId(tx.last_insert_id().unwrap_or_default());
        tx.commit().await?;
        Ok(Some(Deleted { change, upload }))
    }

    /// Adds or removes `user`'s `emoji` on `id`. The message row is locked for the
    /// transaction, so concurrent reactions to one message count one after another.
    pub async fn react(
        &self,
        user: UserId,
        id: MessageId,
        emoji: &str,
        active: bool,
        max_distinct: u32,
    ) -> Result<ReactOutcome, DbError> {
        let now = Timestamp::now();
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let row: Option<(u64, bool)> = tx
            .exec_first(
                "SELECT chat_id, deleted_at IS NOT NULL FROM messages WHERE id = ? FOR UPDATE",
                (id.0,),
            )
            .await?;
        let chat = match row {
            Some((chat, false)) => chat,
            _ => {
                tx.rollback().await?;
                return Ok(ReactOutcome::Deleted);
            }
        };
        if active {
            let (mine, has): (u64, u64) = tx
                .exec_first(
                    "SELECT COUNT(*), COALESCE(SUM(emoji = ?), 0) FROM message_reactions \
                     WHERE message_id = ? AND user_id = ?",
                    (emoji, id.0, user.0),
                )
                .await?
                .unwrap_or((0, 0));
            if has > 0 {
                tx.rollback().await?;
                return Ok(ReactOutcome::Unchanged);
            }
            if mine >= u64::from(max_distinct) {
                tx.rollback().await?;
                return Ok(ReactOutcome::TooMany);
            }
            tx.exec_drop(
                "INSERT INTO message_reactions (message_id, user_id, emoji, created_at) VALUES (?, ?, ?, ?)",
                (id.0, user.0, emoji, now.naive()),
            )
            .await?;
        } else {
            tx.exec_drop(
                "DELETE FROM message_reactions WHERE message_id = ? AND user_id = ? AND emoji = ?",
                (id.0, user.0, emoji),
            )
            .await?;
            if tx.affected_rows() == 0 {
                tx.rollback().await?;
                return Ok(ReactOutcome::Unchanged);
            }
        }
        let count: u64 = tx
            .exec_first(
                "SELECT COUNT(*) FROM message_reactions WHERE message_id = ? AND emoji = ?",
                (id.0, emoji),
            )
            .await?
            .unwrap_or(0);
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        tx.exec_drop(
            "INSERT INTO message_changes (chat_id, message_id, kind, user_id, emoji, active, count, created_at) \
             VALUES (?, ?, 'react', ?, ?, ?, ?, ?)",
            (chat, id.0, user.0, emoji, active, count, now.naive()),
        )
        .await?;
        let change = ChangeId(tx.last_insert_id().unwrap_or_default());
        if active {
            tx.exec_drop(
                "UPDATE message_reactions SET change_id = ? WHERE message_id = ? AND user_id = ? AND emoji = ?",
                (change.0, id.0, user.0, emoji),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ReactOutcome::Changed { change, count })
    }

    /// Changes to messages of `user`'s chats after `after`, oldest first; an edit
    /// carries the message as it is now.
    pub async fn changes_after(
        &self,
        user: UserId,
        after: ChangeId,
        limit: u32,
    ) -> Result<Vec<Change>, DbError> {
        type ChangeRow = (
            u64,
            u64,
            u64,
            String,
            u64,
            Option<String>,
            Option<bool>,
            Option<u32>,
        );
        let mut conn = self.conn().await?;
        let rows: Vec<ChangeRow> = conn
            .exec(
                "SELECT c.id, c.chat_id, c.message_id, c.kind, c.user_id, c.emoji, c.active, c.count \
                 FROM chat_members cm JOIN message_changes c ON c.chat_id = cm.chat_id AND c.id > ? \
                 WHERE cm.user_id = ? ORDER BY c.id LIMIT ?",
                (after.0, user.0, limit),
            )
            .await?;
        let edited: Vec<u64> = rows.iter().filter(|r| r.3 == "edit").map(|r| r.2).collect();
        let mut messages: HashMap<MessageId, Message> = HashMap::new();
        for chunk in edited.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().copied());
            let found: Vec<Row> = conn
                .exec(
                    format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages m {MESSAGE_JOINS} WHERE m.id IN ({list})"
                    ),
                    params,
                )
                .await?;
            for r in found {
                let m = message_from_row(r)?;
                messages.insert(m.id, m);
            }
        }
        drop(conn);
        let read = self.with_status(messages.into_values().collect()).await?;
        let messages: HashMap<MessageId, Message> = read.into_iter().map(|m| (m.id, m)).collect();
        rows.into_iter()
            .map(|(id, chat, message, kind, user, emoji, active, count)| {
                let what = match kind.as_str() {
                    "edit" => ChangeKind::Edited(
                        messages
                            .get(&MessageId(message))
                            .cloned()
                            .map(Box::new)
                            .ok_or_else(|| DbError::Mapping("an edited message vanished".into()))?,
                    ),
                    "delete" => ChangeKind::Deleted,
                    _ => ChangeKind::Reaction {
                        user: UserId(user),
                        emoji: emoji.unwrap_or_default(),
                        active: active.unwrap_or(false),
                        count: count.unwrap_or(0),
                    },
                };
                Ok(Change {
                    id: ChangeId(id),
                    chat_id: ChatId(chat),
                    message_id: MessageId(message),
                    what,
                })
            })
            .collect()
    }

    /// The newest change in any chat of each of `users` (0 when none): one query a
    /// batch, each chat's newest found from the (chat_id, id) index.
    pub async fn last_changes(&self, users: &[UserId]) -> Result<Vec<ChangeId>, DbError> {
        let mut unique: Vec<u64> = users.iter().map(|u| u.0).collect();
        unique.sort_unstable();
        unique.dedup();
        let mut newest: HashMap<u64, u64> = HashMap::new();
        let mut conn = self.conn().await?;
        for chunk in unique.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().copied());
            let rows: Vec<(u64, Option<u64>)> = conn
                .exec(
                    format!(
                        "SELECT t.user_id, MAX(t.newest) FROM (SELECT cm.user_id, \
                         (SELECT MAX(c.id) FROM message_changes c WHERE c.chat_id = cm.chat_id) AS newest \
                         FROM chat_members cm WHERE cm.user_id IN ({list})) t GROUP BY t.user_id"
                    ),
                    params,
                )
                .await?;
            for (user, id) in rows {
                newest.insert(user, id.unwrap_or(0));
            }
        }
        Ok(users
            .iter()
            .map(|u| ChangeId(newest.get(&u.0).copied().unwrap_or(0)))
            .collect())
    }
}
