//! The `messages` table: the batched insert of the write path, history pages, the
//! catch-up and sync reads, and receipts (the per-member watermarks).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Row, TxOpts, Value};
use parley_actors::attachment::{self, MediaInfo, MediaKind};
use parley_actors::protocol::MessageKind;
use parley_actors::store::{
    reply_preview, AudioInfo, Inserted, Message, MessageStatus, NewMessage, Reaction, ReadOutcome,
    Receipt, ReplyTo, REACTION_USERS_LISTED,
};
use parley_actors::ErrorCode;
use parley_actors::{ChatId, MediaId, MessageId, Timestamp, UserId};
use serde_json::value::RawValue;

use super::{Db, DbError, ER_DUP_ENTRY, MAX_ID_LIST};

/// The columns `message_from_row` reads, in order: the message, its upload (`a`), and
/// the message it replies to (`r`).
pub(crate) const MESSAGE_COLUMNS: &str =
    "m.id, m.chat_id, m.sender_id, m.client_id, m.kind, m.content, \
     m.media_id, m.encrypted, m.e2ee, m.created_at, a.mime, a.bytes, a.duration_ms, \
     m.edited_at, m.deleted_at IS NOT NULL, m.reply_to_id, r.sender_id, r.kind, r.encrypted, \
     r.deleted_at IS NOT NULL, LEFT(r.content, 120), \
     a.kind, a.name, a.width, a.height, a.thumb_name IS NOT NULL";
/// The joins `MESSAGE_COLUMNS` needs (both by primary key). EXPLAIN of a history page
/// (50,000 messages, every tenth with an upload): `m` range on `ix_messages_chat_id`
/// read backwards (no filesort), `a` and `r` `eq_ref` on PRIMARY — the plan of before
/// uploads had kinds.
pub(crate) const MESSAGE_JOINS: &str = "LEFT JOIN media_files a ON a.id = m.media_id \
     LEFT JOIN messages r ON r.id = m.reply_to_id";

pub(crate) fn kind_from(s: &str) -> MessageKind {
    match s {
        "audio" => MessageKind::Audio,
        "image" => MessageKind::Image,
        "file" => MessageKind::File,
        "call" => MessageKind::Call,
        "system" => MessageKind::System,
        _ => MessageKind::Text,
    }
}

pub(crate) fn kind_str(k: MessageKind) -> &'static str {
    match k {
        MessageKind::Text => "text",
        MessageKind::Audio => "audio",
        MessageKind::Image => "image",
        MessageKind::File => "file",
        MessageKind::Call => "call",
        MessageKind::System => "system",
    }
}

pub(crate) fn message_from_row(mut row: Row) -> Result<Message, DbError> {
    fn col<T: mysql_async::prelude::FromValue>(row: &mut Row, i: usize) -> Result<T, DbError> {
        row.take_opt(i)
            .ok_or_else(|| DbError::Mapping(format!("message column {i} missing")))?
            .map_err(|e| DbError::Mapping(format!("message column {i}: {e}")))
    }
    let id: u64 = col(&mut row, 0)?;
    let media_id: Option<u64> = col(&mut row, 6)?;
    let e2ee: Option<String> = col(&mut row, 8)?;
    let created: NaiveDateTime = col(&mut row, 9)?;
    let mime: Option<String> = col(&mut row, 10)?;
    let bytes: Option<u64> = col(&mut row, 11)?;
    let duration_ms: Option<u32> = col(&mut row, 12)?;
    let kind: String = col(&mut row, 4)?;
    let edited_at: Option<NaiveDateTime> = col(&mut row, 13)?;
    let deleted: bool = col(&mut row, 14)?;
    let reply_id: Option<u64> = col(&mut row, 15)?;
    let reply_to = match reply_id {
        None => None,
        Some(id) => {
            let sender: u64 = col(&mut row, 16)?;
            let kind: String = col(&mut row, 17)?;
            let encrypted: bool = col(&mut row, 18)?;
            let deleted: bool = col(&mut row, 19)?;
            let text: Option<String> = col(&mut row, 20)?;
            let kind = kind_from(&kind);
            Some(ReplyTo {
                id: MessageId(id),
                sender_id: UserId(sender),
                kind,
                preview: text.and_then(|t| reply_preview(kind, encrypted, deleted, &t)),
                deleted,
            })
        }
    };
    let media = match (media_id, mime, bytes) {
        (Some(media), Some(mime), Some(bytes)) => {
            let media = MediaId(media);
            let stored: Option<String> = col(&mut row, 21)?;
            let has_thumbnail: Option<bool> = col(&mut row, 25)?;
            Some(MediaInfo {
                media_id: media,
                kind: stored
                    .as_deref()
                    .and_then(MediaKind::parse)
                    .ok_or_else(|| DbError::Mapping(format!("media {media} has no kind")))?,
                mime,
                bytes,
                name: col::<Option<String>>(&mut row, 22)?.unwrap_or_default(),
                url: attachment::media_url(media),
                width: col(&mut row, 23)?,
                height: col(&mut row, 24)?,
                thumbnail_url: has_thumbnail
                    .unwrap_or(false)
                    .then(|| attachment::thumbnail_url(media)),
                duration_ms,
            })
        }
        _ => None,
    };
    let kind = kind_from(&kind);
    Ok(Message {
        id: MessageId(id),
        chat_id: ChatId(col(&mut row, 1)?),
        sender_id: UserId(col(&mut row, 2)?),
        client_id: col(&mut row, 3)?,
        kind,
        content: col(&mut row, 5)?,
        // Clients of before attachments read a voice message from `audio`.
        audio: media
            .as_ref()
            .filter(|_| kind == MessageKind::Audio)
            .map(AudioInfo::of),
        media,
        encrypted: col::<bool>(&mut row, 7)?,
        e2ee: e2ee
            .map(RawValue::from_string)
            .transpose()
            .map_err(|e| DbError::Mapping(format!("stored e2ee is not JSON: {e}")))?,
        reply_to,
        edited_at: edited_at.map(Timestamp::from),
        deleted,
        reactions: Vec::new(),
        created_at: Timestamp::from(created),
        status: MessageStatus::Sent,
    })
}

