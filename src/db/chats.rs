//! The `chats` and `chat_members` tables.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Row, TxOpts, Value};
use parley_actors::store::{ChatKind, ChatMembers, Message};
use parley_actors::{ChatId, Timestamp, UserId};

use super::groups::MemberRole;
use super::messages::{message_from_row, status_of, MESSAGE_COLUMNS, MESSAGE_JOINS};
use super::users::{Identity, UserRow};
use super::{Db, DbError, ER_DUP_ENTRY, MAX_ID_LIST};

/// A chat as the chat list shows it, from the viewer's side.
#[derive(Debug, Clone)]
pub struct ChatSummary {
    pub id: ChatId,
    pub kind: ChatKind,
    pub title: Option<String>,
    pub created_at: Timestamp,
    pub members: Vec<UserRow>,
    /// Each member's role (a direct chat's two are `member`).
    pub roles: HashMap<UserId, MemberRole>,
    pub last_message: Option<Message>,
    pub unread_count: u64,
    /// Until when the viewer muted the chat's notifications, when that is still
    /// ahead ([`MUTED_FOREVER`]: until they unmute).
    pub muted_until: Option<NaiveDateTime>,
}

/// `muted_until` of a chat muted until its member unmutes it.
pub fn muted_forever() -> NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .unwrap_or(NaiveDateTime::MAX)
}

/// Unread counts stop here (a client shows "999+").
pub const UNREAD_CAP: u64 = 999;

