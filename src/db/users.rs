//! The `users` table.

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use parley_actors::{Timestamp, UserId};

use super::{Db, DbError};
use crate::domain::{Email, Login, Username};

/// A user as the API shows one (the `user` object of PROTOCOL.md, less `online`).
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: UserId,
    pub identity: Identity,
    pub last_seen_at: Option<Timestamp>,
    pub has_public_key: bool,
}

/// Who a user is, or that they deleted their account: a deleted account keeps only
/// its id (its messages stay in other people's chats), so there is no name to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Active { email: String, username: String },
    Deleted,
}

impl Identity {
    /// From the `users` columns. Only account deletion writes NULL into them, and it
    /// clears both in one statement, so a missing one means deleted.
    pub fn from_columns(email: Option<String>, username: Option<String>) -> Identity {
        match (email, username) {
            (Some(email), Some(username)) => Identity::Active { email, username },
            _ => Identity::Deleted,
        }
    }

    pub fn is_deleted(&self) -> bool {
        matches!(self, Identity::Deleted)
    }
}

pub(super) const USER_COLUMNS: &str =
    "u.id, u.email, u.username, u.last_seen_at, (k.user_id IS NOT NULL)";

pub(super) type UserTuple = (
    u64,
    Option<String>,
    Option<String>,
    Option<NaiveDateTime>,
    bool,
);

pub(super) fn user_from(row: UserTuple) -> UserRow {
    let (id, email, username, last_seen_at, has_public_key) = row;
    UserRow {
        id: UserId(id),
        identity: Identity::from_columns(email, username),
        last_seen_at: last_seen_at.map(Timestamp::from),
        has_public_key,
    }
}

/// What login (and confirming a password) needs: the id, the stored PHC hash string
/// (`None`: the account has no password yet, e.g. made by `parley admin user create`
/// and not yet set through its reset link) and whether it is disabled.
pub struct Credentials {
    pub id: UserId,
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// Which unique field a new account collided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakenField {
    Email,
    Username,
}

pub enum InsertOutcome {
    Created(UserId),
    Taken(TakenField),
}

impl Db {
    pub async fn insert_user(
        &self,
        email: &Email,
        username: &Username,
        password_hash: Option<&str>,
    ) -> Result<InsertOutcome, DbError> {
        let mut conn = self.conn().await?;
        insert_user_on(&mut *conn, email, username, password_hash).await
    }

    /// The account `login` names. The comparison is the column's collation
    /// (`utf8mb4_unicode_ci`: case- and accent-insensitive), the same rule the unique
    /// keys apply at registration, so login and registration agree on who is who, and
    /// accounts stored before identifiers were NFKC-folded still match their folded
    /// spelling.
    pub async fn credentials_by_login(
        &self,
        login: &Login,
    ) -> Result<Option<Credentials>, DbError> {
        let sql = match login {
            Login::Email(_) => {
                "SELECT id, password_hash, disabled_at IS NOT NULL FROM users \
                 WHERE email = ? AND deleted_at IS NULL LIMIT 1"
            }
            Login::Username(_) => {
                "SELECT id, password_hash, disabled_at IS NOT NULL FROM users \
                 WHERE username = ? AND deleted_at IS NULL LIMIT 1"
            }
        };
        let mut conn = self.conn().await?;
        let row: Option<(u64, Option<String>, bool)> =
            conn.exec_first(sql, (login.as_str(),)).await?;
        Ok(row.map(|(id, password_hash, disabled)| Credentials {
            id: UserId(id),
            password_hash,
            disabled,
        }))
    }