/// Each member's watermarks in some chats: chat → [(user, delivered_up_to, read_up_to)].
pub(crate) type Watermarks = HashMap<ChatId, Vec<(UserId, u64, u64)>>;

/// The status of `m` as its sender sees it: the least advanced other member.
pub(crate) fn status_of(m: &Message, marks: &Watermarks) -> MessageStatus {
    let others = marks
        .get(&m.chat_id)
        .map(|v| {
            v.iter()
                .filter(|(u, _, _)| *u != m.sender_id)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if others.is_empty() {
        return MessageStatus::Sent;
    }
    if others.iter().all(|(_, _, r)| *r >= m.id.0) {
        MessageStatus::Read
    } else if others.iter().all(|(_, d, _)| *d >= m.id.0) {
        MessageStatus::Delivered
    } else {
        MessageStatus::Sent
    }
}

impl Db {
    pub(crate) async fn watermarks(&self, chats: &[ChatId]) -> Result<Watermarks, DbError> {
        let mut marks = Watermarks::new();
        if chats.is_empty() {
            return Ok(marks);
        }
        let mut conn = self.conn().await?;
        for chunk in chats.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().map(|c| c.0));
            let rows: Vec<(u64, u64, u64, u64)> = conn
                .exec(
                    format!(
                        "SELECT chat_id, user_id, delivered_up_to, read_up_to FROM chat_members WHERE chat_id IN ({list})"
                    ),
                    params,
                )
                .await?;
            for (chat, user, d, r) in rows {
                marks
                    .entry(ChatId(chat))
                    .or_default()
                    .push((UserId(user), d, r));
            }
        }
        Ok(marks)
    }

    /// Fills in each message's status and reactions.
    pub(crate) async fn with_status(
        &self,
        mut msgs: Vec<Message>,
    ) -> Result<Vec<Message>, DbError> {
        let mut chats: Vec<ChatId> = msgs.iter().map(|m| m.chat_id).collect();
        chats.sort();
        chats.dedup();
        let marks = self.watermarks(&chats).await?;
        for m in &mut msgs {
            m.status = status_of(m, &marks);
        }
        self.with_reactions(&mut msgs).await?;
        Ok(msgs)
    }

    /// Fills in the reactions of `msgs` (none for deleted ones): one query a page.
    async fn with_reactions(&self, msgs: &mut [Message]) -> Result<(), DbError> {
        let ids: Vec<u64> = msgs.iter().filter(|m| !m.deleted).map(|m| m.id.0).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut by_message: HashMap<u64, Vec<Reaction>> = HashMap::new();
        let mut conn = self.conn().await?;
        for chunk in ids.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().copied());
            // In the order they were added (change id): an emoji's place is where it
            // was first used, and the users listed are the earliest — the order a live
            // client saw the reactions arrive in.
            let rows: Vec<(u64, String, u64)> = conn
                .exec(
                    format!(
                        "SELECT message_id, emoji, user_id FROM message_reactions \
                         WHERE message_id IN ({list}) ORDER BY message_id, change_id"
                    ),
                    params,
                )
                .await?;
            for (message, emoji, user) in rows {
                let list = by_message.entry(message).or_default();
                match list.iter_mut().find(|r| r.emoji == emoji) {
                    Some(r) => {
                        r.count += 1;
                        if r.user_ids.len() < REACTION_USERS_LISTED {
                            r.user_ids.push(UserId(user));
                        }
                    }
                    None => list.push(Reaction {
                        emoji,
                        count: 1,
                        user_ids: vec![UserId(user)],
                    }),
                }
            }
        }
        for m in msgs {
            if let Some(r) = by_message.remove(&m.id.0) {
                m.reactions = r;
            }
        }
        Ok(())
    }

    /// The messages that the replies in `batch` answer, by id: (chat, what the reply
    /// shows). No query when nothing in the batch is a reply.
    async fn reply_targets(
        &self,
        batch: &[NewMessage],
    ) -> Result<HashMap<MessageId, (ChatId, ReplyTo)>, DbError> {
        let ids: Vec<u64> = batch
            .iter()
            .filter_map(|m| m.reply_to.map(|r| r.0))
            .collect();
        let mut found = HashMap::new();
        if ids.is_empty() {
            return Ok(found);
        }
        let mut conn = self.conn().await?;
        for chunk in ids.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().copied());
            let rows: Vec<(u64, u64, u64, String, bool, bool, String)> = conn
                .exec(
                    format!(
                        "SELECT id, chat_id, sender_id, kind, encrypted, deleted_at IS NOT NULL, \
                         LEFT(content, 120) FROM messages WHERE id IN ({list})"
                    ),
                    params,
                )
                .await?;
            for (id, chat, sender, kind, encrypted, deleted, text) in rows {
                let kind = kind_from(&kind);
                let preview = reply_preview(kind, encrypted, deleted, &text);
                found.insert(
                    MessageId(id),
                    (
                        ChatId(chat),
                        ReplyTo {
                            id: MessageId(id),
                            sender_id: UserId(sender),
                            kind,
                            preview,
                            deleted,
                        },
                    ),
                );
            }
        }
        Ok(found)
    }

    /// Stores a batch. The fast path is one multi-row INSERT (autocommit: durable
    /// when it returns). Ids are `LAST_INSERT_ID()` onwards: InnoDB gives a multi-row
    /// INSERT consecutive ids unless `innodb_autoinc_lock_mode = 2`, which
    /// `consecutive_ids` reports at start-up; then ids are read back by client id.
    /// A duplicate client id or a message with an upload (image, file, audio) takes the
    /// one-by-one path, where the upload is claimed. A batch
    /// of large messages is split into INSERTs of at most `INSERT_MAX_BYTES`, so a
    /// few users' big (encrypted) messages cannot make one statement exceed MySQL's
    /// `max_allowed_packet` and fail everyone's messages queued with them.
    pub async fn insert_messages(
        &self,
        batch: &[NewMessage],
        consecutive_ids: bool,
    ) -> Result<Vec<Inserted>, DbError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let replies = self.reply_targets(batch).await?;
        let refused = |m: &NewMessage| {
            m.reply_to
                .is_some_and(|r| replies.get(&r).map(|(chat, _)| *chat) != Some(m.chat_id))
        };
        if batch.iter().any(refused) {
            // Rare: store the others, answer these in their place.
            let valid: Vec<NewMessage> = batch.iter().filter(|m| !refused(m)).cloned().collect();
            let mut stored = Box::pin(self.insert_messages(&valid, consecutive_ids))
                .await?
                .into_iter();
            return batch
                .iter()
                .map(|m| match refused(m) {
                    true => Ok(Inserted::Rejected {
                        code: ErrorCode::InvalidData,
                        message: "replyToId is not a message of this chat".into(),
                    }),
                    false => stored
                        .next()
                        .ok_or_else(|| DbError::Mapping("an outcome is missing".into())),
                })
                .collect();
        }
        let replies: HashMap<MessageId, ReplyTo> =
            replies.into_iter().map(|(id, (_, r))| (id, r)).collect();
        if batch.iter().any(|m| m.media_id.is_some()) {
            return self.insert_one_by_one(batch).await;
        }
        let mut out = Vec::with_capacity(batch.len());
        for part in insert_parts(batch) {
            out.extend(
                self.insert_rows(&batch[part], consecutive_ids, &replies)
                    .await?,
            );
        }
        Ok(out)
    }

    /// One multi-row INSERT of text messages (autocommit).
    async fn insert_rows(
        &self,
        batch: &[NewMessage],
        consecutive_ids: bool,
        replies: &HashMap<MessageId, ReplyTo>,
    ) -> Result<Vec<Inserted>, DbError> {
        let now = Timestamp::now();
        let mut params: Vec<Value> = Vec::with_capacity(batch.len() * 9);
        for m in batch {
            params.push(m.chat_id.0.into());
            params.push(m.sender_id.0.into());
            params.push(m.client_id.as_str().into());
            params.push(kind_str(m.kind).into());
            params.push(m.content.as_str().into());
            params.push(m.encrypted.into());
            params.push(m.e2ee.as_ref().map(|e| e.get().to_string()).into());
            params.push(now.naive().into());
            params.push(m.reply_to.map(|r| r.0).into());
        }
        let sql = format!(
            "INSERT INTO messages (chat_id, sender_id, client_id, kind, content, encrypted, e2ee, created_at, reply_to_id) VALUES {}",
            vec!["(?,?,?,?,?,?,?,?,?)"; batch.len()].join(",")
        );
        let mut conn = self.conn().await?;
        match conn.exec_drop(sql, Params::Positional(params)).await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(e)) if e.code == ER_DUP_ENTRY => {
                drop(conn);
                return self.insert_one_by_one(batch).await;
            }
            Err(e) => return Err(e.into()),
        }
        let first = conn.last_insert_id().unwrap_or_default();
        let ids: Vec<u64> = if consecutive_ids {
            (first..first + batch.len() as u64).collect()
        } else {
            let mut ids = Vec::with_capacity(batch.len());
            for m in batch {
                let id: Option<u64> = conn
                    .exec_first(
                        "SELECT id FROM messages WHERE sender_id = ? AND client_id = ?",
                        (m.sender_id.0, m.client_id.as_str()),
                    )
                    .await?;
                ids.push(id.ok_or_else(|| DbError::Mapping("inserted message not found".into()))?);
            }
            ids
        };
        Ok(batch
            .iter()
            .zip(ids)
            .map(|(m, id)| {
                Inserted::Fresh(Message {
                    id: MessageId(id),
                    chat_id: m.chat_id,
                    sender_id: m.sender_id,
                    client_id: m.client_id.clone(),
                    kind: m.kind,
                    content: m.content.clone(),
                    audio: None,
                    media: None,
                    encrypted: m.encrypted,
                    e2ee: m.e2ee.clone(),
                    reply_to: m.reply_to.and_then(|r| replies.get(&r).cloned()),
                    edited_at: None,
                    deleted: false,
                    reactions: Vec::new(),
                    created_at: now,
                    status: MessageStatus::Sent,
                })
            })
            .collect())
    }

    async fn insert_one_by_one(&self, batch: &[NewMessage]) -> Result<Vec<Inserted>, DbError> {
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            out.push(self.insert_one(m).await?);
        }
        Ok(out)
    }

    /// One message in its own transaction; a message with an upload claims it.
    async fn insert_one(&self, m: &NewMessage) -> Result<Inserted, DbError> {
        if let Some(existing) = self.message_by_client_id(m.sender_id, &m.client_id).await? {
            return Ok(Inserted::Existing(existing));
        }
        let now = Timestamp::now();
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        if let Some(media) = m.media_id {
            if let Some(refused) = claimable(&mut tx, m, media).await? {
                tx.rollback().await?;
                return Ok(refused);
            }
        }
        let res = tx
            .exec_drop(
                "INSERT INTO messages (chat_id, sender_id, client_id, kind, content, media_id, encrypted, e2ee, created_at, reply_to_id) \
                 VALUES (?,?,?,?,?,?,?,?,?,?)",
                Params::Positional(vec![
                    m.chat_id.0.into(),
                    m.sender_id.0.into(),
                    m.client_id.as_str().into(),
                    kind_str(m.kind).into(),
                    m.content.as_str().into(),
                    m.media_id.map(|a| a.0).into(),
                    m.encrypted.into(),
                    m.e2ee.as_ref().map(|e| e.get().to_string()).into(),
                    now.naive().into(),
                    m.reply_to.map(|r| r.0).into(),
                ]),
            )
            .await;
        match res {
            Ok(()) => {}
            Err(mysql_async::Error::Server(e)) if e.code == ER_DUP_ENTRY => {
                tx.rollback().await?;
                drop(conn);
                // Another node stored the same client id a moment ago.
                let existing = self.message_by_client_id(m.sender_id, &m.client_id).await?;
                return existing
                    .map(Inserted::Existing)
                    .ok_or_else(|| DbError::Mapping("duplicate message vanished".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let id = tx.last_insert_id().unwrap_or_default();
        if let Some(media) = m.media_id {
            // The row is locked since `claimable`; the conditions are repeated so the
            // claim can never take what is not the sender's.
            tx.exec_drop(
                "UPDATE media_files SET message_id = ? \
                 WHERE id = ? AND uploader_id = ? AND chat_id = ? AND message_id IS NULL",
                (id, media.0, m.sender_id.0, m.chat_id.0),
            )
            .await?;
            if tx.affected_rows() != 1 {
                tx.rollback().await?;
                return Ok(not_yours());
            }
        }
        tx.commit().await?;
        drop(conn);
        let stored = self
            .message_by_id(MessageId(id))
            .await?
            .ok_or_else(|| DbError::Mapping("inserted message not found".into()))?;
        Ok(Inserted::Fresh(stored))
    }

    pub async fn message_by_id(&self, id: MessageId) -> Result<Option<Message>, DbError> {
        self.one_message("m.id = ?", Params::Positional(vec![id.0.into()]))
            .await
    }

    async fn message_by_client_id(
        &self,
        sender: UserId,
        client_id: &str,
    ) -> Result<Option<Message>, DbError> {
        self.one_message(
            "m.sender_id = ? AND m.client_id = ?",
            Params::Positional(vec![sender.0.into(), client_id.into()]),
        )
        .await
    }

    /// The message matching `filter` (bound `params`), with its status.
    async fn one_message(&self, filter: &str, params: Params) -> Result<Option<Message>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<Row> = conn
            .exec_first(
                format!("SELECT {MESSAGE_COLUMNS} FROM messages m {MESSAGE_JOINS} WHERE {filter}"),
                params,
            )
            .await?;
        drop(conn);
        match row {
            Some(r) => Ok(self.with_status(vec![message_from_row(r)?]).await?.pop()),
            None => Ok(None),
        }
    }

    /// A history page: messages of `chat` with id < `before`, newest first, and
    /// whether there are older ones.
    pub async fn messages_page(
        &self,
        chat: ChatId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<(Vec<Message>, bool), DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    // The (chat_id, id) index makes every page one short range scan,
                    // the oldest as cheap as the newest; without the hint the
                    // optimizer may walk the primary key backwards for old pages.
                    "SELECT {MESSAGE_COLUMNS} FROM messages m FORCE INDEX (ix_messages_chat_id) {MESSAGE_JOINS} \
                     WHERE m.chat_id = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?"
                ),
                (chat.0, before.map_or(u64::MAX, |b| b.0), limit + 1),
            )
            .await?;
        drop(conn);
        let mut msgs = rows
            .into_iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let more = msgs.len() > limit as usize;
        msgs.truncate(limit as usize);
        Ok((self.with_status(msgs).await?, more))
    }

    /// Messages to `user` from others that are past their delivered watermark.
    pub async fn undelivered(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT {MESSAGE_COLUMNS} FROM chat_members cm \
                     JOIN messages m ON m.chat_id = cm.chat_id AND m.id > cm.delivered_up_to {MESSAGE_JOINS} \
                     WHERE cm.user_id = ? AND m.sender_id <> ? AND m.id > ? ORDER BY m.id LIMIT ?"
                ),
                (user.0, user.0, after.0, limit),
            )
            .await?;
        drop(conn);
        let msgs = rows
            .into_iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.with_status(msgs).await
    }

    /// The id of the newest stored message (0 when there is none).
    pub async fn newest_message_id(&self) -> Result<MessageId, DbError> {
        let mut conn = self.conn().await?;
        let id: Option<u64> = conn
            .query_first("SELECT COALESCE(MAX(id), 0) FROM messages")
            .await?;
        Ok(MessageId(id.unwrap_or(0)))
    }

    /// Which of `users` have messages from others not yet delivered to them: one
    /// query for a batch of sessions coming online, so the many with nothing waiting
    /// cost no query of their own.
    pub async fn with_undelivered(&self, users: &[UserId]) -> Result<Vec<UserId>, DbError> {
        let mut unique: Vec<u64> = users.iter().map(|u| u.0).collect();
        unique.sort_unstable();
        unique.dedup();
        let mut found = Vec::new();
        let mut conn = self.conn().await?;
        for chunk in unique.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().copied());
            let ids: Vec<u64> = conn
                .exec(
                    format!(
                        "SELECT DISTINCT cm.user_id FROM chat_members cm \
                         WHERE cm.user_id IN ({list}) AND EXISTS (SELECT 1 FROM messages m \
                         WHERE m.chat_id = cm.chat_id AND m.id > cm.delivered_up_to \
                         AND m.sender_id <> cm.user_id)"
                    ),
                    params,
                )
                .await?;
            found.extend(ids.into_iter().map(UserId));
        }
        Ok(found)
    }

    /// Every message in `user`'s chats with id > `after`, oldest first.
    pub async fn messages_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT {MESSAGE_COLUMNS} FROM chat_members cm \
                     JOIN messages m ON m.chat_id = cm.chat_id {MESSAGE_JOINS} \
                     WHERE cm.user_id = ? AND m.id > ? ORDER BY m.id LIMIT ?"
                ),
                (user.0, after.0, limit),
            )
            .await?;
        drop(conn);
        let msgs = rows
            .into_iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.with_status(msgs).await
    }

    /// Moves delivered watermarks for a batch of readers at once: a few reads and one
    /// write however many readers and chats. Only messages to each reader from others,
    /// past their watermark, count; receipts are grouped by chat and sender, one list
    /// per request (a message asked for twice by the same reader goes to the first
    /// request). However large the batch, no statement has more than
    /// 2 × `MAX_ID_LIST` parameters (reads) or 3 × `RECEIPT_WRITE_ROWS` (writes): one
    /// reader's thousands of ids cannot push a statement past MySQL's 65,535
    /// placeholders and fail everyone's receipts with it.
    pub async fn mark_delivered(
        &self,
        batch: &[(UserId, Vec<MessageId>)],
    ) -> Result<Vec<Vec<Receipt>>, DbError> {
        // Each (reader, message) is answered once, to the first request that asked.
        let mut owner: HashMap<(u64, u64), usize> = HashMap::new();
        for (i, (u, ids)) in batch.iter().enumerate() {
            for id in ids {
                owner.entry((u.0, id.0)).or_insert(i);
            }
        }
        let mut grouped: Vec<BTreeMap<(u64, u64), Vec<MessageId>>> =
            vec![BTreeMap::new(); batch.len()];
        if owner.is_empty() {
            return Ok(vec![Vec::new(); batch.len()]);
        }
        let mut pairs: Vec<(u64, u64)> = owner.keys().map(|&(u, id)| (id, u)).collect();
        pairs.sort_unstable();
        let mut top: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        let mut conn = self.conn().await?;
        for (ids, users) in receipt_slices(&pairs) {
            let (id_sql, mut params) = super::id_list(ids);
            let (user_sql, user_params) = super::id_list(users);
            params.extend(user_params);
            // (reader, chat, sender, id) for every candidate; pairs are matched below.
            let rows: Vec<(u64, u64, u64, u64)> = conn
                .exec(
                    format!(
                        "SELECT cm.user_id, m.chat_id, m.sender_id, m.id FROM messages m \
                         JOIN chat_members cm ON cm.chat_id = m.chat_id \
                         WHERE m.id IN ({id_sql}) AND cm.user_id IN ({user_sql}) \
                         AND m.sender_id <> cm.user_id AND m.id > cm.delivered_up_to ORDER BY m.id"
                    ),
                    params,
                )
                .await?;
            for (reader, chat, sender, id) in rows {
                // Removed once matched: a pair seen again in a later slice is not a
                // second receipt.
                let Some(i) = owner.remove(&(reader, id)) else {
                    continue;
                };
                let t = top.entry((chat, reader)).or_default();
                *t = (*t).max(id);
                grouped[i]
                    .entry((chat, sender))
                    .or_default()
                    .push(MessageId(id));
            }
        }
        if !top.is_empty() {
            // Every (chat, reader) here is an existing membership (it came from the
            // join above), so this only ever updates. Several statements share one
            // transaction (one durable commit).
            let rows: Vec<(u64, u64, u64)> =
                top.into_iter().map(|((c, r), up)| (c, r, up)).collect();
            if rows.len() <= RECEIPT_WRITE_ROWS {
                raise_delivered(&mut *conn, &rows).await?;
            } else {
                let mut tx = conn.start_transaction(TxOpts::default()).await?;
                for chunk in rows.chunks(RECEIPT_WRITE_ROWS) {
                    raise_delivered(&mut tx, chunk).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(grouped
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|((chat, sender), message_ids)| Receipt {
                        chat_id: ChatId(chat),
                        sender_id: UserId(sender),
                        message_ids,
                    })
                    .collect()
            })
            .collect())
    }

    /// Moves `user`'s read (and delivered) watermark in `chat` up to `up_to`, capped
    /// at the chat's newest message.
    pub async fn mark_read(
        &self,
        user: UserId,
        chat: ChatId,
        up_to: MessageId,
    ) -> Result<ReadOutcome, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, Option<u64>)> = conn
            .exec_first(
                "SELECT cm.read_up_to, (SELECT MAX(id) FROM messages WHERE chat_id = cm.chat_id) \
                 FROM chat_members cm WHERE cm.chat_id = ? AND cm.user_id = ?",
                (chat.0, user.0),
            )
            .await?;
        let Some((read, newest)) = row else {
            return Ok(ReadOutcome::NotMember);
        };
        let target = up_to.0.min(newest.unwrap_or(0));
        if target <= read {
            return Ok(ReadOutcome::Unchanged);
        }
        conn.exec_drop(
            "UPDATE chat_members SET read_up_to = GREATEST(read_up_to, ?), \
             delivered_up_to = GREATEST(delivered_up_to, ?) WHERE chat_id = ? AND user_id = ?",
            (target, target, chat.0, user.0),
        )
        .await?;
        let notify: Vec<u64> = conn
            .exec(
                "SELECT user_id FROM chat_members WHERE chat_id = ? AND user_id <> ?",
                (chat.0, user.0),
            )
            .await?;
        Ok(ReadOutcome::Advanced {
            up_to: MessageId(target),
            notify: notify.into_iter().map(UserId).collect(),
        })
    }
}

