//! Accounts as an administrator and their owner see them: the user list, disabling,
//! one-time password resets (table `password_resets`, V0012), deleting an account
//! and exporting what a user sent.

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use parley_actors::{ChatId, MediaId, Timestamp, UserId};

use super::media::StaleMedia;
use super::sessions::AuthSessionId;
use super::users::Identity;
use super::{Db, DbError};
use crate::domain::token::TokenHash;
use crate::media::MediaKind;

/// One account as `parley admin user list|show` prints it.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: UserId,
    pub identity: Identity,
    pub created_at: Timestamp,
    pub last_seen_at: Option<Timestamp>,
    pub disabled_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    /// False for an account made by the admin CLI whose reset link was not used yet.
    pub has_password: bool,
}

const ACCOUNT_COLUMNS: &str = "id, email, username, created_at, last_seen_at, disabled_at, \
                               deleted_at, password_hash IS NOT NULL";

type AccountTuple = (
    u64,
    Option<String>,
    Option<String>,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    bool,
);

fn account_from(t: AccountTuple) -> AccountRow {
    let (id, email, username, created, seen, disabled, deleted, has_password) = t;
    AccountRow {
        id: UserId(id),
        identity: if deleted.is_some() {
            Identity::Deleted
        } else {
            Identity::from_columns(email, username)
        },
        created_at: Timestamp::from(created),
        last_seen_at: seen.map(Timestamp::from),
        disabled_at: disabled.map(Timestamp::from),
        deleted_at: deleted.map(Timestamp::from),
        has_password,
    }
}

/// How an administrator names an account on the command line.
#[derive(Debug, Clone)]
pub enum AccountKey {
    Id(UserId),
    /// An email address or a username (the columns' collation decides matches, as
    /// at login).
    Name(String),
}

/// What deleting an account left for the caller to finish outside the database.
pub struct DeletedAccount {
    /// Uploads whose rows are gone: their files (and thumbnails) are to be removed.
    pub uploads: Vec<StaleMedia>,
    /// Groups the account was still in: to be left (through `leave_group`).
    pub groups: Vec<ChatId>,
    /// The sessions this revoked (for this node's cache and sockets at once; other
    /// nodes read the revocation log).
    pub revoked_sessions: Vec<AuthSessionId>,
}

/// Numbers for `parley admin stats`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub users: u64,
    pub disabled: u64,
    pub deleted: u64,
    pub seen_last_day: u64,
    pub direct_chats: u64,
    pub groups: u64,
    pub messages: u64,
    pub uploads: u64,
    pub upload_bytes: u64,
    pub live_sessions: u64,
    pub usable_invites: u64,
}

/// One chat as the export writes it.
#[derive(Debug, Clone)]
pub struct ExportChat {
    pub id: ChatId,
    /// `direct` or `group`.
    pub kind: String,
    pub title: Option<String>,
    pub created_at: Timestamp,
    pub members: Vec<(UserId, Identity)>,
}

/// One message the user sent, as the export writes it.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub id: u64,
    pub chat_id: ChatId,
    pub kind: String,
    pub content: String,
    pub encrypted: bool,
    pub e2ee: Option<String>,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted: bool,
}

