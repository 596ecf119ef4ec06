//! Running a group: roles, renaming, adding and removing members, leaving. Each
//! change is stored with its `system` message in one transaction, so the history
//! is the record of the group's changes and can never disagree with it.
//!
//! Rules (docs/PROTOCOL.md, "Groups and blocking"):
//! - the owner and admins rename and add; the owner alone changes roles;
//! - the owner removes anyone, an admin removes plain members only, a member
//!   removes nobody; anyone removes themselves (leaving);
//! - an owner who leaves hands the group to the oldest admin, else the oldest
//!   member (joined first; the lower id breaks a tie).
//!
//! Every change first locks the chat's row, so changes to one group happen one at
//! a time: two admins removing each other, or the owner leaving while roles
//! change, see a settled membership.
//!
//! A removed or departed member's `chat_members` row is deleted (every membership
//! check then refuses them, whatever path it is on); `chat_departures` keeps how
//! far they may still read the history.

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Transaction, TxOpts, Value};
use parley_actors::store::Message;
use parley_actors::{ChatId, MessageId, UserId};
use serde::Serialize;
use serde_json::json;

use super::{Db, DbError};

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Admin,
    Member,
}

impl MemberRole {
    pub fn parse(s: &str) -> Option<MemberRole> {
        match s {
            "owner" => Some(MemberRole::Owner),
            "admin" => Some(MemberRole::Admin),
            "member" => Some(MemberRole::Member),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Admin => "admin",
            MemberRole::Member => "member",
        }
    }

    /// The owner and admins run the group.
    pub fn is_admin(self) -> bool {
        matches!(self, MemberRole::Owner | MemberRole::Admin)
    }
}

/// A change made: its system messages (oldest first) and who is affected.
#[derive(Debug)]
pub struct GroupChange {
    pub chat: ChatId,
    pub messages: Vec<Message>,
    /// The members after the change.
    pub members: Vec<UserId>,
    /// Newly in the group.
    pub added: Vec<UserId>,
    /// No longer in the group (removed or left).
    pub removed: Vec<UserId>,
}

/// Why a change was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The caller is not in this chat, or there is no such chat: one answer, so
    /// outsiders learn nothing.
    NotMember,
    /// A direct chat has no title, roles or other members.
    NotAGroup,
    /// The caller's role does not allow it.
    NotAllowed(&'static str),
    /// The user to remove or change is not in the group.
    NoSuchMember,
    /// The group would pass `limits.group_max_members`.
    TooMany,
    /// One of the users to add does not exist.
    UnknownUser,
    /// One of the users to add blocked the caller (answered like any refusal).
    Blocked,
    /// Nothing to do (already a member, already that role, already that title).
    Unchanged,
}

/// What the caller of [`Db::history_access`] may read of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryAccess {
    Member,
    /// A former member: messages up to and including this one.
    Former {
        up_to: MessageId,
    },
    None,
}

type Outcome = Result<GroupChange, Refusal>;

/// Ends a refused change: nothing it did stays.
async fn refuse(tx: Transaction<'_>, why: Refusal) -> Result<Outcome, DbError> {
    tx.rollback().await?;
    Ok(Err(why))
}

/// Locks the chat and reads the caller's role in it.
async fn lock_group(
    tx: &mut Transaction<'_>,
    chat: ChatId,
    actor: UserId,
) -> Result<Result<MemberRole, Refusal>, DbError> {
    let kind: Option<String> = tx
        .exec_first("SELECT kind FROM chats WHERE id = ? FOR UPDATE", (chat.0,))
        .await?;
    let role: Option<String> = tx
        .exec_first(
            "SELECT role FROM chat_members WHERE chat_id = ? AND user_id = ?",
            (chat.0, actor.0),
        )
        .await?;
    Ok(
        match (kind.as_deref(), role.as_deref().and_then(MemberRole::parse)) {
            (Some("group"), Some(role)) => Ok(role),
            (Some(_), Some(_)) => Err(Refusal::NotAGroup),
            _ => Err(Refusal::NotMember),
        },
    )
}