fn not_yours() -> Inserted {
    Inserted::Rejected {
        code: ErrorCode::Forbidden,
        message: attachment::NOT_YOURS.into(),
    }
}

/// Locks the upload `m` names and checks it may carry it (`attachment::refusal`);
/// the refusal to answer with, or `None` when the claim may go ahead. An upload that
/// is not the sender's, of another chat, sent already or unknown is `forbidden`, all
/// alike; only the sender's own learns why the kinds do not fit (`invalid_data`).
async fn claimable(
    tx: &mut mysql_async::Transaction<'_>,
    m: &NewMessage,
    media: MediaId,
) -> Result<Option<Inserted>, DbError> {
    let row: Option<(String, bool)> = tx
        .exec_first(
            "SELECT kind, encrypted FROM media_files \
             WHERE id = ? AND uploader_id = ? AND chat_id = ? AND message_id IS NULL FOR UPDATE",
            (media.0, m.sender_id.0, m.chat_id.0),
        )
        .await?;
    let Some((kind, encrypted)) = row else {
        return Ok(Some(not_yours()));
    };
    let kind = MediaKind::parse(&kind)
        .ok_or_else(|| DbError::Mapping(format!("media {media} has kind {kind:?}")))?;
    Ok(
        attachment::refusal(m.kind.media_kind(), m.encrypted, kind, encrypted).map(|message| {
            Inserted::Rejected {
                code: ErrorCode::InvalidData,
                message,
            }
        }),
    )
}