/// id, kind, title, created_at, newest message id, activity (see `summary_rows`).
type ChatRow = (
    u64,
    String,
    Option<String>,
    NaiveDateTime,
    Option<u64>,
    NaiveDateTime,
);
/// chat id, user columns (as `UserRow`), delivered and read watermarks.
type MemberRow = (
    u64,
    u64,
    Option<String>,
    Option<String>,
    Option<NaiveDateTime>,
    bool,
    u64,
    u64,
    String,
    Option<NaiveDateTime>,
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

impl Db {
    /// How many of `ids` (distinct) are existing users (a deleted account is not one:
    /// nobody starts a chat with it or adds it to a group).
    pub async fn count_users(&self, ids: &[UserId]) -> Result<usize, DbError> {
        let mut conn = self.conn().await?;
        let mut found = 0;
        for chunk in ids.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().map(|u| u.0));
            let n: Option<u64> = conn
                .exec_first(
                    format!(
                        "SELECT COUNT(*) FROM users WHERE id IN ({list}) AND deleted_at IS NULL"
                    ),
                    params,
                )
                .await?;
            found += n.unwrap_or(0) as usize;
        }
        Ok(found)
    }

    /// The direct chat of `a` and `b`: `(id, true)` when created now.
    pub async fn create_direct_chat(
        &self,
        a: UserId,
        b: UserId,
    ) -> Result<(ChatId, bool), DbError> {
        self.retrying(false, || async {
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
        })
        .await
    }

    pub async fn create_group_chat(
        &self,
        creator: UserId,
        title: &str,
        members: &[UserId],
    ) -> Result<ChatId, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            tx.exec_drop(
                "INSERT INTO chats (kind, title, created_by) VALUES ('group', ?, ?)",
                (title, creator.0),
            )
            .await?;
            let id = tx.last_insert_id().unwrap_or_default();
            // In slices, so no statement's parameters grow with the group's size.
            for chunk in members.chunks(MEMBER_ROWS) {
                let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 2);
                for m in chunk {
                    params.push(id.into());
                    params.push(m.0.into());
                }
                tx.exec_drop(
                    format!(
                        "INSERT INTO chat_members (chat_id, user_id) VALUES {}",
                        vec!["(?, ?)"; chunk.len()].join(",")
                    ),
                    Params::Positional(params),
                )
                .await?;
            }
            // The creator owns the group (db::groups has the rules of roles).
            tx.exec_drop(
                "UPDATE chat_members SET role = 'owner' WHERE chat_id = ? AND user_id = ?",
                (id, creator.0),
            )
            .await?;
            tx.commit().await?;
            Ok(ChatId(id))
        })
        .await
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
        let rows: Vec<(String, u64, String)> = conn
            .exec(
                "SELECT c.kind, cm.user_id, cm.role FROM chats c JOIN chat_members cm ON cm.chat_id = c.id WHERE c.id = ?",
                (chat.0,),
            )
            .await?;
        let Some((kind, _, _)) = rows.first() else {
            return Ok(None);
        };
        let kind = kind_from(kind);
        let members: Vec<UserId> = rows.iter().map(|(_, u, _)| UserId(*u)).collect();
        // Rooms load this once (and again when told the chat changed, blocks
        // included), so the send path never asks about blocks itself.
        let blocked = match (kind, members.as_slice()) {
            (ChatKind::Direct, &[a, b]) => super::blocks::either_blocks(&mut *conn, a, b).await?,
            _ => false,
        };
        Ok(Some(ChatMembers {
            chat,
            kind,
            admins: rows
                .iter()
                .filter(|(_, _, r)| MemberRole::parse(r).is_some_and(MemberRole::is_admin))
                .map(|(_, u, _)| UserId(*u))
                .collect(),
            members,
            blocked,
        }))
    }

    /// Users who share at least one chat with `user` and see each other's presence:
    /// a block either way hides it (both ways).
    pub async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, DbError> {
        Ok(self.contacts_of(&[user]).await?.pop().unwrap_or_default())
    }

    /// The contacts of each of `users` (one list per input, in order): one query for
    /// a whole batch of sessions coming online.
    pub async fn contacts_of(&self, users: &[UserId]) -> Result<Vec<Vec<UserId>>, DbError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut unique: Vec<u64> = users.iter().map(|u| u.0).collect();
        unique.sort_unstable();
        unique.dedup();
        let mut by_user: HashMap<u64, Vec<UserId>> = HashMap::new();
        let mut conn = self.conn().await?;
        for chunk in unique.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().copied());
            let pairs: Vec<(u64, u64)> = conn
                .exec(
                    format!(
                        "SELECT DISTINCT mine.user_id, other.user_id FROM chat_members mine \
                         JOIN chat_members other ON other.chat_id = mine.chat_id \
                         WHERE mine.user_id IN ({list}) AND other.user_id <> mine.user_id \
                         AND NOT EXISTS (SELECT 1 FROM user_blocks b WHERE \
                             (b.blocker_id = mine.user_id AND b.blocked_id = other.user_id) \
                          OR (b.blocker_id = other.user_id AND b.blocked_id = mine.user_id))"
                    ),
                    params,
                )
                .await?;
            for (user, contact) in pairs {
                by_user.entry(user).or_default().push(UserId(contact));
            }
        }
        Ok(users
            .iter()
            .map(|u| by_user.get(&u.0).cloned().unwrap_or_default())
            .collect())
    }

    /// One page of the viewer's chats, newest activity first: the chats strictly
    /// after `before` (none: from the newest), at most `limit`, and the cursor of the
    /// next page when there is one. A fixed number of queries whatever the number of
    /// chats the viewer is in, and none whose parameters grow with it.
    pub async fn chat_page(
        &self,
        viewer: UserId,
        before: Option<ChatCursor>,
        limit: u32,
    ) -> Result<(Vec<ChatSummary>, Option<ChatCursor>), DbError> {
        let mut conn = self.conn().await?;
        let mut params: Vec<Value> = vec![viewer.0.into()];
        let after = match before {
            Some(c) => {
                let at = c.activity();
                params.extend([at.into(), at.into(), c.chat.0.into()]);
                "WHERE x.activity < ? OR (x.activity = ? AND x.id < ?)"
            }
            None => "",
        };
        params.push((limit + 1).into());
        let mut rows: Vec<ChatRow> = conn
            .exec(
                format!(
                    "SELECT x.id, x.kind, x.title, x.created_at, x.last_id, x.activity \
                     FROM ({}) x {after} ORDER BY x.activity DESC, x.id DESC LIMIT ?",
                    summary_rows("")
                ),
                Params::Positional(params),
            )
            .await?;
        drop(conn);
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| ChatCursor::new(r.5, ChatId(r.0)))
        } else {
            None
        };
        Ok((self.summaries(viewer, rows).await?, next))
    }

    /// One chat as the viewer's chat list shows it; `None` when they are not in it.
    pub async fn chat_summary(
        &self,
        viewer: UserId,
        chat: ChatId,
    ) -> Result<Option<ChatSummary>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ChatRow> = conn
            .exec(
                format!(
                    "SELECT x.id, x.kind, x.title, x.created_at, x.last_id, x.activity FROM ({}) x",
                    summary_rows("AND cm.chat_id = ?")
                ),
                (viewer.0, chat.0),
            )
            .await?;
        drop(conn);
        Ok(self.summaries(viewer, rows).await?.pop())
    }

    /// Members, last messages and unread counts of these chats, in the rows' order.
    /// Every `IN` list is at most `MAX_ID_LIST` long, whatever the caller passes.
    async fn summaries(
        &self,
        viewer: UserId,
        rows: Vec<ChatRow>,
    ) -> Result<Vec<ChatSummary>, DbError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let chat_ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
        let mut members: HashMap<u64, Vec<UserRow>> = HashMap::new();
        let mut roles: HashMap<u64, HashMap<UserId, MemberRole>> = HashMap::new();
        let mut marks = super::messages::Watermarks::new();
        let mut muted_until: HashMap<u64, NaiveDateTime> = HashMap::new();
        for chunk in chat_ids.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().copied());
            let member_rows: Vec<MemberRow> = conn
                .exec(
                    format!(
                        "SELECT cm.chat_id, u.id, u.email, u.username, u.last_seen_at, (k.user_id IS NOT NULL), \
                         cm.delivered_up_to, cm.read_up_to, cm.role, cm.muted_until \
                         FROM chat_members cm JOIN users u ON u.id = cm.user_id \
                         LEFT JOIN public_keys k ON k.user_id = u.id \
                         WHERE cm.chat_id IN ({list}) ORDER BY cm.chat_id, u.username"
                    ),
                    params,
                )
                .await?;
            let now = chrono::Utc::now().naive_utc();
            for (chat, id, email, username, seen, has_key, d, r, role, muted) in member_rows {
                if id == viewer.0 {
                    if let Some(until) = muted.filter(|u| *u > now) {
                        muted_until.insert(chat, until);
                    }
                }
                roles.entry(chat).or_default().insert(
                    UserId(id),
                    MemberRole::parse(&role).unwrap_or(MemberRole::Member),
                );
                members.entry(chat).or_default().push(UserRow {
                    id: UserId(id),
                    identity: Identity::from_columns(email, username),
                    last_seen_at: seen.map(Timestamp::from),
                    has_public_key: has_key,
                });
                marks
                    .entry(ChatId(chat))
                    .or_default()
                    .push((UserId(id), d, r));
            }
        }

        let last_ids: Vec<u64> = rows.iter().filter_map(|r| r.4).collect();
        let mut last: HashMap<u64, Message> = HashMap::new();
        for chunk in last_ids.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().copied());
            let msg_rows: Vec<Row> = conn
                .exec(
                    format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages m {MESSAGE_JOINS} WHERE m.id IN ({list})"
                    ),
                    params,
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
        for (id, _, _, _, last, _) in &rows {
            let read = marks
                .get(&ChatId(*id))
                .and_then(|v| v.iter().find(|(u, _, _)| *u == viewer))
                .map_or(0, |(_, _, r)| *r);
            if last.is_some_and(|l| l > read) {
                pending.push((*id, read));
            }
        }
        let mut unread: HashMap<u64, u64> = HashMap::new();
        // One round trip per UNREAD_CHUNK chats: a UNION of capped counts, padded
        // (with the last chat again) to a few lengths so the statements are reused.
        for chunk in pending.chunks(UNREAD_CHUNK) {
            let part = "SELECT ? AS chat, (SELECT COUNT(*) FROM (SELECT 1 FROM messages \
                        WHERE chat_id = ? AND id > ? AND sender_id <> ? LIMIT ?) t) AS n";
            let mut params: Vec<Value> =
                Vec::with_capacity(super::padded_len(chunk.len(), UNREAD_CHUNK) * 5);
            for &(id, read) in super::padded(chunk, UNREAD_CHUNK) {
                params.extend([
                    Value::from(id),
                    Value::from(id),
                    Value::from(read),
                    Value::from(viewer.0),
                    Value::from(UNREAD_CAP),
                ]);
            }
            let sql = vec![part; params.len() / 5].join(" UNION ALL ");
            let counts: Vec<(u64, u64)> = conn.exec(sql, Params::Positional(params)).await?;
            unread.extend(counts);
        }

        Ok(rows
            .into_iter()
            .map(|(id, kind, title, created, _, _)| ChatSummary {
                id: ChatId(id),
                kind: kind_from(&kind),
                title,
                created_at: Timestamp::from(created),
                members: members.remove(&id).unwrap_or_default(),
                roles: roles.remove(&id).unwrap_or_default(),
                last_message: last.remove(&id),
                unread_count: unread.get(&id).copied().unwrap_or(0),
                muted_until: muted_until.remove(&id),
            })
            .collect())
    }

    /// Takes `user` out of the group `chat`; the remaining members on success. The
    /// same change as `leave_chat` (system message, owner handoff), for callers that
    /// need only the outcome; announce it with `routes::chats::announce` when the
    /// actors run.
    pub async fn leave_group(&self, chat: ChatId, user: UserId) -> Result<Leave, DbError> {
        Ok(match self.leave_chat(chat, user).await? {
            Ok(change) => Leave::Left {
                remaining: change.members,
            },
            Err(super::groups::Refusal::NotAGroup) => Leave::Direct,
            Err(_) => Leave::NotMember,
        })
    }
}