async fn role_of(
    tx: &mut Transaction<'_>,
    chat: ChatId,
    user: UserId,
) -> Result<Option<MemberRole>, DbError> {
    let role: Option<String> = tx
        .exec_first(
            "SELECT role FROM chat_members WHERE chat_id = ? AND user_id = ?",
            (chat.0, user.0),
        )
        .await?;
    Ok(role.as_deref().and_then(MemberRole::parse))
}

async fn members_of(tx: &mut Transaction<'_>, chat: ChatId) -> Result<Vec<UserId>, DbError> {
    let ids: Vec<u64> = tx
        .exec(
            "SELECT user_id FROM chat_members WHERE chat_id = ? ORDER BY user_id",
            (chat.0,),
        )
        .await?;
    Ok(ids.into_iter().map(UserId).collect())
}

/// Stores one system message from `actor`; its id.
async fn system_message(
    tx: &mut Transaction<'_>,
    chat: ChatId,
    actor: UserId,
    content: serde_json::Value,
) -> Result<u64, DbError> {
    // (sender, client id) is unique: a fresh id per change, never a client's
    // (clients' ids cannot contain '#').
    let client_id = format!("system#{}", uuid::Uuid::new_v4().simple());
    tx.exec_drop(
        "INSERT INTO messages (chat_id, sender_id, client_id, kind, content) VALUES (?, ?, ?, 'system', ?)",
        (chat.0, actor.0, client_id, content.to_string()),
    )
    .await?;
    Ok(tx.last_insert_id().unwrap_or_default())
}

/// Records that `user` left `chat` after message `up_to`.
async fn depart(
    tx: &mut Transaction<'_>,
    chat: ChatId,
    user: UserId,
    up_to: u64,
) -> Result<(), DbError> {
    tx.exec_drop(
        "DELETE FROM chat_members WHERE chat_id = ? AND user_id = ?",
        (chat.0, user.0),
    )
    .await?;
    tx.exec_drop(
        "INSERT INTO chat_departures (chat_id, user_id, left_after) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE left_after = VALUES(left_after), left_at = CURRENT_TIMESTAMP(3)",
        (chat.0, user.0, up_to),
    )
    .await?;
    Ok(())
}

impl Db {
    /// Commits and reads back the stored system messages.
    async fn finish(
        &self,
        tx: Transaction<'_>,
        chat: ChatId,
        ids: Vec<u64>,
        added: Vec<UserId>,
        removed: Vec<UserId>,
        members: Vec<UserId>,
    ) -> Result<Outcome, DbError> {
        tx.commit().await?;
        // Read back on their own: a failure here must not re-run the committed change.
        let mut messages = Vec::with_capacity(ids.len());
        for id in ids {
            let read = self
                .retrying(true, || self.message_by_id(MessageId(id)))
                .await
                .map_err(DbError::after_commit)?;
            if let Some(m) = read {
                messages.push(m);
            }
        }
        Ok(Ok(GroupChange {
            chat,
            messages,
            members,
            added,
            removed,
        }))
    }