    /// The credentials of account `id` (None: no such account, or deleted).
    pub async fn credentials_by_id(&self, id: UserId) -> Result<Option<Credentials>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<(Option<String>, bool)> = conn
            .exec_first(
                "SELECT password_hash, disabled_at IS NOT NULL FROM users \
                 WHERE id = ? AND deleted_at IS NULL",
                (id.0,),
            )
            .await?;
        Ok(row.map(|(password_hash, disabled)| Credentials {
            id,
            password_hash,
            disabled,
        }))
    }

    pub async fn update_password_hash(&self, id: UserId, hash: &str) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE users SET password_hash = ? WHERE id = ?",
            (hash, id.0),
        )
        .await?;
        Ok(())
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserRow>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<UserTuple> = conn
            .exec_first(
                format!(
                    "SELECT {USER_COLUMNS} FROM users u \
                     LEFT JOIN public_keys k ON k.user_id = u.id WHERE u.id = ?"
                ),
                (id.0,),
            )
            .await?;
        Ok(row.map(user_from))
    }

    /// Users whose username contains `needle` (case-folded, matched literally: `%`,
    /// `_` and `\` are escaped), the caller excluded, prefix matches first. Emails are
    /// never matched by substring: a few hundred such queries would spell out anyone's
    /// address (see `user_by_email`).
    pub async fn search_usernames(
        &self,
        needle: &str,
        exclude: UserId,
        limit: u32,
    ) -> Result<Vec<UserRow>, DbError> {
        let escaped = escape_like(needle);
        let contains = format!("%{escaped}%");
        let prefix = format!("{escaped}%");
        let mut conn = self.conn().await?;
        let rows: Vec<UserTuple> = conn
            .exec(
                format!(
                    "SELECT {USER_COLUMNS} FROM users u \
                     LEFT JOIN public_keys k ON k.user_id = u.id \
                     WHERE u.id <> ? AND u.deleted_at IS NULL AND u.username LIKE ? ESCAPE '\\\\' \
                     ORDER BY (u.username LIKE ? ESCAPE '\\\\') DESC, u.username \
                     LIMIT ?"
                ),
                (exclude.0, &contains, &prefix, limit),
            )
            .await?;
        Ok(rows.into_iter().map(user_from).collect())
    }

    /// The user whose whole address is `email` (the column's collation: case- and
    /// accent-insensitive), unless it is `exclude`.
    pub async fn user_by_email(
        &self,
        email: &Email,
        exclude: UserId,
    ) -> Result<Option<UserRow>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<UserTuple> = conn
            .exec_first(
                format!(
                    "SELECT {USER_COLUMNS} FROM users u \
                     LEFT JOIN public_keys k ON k.user_id = u.id \
                     WHERE u.email = ? AND u.id <> ? AND u.deleted_at IS NULL LIMIT 1"
                ),
                (email.as_str(), exclude.0),
            )
            .await?;
        Ok(row.map(user_from))
    }

    pub async fn set_last_seen(&self, id: UserId, at: Timestamp) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE users SET last_seen_at = ? WHERE id = ?",
            (at.naive(), id.0),
        )
        .await?;
        Ok(())
    }
}

/// Inserts a user on `q` (a connection, or the transaction that also consumes an
/// invite); a taken email or username is an outcome, not an error.
pub(crate) async fn insert_user_on(
    q: &mut impl Queryable,
    email: &Email,
    username: &Username,
    password_hash: Option<&str>,
) -> Result<InsertOutcome, DbError> {
    let res = async {
        let result = q
            .exec_iter(
                "INSERT INTO users (email, username, password_hash) VALUES (?, ?, ?)",
                (email.as_str(), username.as_str(), password_hash),
            )
            .await?;
        let id = result.last_insert_id().unwrap_or_default();
        result.drop_result().await?;
        Ok::<_, mysql_async::Error>(id)
    }
    .await;
    match res.map_err(DbError::from) {
        Ok(id) => Ok(InsertOutcome::Created(UserId(id))),
        Err(DbError::Duplicate { key }) if key == "uq_users_email" => {
            Ok(InsertOutcome::Taken(TakenField::Email))
        }
        Err(DbError::Duplicate { key }) if key == "uq_users_username" => {
            Ok(InsertOutcome::Taken(TakenField::Username))
        }
        Err(e) => Err(e),
    }
}

/// Makes `s` match itself literally inside a LIKE pattern with `ESCAPE '\'`.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(super::escape_like("a%b_c\\d"), "a\\%b\\_c\\\\d");
        assert_eq!(super::escape_like("plain"), "plain");
    }
}