/// The chats of one viewer (`?` = the viewer, then what `only` binds) with the
/// chat-list columns: id, kind, title, created_at, newest message id, activity (the
/// newest message's time, or the chat's creation). messages(chat_id, id) answers each
/// MAX(id) from the index.
fn summary_rows(only: &str) -> String {
    format!(
        "SELECT c.id, c.kind, c.title, c.created_at, t.last_id, \
         COALESCE(lm.created_at, c.created_at) AS activity \
         FROM (SELECT cm.chat_id, (SELECT MAX(m.id) FROM messages m WHERE m.chat_id = cm.chat_id) AS last_id \
               FROM chat_members cm WHERE cm.user_id = ? {only}) t \
         JOIN chats c ON c.id = t.chat_id LEFT JOIN messages lm ON lm.id = t.last_id"
    )
}

/// Member rows per INSERT of a new group (2 parameters each).
const MEMBER_ROWS: usize = 256;

/// Chats per unread-count query (5 parameters each).
const UNREAD_CHUNK: usize = 64;

/// What leaving a chat came to.
#[derive(Debug)]
pub enum Leave {
    /// Not in this chat (or no such chat): the same answer, so ids cannot be probed.
    NotMember,
    /// A direct chat has exactly its two people; it cannot be left.
    Direct,
    /// Left; these members remain.
    Left { remaining: Vec<UserId> },
}

