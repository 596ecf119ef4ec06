//! The `chats` and `chat_members` tables.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Row, TxOpts, Value};
use parley_actors::store::{ChatKind, ChatMembers, Message};
use parley_actors::{ChatId, MessageId, Timestamp, UserId};

use super::messages::{message_from_row, status_of, AUDIO_JOIN, MESSAGE_COLUMNS};
use super::users::UserRow;
use super::{Db, DbError, ER_DUP_ENTRY};

/// A chat as the chat list shows it, from the viewer's side.
#[derive(Debug, Clone)]
pub struct ChatSummary {
    pub id: ChatId,
    pub kind: ChatKind,
    pub title: Option<String>,
    pub created_at: Timestamp,
    pub members: Vec<UserRow>,
    pub last_message: Option<Message>,
    pub unread_count: u64,
}

/// Unread counts stop here (a client shows "999+").
pub const UNREAD_CAP: u64 = 999;

/// id, kind, title, created_at, newest message id.
type ChatRow = (u64, String, Option<String>, NaiveDateTime, Option<u64>);
/// chat id, user columns (as `UserRow`), delivered and read watermarks.
type MemberRow = (
    u64,
    u64,
    String,
    String,
    Option<NaiveDateTime>,
    bool,
    u64,
    u64,
);

fn kind_from(s: &str) -> ChatKind {
    if s == "group" {
        ChatKind::Group
    } else {
        ChatKind::Direct
    }
}

fn direct_key(a: UserId, b: UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}

fn in_list(n: usize) -> String {
    vec!["?"; n].join(",")
}