    /// Renames the group (owner and admins).
    pub async fn rename_group(
        &self,
        chat: ChatId,
        actor: UserId,
        title: &str,
    ) -> Result<Outcome, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let role = match lock_group(&mut tx, chat, actor).await? {
                Ok(r) => r,
                Err(r) => return refuse(tx, r).await,
            };
            if !role.is_admin() {
                return refuse(
                    tx,
                    Refusal::NotAllowed("only the group's owner and admins can rename it"),
                )
                .await;
            }
            let current: Option<Option<String>> = tx
                .exec_first("SELECT title FROM chats WHERE id = ?", (chat.0,))
                .await?;
            if current.flatten().as_deref() == Some(title) {
                return refuse(tx, Refusal::Unchanged).await;
            }
            tx.exec_drop("UPDATE chats SET title = ? WHERE id = ?", (title, chat.0))
                .await?;
            let id = system_message(
                &mut tx,
                chat,
                actor,
                json!({"action": "renamed", "actorId": actor, "userIds": [], "title": title}),
            )
            .await?;
            let members = members_of(&mut tx, chat).await?;
            self.finish(tx, chat, vec![id], Vec::new(), Vec::new(), members)
                .await
        })
        .await
    }

    /// Adds `users` to the group (owner and admins); those already in it are
    /// skipped. `max`: the most members a group may have.
    pub async fn add_members(
        &self,
        chat: ChatId,
        actor: UserId,
        users: &[UserId],
        max: usize,
    ) -> Result<Outcome, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let role = match lock_group(&mut tx, chat, actor).await? {
                Ok(r) => r,
                Err(r) => return refuse(tx, r).await,
            };
            if !role.is_admin() {
                return refuse(
                    tx,
                    Refusal::NotAllowed("only the group's owner and admins can add members"),
                )
                .await;
            }
            let members = members_of(&mut tx, chat).await?;
            let mut new: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|u| !members.contains(u))
                .collect();
            new.sort_unstable();
            new.dedup();
            if new.is_empty() {
                return refuse(tx, Refusal::Unchanged).await;
            }
            if members.len() + new.len() > max {
                return refuse(tx, Refusal::TooMany).await;
            }
            // `max` bounds `new`, so these lists stay small.
            let (list, params) = super::id_list(new.iter().map(|u| u.0));
            let found: Option<u64> = tx
                .exec_first(
                    format!(
                        "SELECT COUNT(DISTINCT id) FROM users WHERE id IN ({list}) AND deleted_at IS NULL"
                    ),
                    params.clone(),
                )
                .await?;
            if found.unwrap_or(0) as usize != new.len() {
                return refuse(tx, Refusal::UnknownUser).await;
            }
            let mut blocked_params = params;
            blocked_params.insert(0, actor.0.into());
            let blocked: Option<u8> = tx
                .exec_first(
                    format!(
                        "SELECT 1 FROM user_blocks WHERE blocked_id = ? AND blocker_id IN ({list}) LIMIT 1"
                    ),
                    Params::Positional(blocked_params),
                )
                .await?;
            if blocked.is_some() {
                return refuse(tx, Refusal::Blocked).await;
            }
            for chunk in new.chunks(256) {
                let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 2);
                for u in chunk {
                    params.push(chat.0.into());
                    params.push(u.0.into());
                }
                tx.exec_drop(
                    format!(
                        "INSERT INTO chat_members (chat_id, user_id, role) VALUES {}",
                        vec!["(?, ?, 'member')"; chunk.len()].join(",")
                    ),
                    Params::Positional(params),
                )
                .await?;
            }
            // Back in: they read the whole history again, like any member.
            let (list, mut params) = super::id_list(new.iter().map(|u| u.0));
            params.insert(0, chat.0.into());
            tx.exec_drop(
                format!("DELETE FROM chat_departures WHERE chat_id = ? AND user_id IN ({list})"),
                Params::Positional(params),
            )
            .await?;
            let id = system_message(
                &mut tx,
                chat,
                actor,
                json!({"action": "added", "actorId": actor, "userIds": new}),
            )
            .await?;
            let members = members_of(&mut tx, chat).await?;
            self.finish(tx, chat, vec![id], new, Vec::new(), members)
                .await
        })
        .await
    }

    /// `actor` removes `target` from the group; removing oneself is leaving.
    pub async fn remove_member(
        &self,
        chat: ChatId,
        actor: UserId,
        target: UserId,
    ) -> Result<Outcome, DbError> {
        if actor == target {
            return self.leave_chat(chat, actor).await;
        }
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let role = match lock_group(&mut tx, chat, actor).await? {
                Ok(r) => r,
                Err(r) => return refuse(tx, r).await,
            };
            if !role.is_admin() {
                return refuse(
                    tx,
                    Refusal::NotAllowed("only the group's owner and admins can remove members"),
                )
                .await;
            }
            let Some(theirs) = role_of(&mut tx, chat, target).await? else {
                return refuse(tx, Refusal::NoSuchMember).await;
            };
            if role == MemberRole::Admin && theirs != MemberRole::Member {
                return refuse(
                    tx,
                    Refusal::NotAllowed(
                        "an admin can remove members, not the owner or other admins",
                    ),
                )
                .await;
            }
            let id = system_message(
                &mut tx,
                chat,
                actor,
                json!({"action": "removed", "actorId": actor, "userIds": [target]}),
            )
            .await?;
            depart(&mut tx, chat, target, id).await?;
            let members = members_of(&mut tx, chat).await?;
            self.finish(tx, chat, vec![id], Vec::new(), vec![target], members)
                .await
        })
        .await
    }

    /// `user` leaves the group. An owner hands it to the oldest admin, else the
    /// oldest member (a second system message, `role_changed`, says so).
    pub async fn leave_chat(&self, chat: ChatId, user: UserId) -> Result<Outcome, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let role = match lock_group(&mut tx, chat, user).await? {
                Ok(r) => r,
                Err(r) => return refuse(tx, r).await,
            };
            let left = system_message(
                &mut tx,
                chat,
                user,
                json!({"action": "left", "actorId": user, "userIds": [user]}),
            )
            .await?;
            depart(&mut tx, chat, user, left).await?;
            let mut ids = vec![left];
            if role == MemberRole::Owner {
                let heir: Option<u64> = tx
                    .exec_first(
                        "SELECT user_id FROM chat_members WHERE chat_id = ? \
                         ORDER BY role = 'admin' DESC, joined_at, user_id LIMIT 1",
                        (chat.0,),
                    )
                    .await?;
                if let Some(heir) = heir {
                    tx.exec_drop(
                        "UPDATE chat_members SET role = 'owner' WHERE chat_id = ? AND user_id = ?",
                        (chat.0, heir),
                    )
                    .await?;
                    ids.push(
                        system_message(
                            &mut tx,
                            chat,
                            user,
                            json!({"action": "role_changed", "actorId": user, "userIds": [heir], "role": "owner"}),
                        )
                        .await?,
                    );
                }
            }
            let members = members_of(&mut tx, chat).await?;
            self.finish(tx, chat, ids, Vec::new(), vec![user], members)
                .await
        })
        .await
    }

    /// The owner sets `target`'s role to admin or member; `owner` hands the group
    /// over (the previous owner becomes an admin).
    pub async fn set_role(
        &self,
        chat: ChatId,
        actor: UserId,
        target: UserId,
        new: MemberRole,
    ) -> Result<Outcome, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let role = match lock_group(&mut tx, chat, actor).await? {
                Ok(r) => r,
                Err(r) => return refuse(tx, r).await,
            };
            if role != MemberRole::Owner {
                return refuse(
                    tx,
                    Refusal::NotAllowed("only the group's owner can change roles"),
                )
                .await;
            }
            let Some(theirs) = role_of(&mut tx, chat, target).await? else {
                return refuse(tx, Refusal::NoSuchMember).await;
            };
            if target == actor {
                return refuse(
                    tx,
                    Refusal::NotAllowed(
                        "the owner hands the group over by making another member owner",
                    ),
                )
                .await;
            }
            if theirs == new {
                return refuse(tx, Refusal::Unchanged).await;
            }
            tx.exec_drop(
                "UPDATE chat_members SET role = ? WHERE chat_id = ? AND user_id = ?",
                (new.as_str(), chat.0, target.0),
            )
            .await?;
            if new == MemberRole::Owner {
                tx.exec_drop(
                    "UPDATE chat_members SET role = 'admin' WHERE chat_id = ? AND user_id = ?",
                    (chat.0, actor.0),
                )
                .await?;
            }
            let id = system_message(
                &mut tx,
                chat,
                actor,
                json!({"action": "role_changed", "actorId": actor, "userIds": [target], "role": new.as_str()}),
            )
            .await?;
            let members = members_of(&mut tx, chat).await?;
            self.finish(tx, chat, vec![id], Vec::new(), Vec::new(), members)
                .await
        })
        .await
    }

    /// What `user` may read of `chat`'s history.
    pub async fn history_access(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> Result<HistoryAccess, DbError> {
        if self.is_member_of(chat, user).await? {
            return Ok(HistoryAccess::Member);
        }
        let mut conn = self.conn().await?;
        let up_to: Option<u64> = conn
            .exec_first(
                "SELECT left_after FROM chat_departures WHERE chat_id = ? AND user_id = ?",
                (chat.0, user.0),
            )
            .await?;
        Ok(
            up_to.map_or(HistoryAccess::None, |id| HistoryAccess::Former {
                up_to: MessageId(id),
            }),
        )
    }
}
