//! History pages that are not "older than": the page around one message (to jump to a
//! search hit or a quoted original) and the pages towards the present from there.
//! Every query is a short range of the (chat_id, id) index, as `messages_page` is.

use mysql_async::prelude::Queryable;
use mysql_async::Row;
use parley_actors::store::Message;
use parley_actors::{ChatId, MessageId};

use super::messages::{message_from_row, MESSAGE_COLUMNS, MESSAGE_JOINS};
use super::{Db, DbError};

/// A page of a chat's history, newest first, with where the next pages start.
#[derive(Debug)]
pub struct Window {
    pub messages: Vec<Message>,
    /// Its oldest message, when the chat has older ones.
    pub next_before: Option<MessageId>,
    /// Its newest message, when the chat has newer ones.
    pub next_after: Option<MessageId>,
}

impl Db {
    /// Whether `id` is a message of `chat`.
    pub async fn is_message_of(&self, chat: ChatId, id: MessageId) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        let hit: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM messages WHERE id = ? AND chat_id = ?",
                (id.0, chat.0),
            )
            .await?;
        Ok(hit.is_some())
    }

    /// Up to `limit` messages of `chat` with id > `after`, oldest first.
    async fn newer_than(
        &self,
        chat: ChatId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, DbError> {
        self.chat_range("m.id > ? ORDER BY m.id ASC", chat, after.0, limit)
            .await
    }

    /// Up to `limit` messages of `chat` with id <= `at`, newest first.
    async fn up_to(
        &self,
        chat: ChatId,
        at: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, DbError> {
        self.chat_range("m.id <= ? ORDER BY m.id DESC", chat, at.0, limit)
            .await
    }

    async fn chat_range(
        &self,
        range: &str,
        chat: ChatId,
        bound: u64,
        limit: u32,
    ) -> Result<Vec<Message>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    // As in `messages_page`: one short range scan of (chat_id, id).
                    "SELECT {MESSAGE_COLUMNS} FROM messages m FORCE INDEX (ix_messages_chat_id) {MESSAGE_JOINS} \
                     WHERE m.chat_id = ? AND {range} LIMIT ?"
                ),
                (chat.0, bound, limit),
            )
            .await?;
        drop(conn);
        rows.into_iter().map(message_from_row).collect()
    }

    /// Whether `chat` has a message older than `id`.
    async fn has_older(&self, chat: ChatId, id: MessageId) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        let hit: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM messages FORCE INDEX (ix_messages_chat_id) \
                 WHERE chat_id = ? AND id < ? LIMIT 1",
                (chat.0, id.0),
            )
            .await?;
        Ok(hit.is_some())
    }

    /// The page of `chat` centred on its message `at` (which the caller checked is
    /// one): `at`, about `limit / 2` newer and the rest older; when one side has fewer,
    /// the other fills the page.
    pub async fn messages_around(
        &self,
        chat: ChatId,
        at: MessageId,
        limit: u32,
    ) -> Result<Window, DbError> {
        // One more than a side could use tells whether that side goes on.
        let newer = self.newer_than(chat, at, limit + 1).await?;
        let older = self.up_to(chat, at, limit + 1).await?;
        let mut take_newer = newer.len().min(limit as usize / 2);
        let take_older = older.len().min(limit as usize - take_newer);
        take_newer = newer.len().min(limit as usize - take_older);
        let (more_newer, more_older) = (newer.len() > take_newer, older.len() > take_older);
        let mut page: Vec<Message> = newer.into_iter().take(take_newer).rev().collect();
        page.extend(older.into_iter().take(take_older));
        let next_after = more_newer.then(|| page.first().map(|m| m.id)).flatten();
        let next_before = more_older.then(|| page.last().map(|m| m.id)).flatten();
        Ok(Window {
            messages: self.with_status(page).await?,
            next_before,
            next_after,
        })
    }

    /// The oldest `limit` messages of `chat` with id > `after`, newest first.
    pub async fn messages_after_in(
        &self,
        chat: ChatId,
        after: MessageId,
        limit: u32,
    ) -> Result<Window, DbError> {
        let mut page = self.newer_than(chat, after, limit + 1).await?;
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        let next_after = if more {
            page.last().map(|m| m.id)
        } else {
            None
        };
        let next_before = match page.first() {
            Some(oldest) if self.has_older(chat, oldest.id).await? => Some(oldest.id),
            _ => None,
        };
        page.reverse();
        Ok(Window {
            messages: self.with_status(page).await?,
            next_before,
            next_after,
        })
    }
}