impl Db {
    /// Accounts with ids above `after`, in id order, at most `limit` (a page).
    pub async fn accounts_after(
        &self,
        after: UserId,
        limit: u32,
    ) -> Result<Vec<AccountRow>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<AccountTuple> = conn
            .exec(
                format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id > ? ORDER BY id LIMIT ?"),
                (after.0, limit),
            )
            .await?;
        Ok(rows.into_iter().map(account_from).collect())
    }

    /// The account `key` names, if any.
    pub async fn account(&self, key: &AccountKey) -> Result<Option<AccountRow>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<AccountTuple> = match key {
            AccountKey::Id(id) => {
                conn.exec_first(
                    format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = ?"),
                    (id.0,),
                )
                .await?
            }
            AccountKey::Name(name) => {
                conn.exec_first(
                    format!(
                        "SELECT {ACCOUNT_COLUMNS} FROM users WHERE email = ? OR username = ? \
                         ORDER BY id LIMIT 1"
                    ),
                    (name, name),
                )
                .await?
            }
        };
        Ok(row.map(account_from))
    }

    /// Disables (or enables again) account `id`; false when it does not exist or is
    /// deleted. Disabling does not revoke sessions: the caller does, once this
    /// answered (a login racing it then fails at the disabled check).
    pub async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        let sql = if disabled {
            "UPDATE users SET disabled_at = COALESCE(disabled_at, UTC_TIMESTAMP(3)) \
             WHERE id = ? AND deleted_at IS NULL"
        } else {
            "UPDATE users SET disabled_at = NULL WHERE id = ? AND deleted_at IS NULL"
        };
        conn.exec_drop(sql, (id.0,)).await?;
        // affected_rows counts changed rows only: ask whether the account is there.
        let there: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL",
                (id.0,),
            )
            .await?;
        Ok(there.is_some())
    }

    /// Stores a password reset for `user`, valid `valid_secs` from now.
    pub async fn create_password_reset(
        &self,
        user: UserId,
        token: &TokenHash,
        valid_secs: u64,
    ) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO password_resets (token_hash, user_id, expires_at) \
             VALUES (?, ?, UTC_TIMESTAMP(3) + INTERVAL ? SECOND)",
            (token.as_bytes(), user.0, valid_secs),
        )
        .await?;
        Ok(())
    }

    /// Whether `token` is an unused, unexpired reset of an account that still
    /// exists: asked before the new password is hashed, so a made-up token costs a
    /// read, not a hash.
    pub async fn password_reset_usable(&self, token: &TokenHash) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        let hit: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM password_resets r JOIN users u ON u.id = r.user_id \
                 WHERE r.token_hash = ? AND r.used_at IS NULL \
                 AND r.expires_at > UTC_TIMESTAMP(3) AND u.deleted_at IS NULL",
                (token.as_bytes(),),
            )
            .await?;
        Ok(hit.is_some())
    }

    /// Spends the reset `token` and sets the account's password, in one transaction
    /// (the row is locked: of two concurrent uses, one wins). Every other reset of
    /// the account is spent with it, so an older link cannot undo this one. None
    /// when the token is unknown, used or expired.
    pub async fn redeem_password_reset(
        &self,
        token: &TokenHash,
        password_hash: &str,
    ) -> Result<Option<UserId>, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let user: Option<u64> = tx
                .exec_first(
                    "SELECT r.user_id FROM password_resets r JOIN users u ON u.id = r.user_id \
                 WHERE r.token_hash = ? AND r.used_at IS NULL \
                 AND r.expires_at > UTC_TIMESTAMP(3) AND u.deleted_at IS NULL FOR UPDATE",
                    (token.as_bytes(),),
                )
                .await?;
            let Some(user) = user else {
                tx.rollback().await?;
                return Ok(None);
            };
            tx.exec_drop(
                "UPDATE password_resets SET used_at = UTC_TIMESTAMP(3) \
             WHERE user_id = ? AND used_at IS NULL",
                (user,),
            )
            .await?;
            tx.exec_drop(
                "UPDATE users SET password_hash = ? WHERE id = ?",
                (password_hash, user),
            )
            .await?;
            tx.commit().await?;
            Ok(Some(UserId(user)))
        })
        .await
    }

    /// Erases account `id` in one transaction: email, username and password hash
    /// become NULL (freeing the name and address), `deleted_at` is set, its public
    /// key, uploads (rows; the quota row), upload reservations and password resets
    /// are deleted. Its messages and direct chats stay. Returns what the caller must
    /// still do (files to remove, groups to leave), or None when there is no such
    /// account or it is deleted already.
    pub async fn delete_account(&self, id: UserId) -> Result<Option<DeletedAccount>, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let live: Option<u8> = tx
                .exec_first(
                    "SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL FOR UPDATE",
                    (id.0,),
                )
                .await?;
            if live.is_none() {
                tx.rollback().await?;
                return Ok(None);
            }
            let sessions: Vec<u64> = tx
            .exec(
                "SELECT id FROM auth_sessions WHERE user_id = ? AND revoked_at IS NULL FOR UPDATE",
                (id.0,),
            )
            .await?;
            let uploads: Vec<(u64, String, String, Option<String>)> = tx
                .exec(
                    "SELECT id, kind, storage_name, thumb_name FROM media_files \
                 WHERE uploader_id = ? FOR UPDATE",
                    (id.0,),
                )
                .await?;
            let uploads = uploads
                .into_iter()
                .map(|(media, kind, storage_name, thumb_name)| {
                    Ok(StaleMedia {
                        id: MediaId(media),
                        kind: MediaKind::parse(&kind).ok_or_else(|| {
                            DbError::Mapping(format!("unknown media kind {kind:?}"))
                        })?,
                        storage_name,
                        thumb_name,
                    })
                })
                .collect::<Result<Vec<_>, DbError>>()?;
            for sql in [
            // Messages that carried these uploads stay; their media is gone (the
            // LEFT JOIN of every message query finds nothing: `media: null`).
            "DELETE FROM media_files WHERE uploader_id = ?",
            "DELETE FROM user_storage WHERE user_id = ?",
            "DELETE FROM upload_reservations WHERE user_id = ?",
            "DELETE FROM public_keys WHERE user_id = ?",
            "DELETE FROM password_resets WHERE user_id = ?",
            "DELETE FROM push_subscriptions WHERE user_id = ?",
            // Whom it blocked is its own business, gone with it; whoever blocked it
            // has nothing left to block.
            "DELETE FROM user_blocks WHERE blocker_id = ?",
            "DELETE FROM user_blocks WHERE blocked_id = ?",
            // The same revocation `revoke_auth_sessions` makes (every node reads it
            // from the revocation log), here so that no session outlives the account
            // even if the process stops right after the commit.
            "UPDATE auth_sessions SET revoked_at = NOW(3) WHERE user_id = ? AND revoked_at IS NULL",
            "UPDATE users SET email = NULL, username = NULL, password_hash = NULL, \
             deleted_at = UTC_TIMESTAMP(3) WHERE id = ?",
        ] {
            tx.exec_drop(sql, (id.0,)).await?;
        }
            let groups: Vec<u64> = tx
                .exec(
                    "SELECT c.id FROM chats c JOIN chat_members cm ON cm.chat_id = c.id \
                 WHERE cm.user_id = ? AND c.kind = 'group'",
                    (id.0,),
                )
                .await?;
            tx.commit().await?;
            Ok(Some(DeletedAccount {
                uploads,
                groups: groups.into_iter().map(ChatId).collect(),
                revoked_sessions: sessions.into_iter().map(AuthSessionId).collect(),
            }))
        })
        .await
    }

    /// Up to `limit` messages `user` sent whose client ids come after `after`, in
    /// client-id order: the export pages through them on `uq_messages_sender_client`
    /// (no index of its own on the hot table: see V0012), so its memory is one page
    /// whatever the user sent. Also returns the last client id, the next cursor.
    pub async fn sent_messages_after(
        &self,
        user: UserId,
        after: &str,
        limit: u32,
    ) -> Result<(Vec<SentMessage>, Option<String>), DbError> {
        let mut conn = self.conn().await?;
        type Row = (
            u64,
            u64,
            String,
            String,
            String,
            bool,
            Option<String>,
            NaiveDateTime,
            Option<NaiveDateTime>,
            Option<NaiveDateTime>,
        );
        let rows: Vec<Row> = conn
            .exec(
                "SELECT id, chat_id, client_id, kind, content, encrypted, e2ee, created_at, \
                 edited_at, deleted_at FROM messages WHERE sender_id = ? AND client_id > ? \
                 ORDER BY client_id LIMIT ?",
                (user.0, after, limit),
            )
            .await?;
        let cursor = rows.last().map(|r| r.2.clone());
        let messages = rows
            .into_iter()
            .map(
                |(id, chat, _client, kind, content, encrypted, e2ee, created, edited, deleted)| {
                    let deleted = deleted.is_some();
                    SentMessage {
                        id,
                        chat_id: ChatId(chat),
                        kind,
                        // A message deleted for everyone is exported as deleted, without
                        // what it said.
                        content: if deleted { String::new() } else { content },
                        encrypted,
                        e2ee: if deleted { None } else { e2ee },
                        created_at: Timestamp::from(created),
                        edited_at: edited.map(Timestamp::from),
                        deleted,
                    }
                },
            )
            .collect();
        Ok((messages, cursor))
    }

    /// Up to `limit` of `user`'s chats with ids above `after`, in id order, with
    /// their members: a page of the export (two queries, whatever the page holds).
    pub async fn export_chats_after(
        &self,
        user: UserId,
        after: ChatId,
        limit: u32,
    ) -> Result<Vec<ExportChat>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, String, Option<String>, NaiveDateTime)> = conn
            .exec(
                "SELECT c.id, c.kind, c.title, c.created_at FROM chat_members cm \
                 JOIN chats c ON c.id = cm.chat_id \
                 WHERE cm.user_id = ? AND cm.chat_id > ? ORDER BY cm.chat_id LIMIT ?",
                (user.0, after.0, limit.min(super::MAX_ID_LIST as u32)),
            )
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (list, params) = super::id_list(rows.iter().map(|r| r.0));
        let members: Vec<(u64, u64, Option<String>, Option<String>)> = conn
            .exec(
                format!(
                    "SELECT cm.chat_id, u.id, u.email, u.username FROM chat_members cm \
                     JOIN users u ON u.id = cm.user_id WHERE cm.chat_id IN ({list}) \
                     ORDER BY cm.chat_id, u.id"
                ),
                params,
            )
            .await?;
        let mut chats: Vec<ExportChat> = rows
            .into_iter()
            .map(|(id, kind, title, created)| ExportChat {
                id: ChatId(id),
                kind,
                title,
                created_at: Timestamp::from(created),
                members: Vec::new(),
            })
            .collect();
        for (chat, id, email, username) in members {
            if let Some(c) = chats.iter_mut().find(|c| c.id.0 == chat) {
                c.members
                    .push((UserId(id), Identity::from_columns(email, username)));
            }
        }
        Ok(chats)
    }

    /// The numbers `parley admin stats` prints.
    pub async fn stats(&self) -> Result<Stats, DbError> {
        let mut conn = self.conn().await?;
        let users: Option<(u64, u64, u64, u64)> = conn
            .query_first(
                "SELECT COUNT(*), COALESCE(SUM(disabled_at IS NOT NULL AND deleted_at IS NULL), 0), \
                 COALESCE(SUM(deleted_at IS NOT NULL), 0), \
                 COALESCE(SUM(last_seen_at > UTC_TIMESTAMP(3) - INTERVAL 1 DAY), 0) FROM users",
            )
            .await?;
        let chats: Option<(u64, u64)> = conn
            .query_first(
                "SELECT COALESCE(SUM(kind = 'direct'), 0), COALESCE(SUM(kind = 'group'), 0) FROM chats",
            )
            .await?;
        let messages: Option<u64> = conn.query_first("SELECT COUNT(*) FROM messages").await?;
        let uploads: Option<(u64, u64)> = conn
            .query_first(
                "SELECT COUNT(*), CAST(COALESCE(SUM(bytes + COALESCE(thumb_bytes, 0)), 0) AS UNSIGNED) \
                 FROM media_files",
            )
            .await?;
        let sessions: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NULL")
            .await?;
        drop(conn);
        let (users, disabled, deleted, seen_last_day) = users.unwrap_or_default();
        let (direct_chats, groups) = chats.unwrap_or_default();
        let (uploads, upload_bytes) = uploads.unwrap_or_default();
        Ok(Stats {
            users: users - deleted,
            disabled,
            deleted,
            seen_last_day,
            direct_chats,
            groups,
            messages: messages.unwrap_or(0),
            uploads,
            upload_bytes,
            live_sessions: sessions.unwrap_or(0),
            usable_invites: self.usable_invites().await?,
        })
    }
}