/// Where a page of the chat list ends: the last chat's activity (millisecond
/// precision, as stored) and its id, which orders chats of equal activity, so pages
/// never overlap or skip a chat. On the wire it is an opaque string, `<ms>_<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatCursor {
    activity_ms: i64,
    chat: ChatId,
}

impl ChatCursor {
    fn new(activity: NaiveDateTime, chat: ChatId) -> ChatCursor {
        ChatCursor {
            activity_ms: activity.and_utc().timestamp_millis(),
            chat,
        }
    }

    /// The cursor a client sent back; `None` when it is not one of ours.
    pub fn parse(s: &str) -> Option<ChatCursor> {
        let (ms, chat) = s.split_once('_')?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(chat) {
            return None;
        }
        let activity_ms: i64 = ms.parse().ok()?;
        chrono::DateTime::from_timestamp_millis(activity_ms)?;
        Some(ChatCursor {
            activity_ms,
            chat: ChatId(chat.parse().ok()?),
        })
    }

    fn activity(&self) -> NaiveDateTime {
        chrono::DateTime::from_timestamp_millis(self.activity_ms)
            .unwrap_or_default()
            .naive_utc()
    }
}

impl std::fmt::Display for ChatCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.activity_ms, self.chat.0)
    }
}

impl Db {
    /// Mutes (`Some(until)`) or unmutes (`None`) `chat` for `user`; false when they
    /// are not a member (nothing changed).
    pub async fn set_muted(
        &self,
        chat: ChatId,
        user: UserId,
        until: Option<NaiveDateTime>,
    ) -> Result<bool, DbError> {
        if !self.is_member_of(chat, user).await? {
            return Ok(false);
        }
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE chat_members SET muted_until = ? WHERE chat_id = ? AND user_id = ?",
            (until, chat.0, user.0),
        )
        .await?;
        Ok(true)
    }

    /// Every (chat, user) that one of `users` has muted now: the push engine asks
    /// once per batch of offers (`ix_chat_members_user`; muted chats are few).
    pub async fn muted_chats_of(
        &self,
        users: &[UserId],
    ) -> Result<HashSet<(ChatId, UserId)>, DbError> {
        let mut muted = HashSet::new();
        if users.is_empty() {
            return Ok(muted);
        }
        let mut conn = self.conn().await?;
        for chunk in users.chunks(MAX_ID_LIST) {
            let (list, params) = super::id_list(chunk.iter().map(|u| u.0));
            let rows: Vec<(u64, u64)> = conn
                .exec(
                    format!(
                        "SELECT chat_id, user_id FROM chat_members WHERE user_id IN ({list}) \
                         AND muted_until > UTC_TIMESTAMP(3)"
                    ),
                    Params::Positional(params),
                )
                .await?;
            muted.extend(rows.into_iter().map(|(c, u)| (ChatId(c), UserId(u))));
        }
        Ok(muted)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let at = chrono::DateTime::from_timestamp_millis(1_764_662_400_123)
            .unwrap()
            .naive_utc();
        let c = ChatCursor::new(at, ChatId(42));
        assert_eq!(c.to_string(), "1764662400123_42");
        assert_eq!(ChatCursor::parse(&c.to_string()), Some(c));
        assert_eq!(c.activity(), at);
        for bad in [
            "",
            "_",
            "1_",
            "_1",
            "1",
            "a_1",
            "1_a",
            "-1_2",
            "1_2_3",
            "1.5_2",
            " 1_2",
            "99999999999999999999_1",
            "1_99999999999999999999",
        ] {
            assert_eq!(ChatCursor::parse(bad), None, "{bad:?}");
        }
    }
}