/// Most bytes of message data in one INSERT (MySQL's `max_allowed_packet` is 16 MiB
/// by default in MariaDB, and a batch of 256 frames of 64 KiB would reach it).
const INSERT_MAX_BYTES: usize = 4 * 1024 * 1024;

/// The batch cut into runs of at most `INSERT_MAX_BYTES` (a larger message alone).
fn insert_parts(batch: &[NewMessage]) -> Vec<std::ops::Range<usize>> {
    let size = |m: &NewMessage| {
        m.content.len() + m.client_id.len() + m.e2ee.as_ref().map_or(0, |e| e.get().len()) + 64
    };
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in batch.iter().enumerate() {
        let n = size(m);
        if i > start && bytes + n > INSERT_MAX_BYTES {
            parts.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    parts.push(start..batch.len());
    parts
}

/// Watermark rows per receipt write (3 parameters each).
const RECEIPT_WRITE_ROWS: usize = 256;

/// Splits (message id, reader) pairs, sorted, into slices of at most `MAX_ID_LIST`
/// distinct ids and `MAX_ID_LIST` distinct readers: the two `IN` lists of one read.
fn receipt_slices(pairs: &[(u64, u64)]) -> Vec<(Vec<u64>, Vec<u64>)> {
    let mut out = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut users: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    for &(id, user) in pairs {
        let new_id = ids.last() != Some(&id);
        let new_user = !users.contains(&user);
        if (new_id && ids.len() == MAX_ID_LIST) || (new_user && users.len() == MAX_ID_LIST) {
            out.push((
                std::mem::take(&mut ids),
                std::mem::take(&mut users).into_iter().collect(),
            ));
        }
        if ids.last() != Some(&id) {
            ids.push(id);
        }
        users.insert(user);
    }
    if !ids.is_empty() {
        out.push((ids, users.into_iter().collect()));
    }
    out
}

/// `delivered_up_to = GREATEST(delivered_up_to, up_to)` for each (chat, reader,
/// up_to), in one statement padded (with the last row again, which changes nothing)
/// to a few lengths so the statements are reused.
async fn raise_delivered(
    conn: &mut impl Queryable,
    rows: &[(u64, u64, u64)],
) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut params: Vec<Value> =
        Vec::with_capacity(super::padded_len(rows.len(), RECEIPT_WRITE_ROWS) * 3);
    for &(chat, reader, up_to) in super::padded(rows, RECEIPT_WRITE_ROWS) {
        params.extend([Value::from(chat), Value::from(reader), Value::from(up_to)]);
    }
    let len = params.len() / 3;
    conn.exec_drop(
        format!(
            "INSERT INTO chat_members (chat_id, user_id, delivered_up_to) VALUES {} \
             ON DUPLICATE KEY UPDATE delivered_up_to = GREATEST(delivered_up_to, VALUES(delivered_up_to))",
            vec!["(?,?,?)"; len].join(",")
        ),
        Params::Positional(params),
    )
    .await?;
    Ok(())
}

impl Db {
    /// The server's `innodb_autoinc_lock_mode`: below 2, a multi-row INSERT gets
    /// consecutive ids (see `insert_messages`).
    pub(crate) async fn autoinc_lock_mode(&self) -> Result<Option<u8>, DbError> {
        let mut conn = self.conn().await?;
        Ok(conn
            .query_first("SELECT @@innodb_autoinc_lock_mode")
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_batches_are_inserted_in_parts_of_bounded_size() {
        let msg = |bytes: usize| NewMessage {
            chat_id: ChatId(1),
            sender_id: UserId(1),
            client_id: "c".into(),
            kind: MessageKind::Text,
            content: "x".repeat(bytes),
            media_id: None,
            encrypted: false,
            e2ee: None,
            reply_to: None,
        };
        let small: Vec<NewMessage> = (0..256).map(|_| msg(100)).collect();
        assert_eq!(insert_parts(&small), vec![0..256]);
        let big: Vec<NewMessage> = (0..256).map(|_| msg(60_000)).collect();
        let parts = insert_parts(&big);
        assert_eq!(parts.first().map(|r| r.start), Some(0));
        assert_eq!(parts.last().map(|r| r.end), Some(256));
        assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
        assert!(parts.len() >= 4, "{parts:?}");
        for r in &parts {
            let bytes: usize = big[r.clone()].iter().map(|m| m.content.len() + 65).sum();
            assert!(bytes <= INSERT_MAX_BYTES, "{r:?}");
        }
        // One message larger than a part goes alone.
        let huge = vec![msg(100), msg(INSERT_MAX_BYTES), msg(100)];
        assert_eq!(insert_parts(&huge), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn receipt_slices_bound_both_lists_and_keep_every_pair() {
        // One reader with 3,000 ids, and 1,000 readers of one id.
        let mut pairs: Vec<(u64, u64)> = (1..=3000).map(|id| (id, 7)).collect();
        pairs.extend((1..=1000).map(|u| (5000, 100 + u)));
        pairs.sort_unstable();
        let slices = receipt_slices(&pairs);
        for (ids, users) in &slices {
            assert!(ids.len() <= MAX_ID_LIST && users.len() <= MAX_ID_LIST);
        }
        for (id, user) in &pairs {
            assert!(
                slices
                    .iter()
                    .any(|(ids, users)| ids.binary_search(id).is_ok()
                        && users.binary_search(user).is_ok()),
                "({id}, {user}) is in no slice"
            );
        }
        assert!(slices.len() >= 6, "{} slices", slices.len());
    }
}