impl Db {
    /// How many of `ids` are existing users.
    pub async fn count_users(&self, ids: &[UserId]) -> Result<usize, DbError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let n: Option<u64> = conn
            .exec_first(
                format!(
                    "SELECT COUNT(*) FROM users WHERE id IN ({})",
                    in_list(ids.len())
                ),
                ids.iter().map(|u| u.0).collect::<Vec<_>>(),
            )
            .await?;
        Ok(n.unwrap_or(0) as usize)
    }

    /// The direct chat of `a` and `b`: `(id, true)` when created now.
    pub async fn create_direct_chat(
        &self,
        a: UserId,
        b: UserId,
    ) -> Result<(ChatId, bool), DbError> {
        let key = direct_key(a, b);
        if let Some(id) = self.direct_chat(a, b).await? {
            return Ok((id, false));
        }
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let res = tx
            .exec_drop(
                "INSERT INTO chats (kind, direct_key, created_by) VALUES ('direct', ?, ?)",
                (&key, a.0),
            )
            .await;
        match res {
            Ok(()) => {}
            // Both started the chat at the same moment: theirs won, use it.
            Err(mysql_async::Error::Server(e)) if e.code == ER_DUP_ENTRY => {
                tx.rollback().await?;
                drop(conn);
                let id = self.direct_chat(a, b).await?;
                return id
                    .map(|id| (id, false))
                    .ok_or_else(|| DbError::Mapping("direct chat vanished".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let id = tx.last_insert_id().unwrap_or_default();
        tx.exec_drop(
            "INSERT INTO chat_members (chat_id, user_id) VALUES (?, ?), (?, ?)",
            (id, a.0, id, b.0),
        )
        .await?;
        tx.commit().await?;
        Ok((ChatId(id), true))
    }

    pub async fn create_group_chat(
        &self,
        creator: UserId,
        title: &str,
        members: &[UserId],
    ) -> Result<ChatId, DbError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        tx.exec_drop(
            "INSERT INTO chats (kind, title, created_by) VALUES ('group', ?, ?)",
            (title, creator.0),
        )
        .await?;
        let id = tx.last_insert_id().unwrap_or_default();
        let mut params: Vec<Value> = Vec::with_capacity(members.len() * 2);
        for m in members {
            params.push(id.into());
            params.push(m.0.into());
        }
        tx.exec_drop(
            format!(
                "INSERT INTO chat_members (chat_id, user_id) VALUES {}",
                vec!["(?, ?)"; members.len()].join(",")
            ),
            Params::Positional(params),
        )
        .await?;
        tx.commit().await?;
        Ok(ChatId(id))
    }

    pub async fn direct_chat(&self, a: UserId, b: UserId) -> Result<Option<ChatId>, DbError> {
        let mut conn = self.conn().await?;
        let id: Option<u64> = conn
            .exec_first(
                "SELECT id FROM chats WHERE direct_key = ?",
                (direct_key(a, b),),
            )
            .await?;
        Ok(id.map(ChatId))
    }

    /// The chat's kind and members; `None` when there is no such chat.
    pub async fn chat_members(&self, chat: ChatId) -> Result<Option<ChatMembers>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(String, u64)> = conn
            .exec(
                "SELECT c.kind, cm.user_id FROM chats c JOIN chat_members cm ON cm.chat_id = c.id WHERE c.id = ?",
                (chat.0,),
            )
            .await?;
        let Some((kind, _)) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(ChatMembers {
            chat,
            kind: kind_from(kind),
            members: rows.iter().map(|(_, u)| UserId(*u)).collect(),
        }))
    }

    pub async fn is_member(&self, chat: ChatId, user: UserId) -> Result<Option<bool>, DbError> {
        Ok(self
            .chat_members(chat)
            .await?
            .map(|c| c.members.contains(&user)))
    }

    /// Users who share at least one chat with `user`.
    pub async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, DbError> {
        Ok(self.contacts_of(&[user]).await?.pop().unwrap_or_default())
    }

    /// The contacts of each of `users` (one list per input, in order): one query for
    /// a whole batch of sessions coming online.
    pub async fn contacts_of(&self, users: &[UserId]) -> Result<Vec<Vec<UserId>>, DbError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let (list, params) = super::id_list(users.iter().map(|u| u.0));
        let mut conn = self.conn().await?;
        let pairs: Vec<(u64, u64)> = conn
            .exec(
                format!(
                    "SELECT DISTINCT mine.user_id, other.user_id FROM chat_members mine \
                     JOIN chat_members other ON other.chat_id = mine.chat_id \
                     WHERE mine.user_id IN ({list}) AND other.user_id <> mine.user_id"
                ),
                params,
            )
            .await?;
        let mut by_user: HashMap<u64, Vec<UserId>> = HashMap::new();
        for (user, contact) in pairs {
            by_user.entry(user).or_default().push(UserId(contact));
        }
        Ok(users
            .iter()
            .map(|u| by_user.get(&u.0).cloned().unwrap_or_default())
            .collect())
    }

    /// The viewer's chats (all, or just `only`), newest activity first. A fixed number
    /// of queries whatever the number of chats: chats, members, last messages, unread.
    pub async fn chat_summaries(
        &self,
        viewer: UserId,
        only: Option<ChatId>,
    ) -> Result<Vec<ChatSummary>, DbError> {
        let mut conn = self.conn().await?;
        let filter = if only.is_some() { "AND c.id = ?" } else { "" };
        let mut params: Vec<Value> = vec![viewer.0.into()];
        params.extend(only.map(|c| Value::from(c.0)));
        let rows: Vec<ChatRow> = conn
            .exec(
                format!(
                    "SELECT c.id, c.kind, c.title, c.created_at, \
                     (SELECT MAX(m.id) FROM messages m WHERE m.chat_id = c.id) \
                     FROM chat_members cm JOIN chats c ON c.id = cm.chat_id \
                     WHERE cm.user_id = ? {filter}"
                ),
                Params::Positional(params),
            )
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let chat_ids: Vec<Value> = rows.iter().map(|r| Value::from(r.0)).collect();
        let list = in_list(chat_ids.len());

        let member_rows: Vec<MemberRow> = conn
            .exec(
                format!(
                    "SELECT cm.chat_id, u.id, u.email, u.username, u.last_seen_at, (k.user_id IS NOT NULL), \
                     cm.delivered_up_to, cm.read_up_to \
                     FROM chat_members cm JOIN users u ON u.id = cm.user_id \
                     LEFT JOIN public_keys k ON k.user_id = u.id \
                     WHERE cm.chat_id IN ({list}) ORDER BY cm.chat_id, u.username"
                ),
                Params::Positional(chat_ids.clone()),
            )
            .await?;
        let mut members: HashMap<u64, Vec<UserRow>> = HashMap::new();
        let mut marks = super::messages::Watermarks::new();
        for (chat, id, email, username, seen, has_key, d, r) in member_rows {
            members.entry(chat).or_default().push(UserRow {
                id: UserId(id),
                email,
                username,
                last_seen_at: seen.map(Timestamp::from),
                has_public_key: has_key,
            });
            marks
                .entry(ChatId(chat))
                .or_default()
                .push((UserId(id), d, r));
        }

        let last_ids: Vec<Value> = rows.iter().filter_map(|r| r.4).map(Value::from).collect();
        let mut last: HashMap<u64, Message> = HashMap::new();
        if !last_ids.is_empty() {
            let msg_rows: Vec<Row> = conn
                .exec(
                    format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages m {AUDIO_JOIN} WHERE m.id IN ({})",
                        in_list(last_ids.len())
                    ),
                    Params::Positional(last_ids),
                )
                .await?;
            for r in msg_rows {
                let mut m = message_from_row(r)?;
                m.status = status_of(&m, &marks);
                last.insert(m.chat_id.0, m);
            }
        }

        // Unread counts, capped: counting stops at UNREAD_CAP, so a chat with a
        // million unread messages costs no more than one with a thousand. Only chats
        // whose newest message is past the viewer's read mark are counted at all.
        let mut pending: Vec<(u64, u64)> = Vec::new();
        for (id, _, _, _, last) in &rows {
            let read = marks
                .get(&ChatId(*id))
                .and_then(|v| v.iter().find(|(u, _, _)| *u == viewer))
                .map_or(0, |(_, _, r)| *r);
            if last.is_some_and(|l| l > read) {
                pending.push((*id, read));
            }
        }
        let mut unread: HashMap<u64, u64> = HashMap::new();
        // One round trip per 200 chats: a UNION of capped counts.
        for chunk in pending.chunks(200) {
            let part = "SELECT ? AS chat, (SELECT COUNT(*) FROM (SELECT 1 FROM messages \
                        WHERE chat_id = ? AND id > ? AND sender_id <> ? LIMIT ?) t) AS n";
            let sql = vec![part; chunk.len()].join(" UNION ALL ");
            let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
            for (id, read) in chunk {
                params.extend([
                    Value::from(*id),
                    Value::from(*id),
                    Value::from(*read),
                    Value::from(viewer.0),
                    Value::from(UNREAD_CAP),
                ]);
            }
            let counts: Vec<(u64, u64)> = conn.exec(sql, Params::Positional(params)).await?;
            unread.extend(counts);
        }

        let mut out: Vec<ChatSummary> = rows
            .into_iter()
            .map(|(id, kind, title, created, _)| ChatSummary {
                id: ChatId(id),
                kind: kind_from(&kind),
                title,
                created_at: Timestamp::from(created),
                members: members.remove(&id).unwrap_or_default(),
                last_message: last.remove(&id),
                unread_count: unread.get(&id).copied().unwrap_or(0),
            })
            .collect();
        // Newest activity first: the last message's time, or the chat's creation.
        out.sort_by(|a, b| {
            let at = |c: &ChatSummary| {
                (
                    c.last_message
                        .as_ref()
                        .map_or(c.created_at, |m| m.created_at),
                    c.last_message.as_ref().map_or(MessageId(0), |m| m.id),
                    c.id,
                )
            };
            at(b).cmp(&at(a))
        });
        Ok(out)
    }
}

impl Db {
    /// Whether `user` is a member of `chat` (false when there is no such chat): one
    /// primary-key probe, whatever the size of the chat.
    pub async fn is_member_of(&self, chat: ChatId, user: UserId) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        let hit: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM chat_members WHERE chat_id = ? AND user_id = ?",
                (chat.0, user.0),
            )
            .await?;
        Ok(hit.is_some())
    }
}
