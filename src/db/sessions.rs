//! The `auth_sessions` table: one row per sign-in (see migration V0011). The token's
//! `sid` names a row; a row with `revoked_at` set no longer signs anything in.

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use parley_actors::{Timestamp, UserId};

use super::{Db, DbError};

/// The id of a sign-in session (`sid` in a token); defined beside the other ids, since
/// the realtime sessions know which sign-in they belong to.
pub use parley_actors::AuthSessionId;

/// One session as `GET /api/sessions` lists it.
#[derive(Debug, Clone)]
pub struct AuthSessionRow {
    pub id: AuthSessionId,
    pub device: String,
    pub source: Option<String>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// What a node needs to admit a token naming a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSessionState {
    pub user: UserId,
    pub revoked: bool,
}

impl Db {
    /// Records a new sign-in of `user`; its id goes into the token.
    pub async fn create_auth_session(
        &self,
        user: UserId,
        device: &str,
        source: Option<&str>,
    ) -> Result<AuthSessionId, DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO auth_sessions (user_id, device, source) VALUES (?, ?, ?)",
            (user.0, device, source),
        )
        .await?;
        Ok(AuthSessionId(conn.last_insert_id().unwrap_or_default()))
    }

    /// Records a new sign-in of `user` and revokes the oldest of their live sessions
    /// past `max` (so one account cannot grow the table, or a node's cache, without
    /// bound): the new id, and the ids it revoked.
    pub async fn create_auth_session_capped(
        &self,
        user: UserId,
        device: &str,
        source: Option<&str>,
        max: usize,
    ) -> Result<(AuthSessionId, Vec<AuthSessionId>), DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn
                .start_transaction(mysql_async::TxOpts::default())
                .await?;
            // One sign-in of an account at a time: without this, two at once each insert
            // their row and then wait for the other's to lock the live rows (deadlock
            // 1213, seen in a storm of concurrent logins of one account).
            tx.exec_drop("SELECT id FROM users WHERE id = ? FOR UPDATE", (user.0,))
                .await?;
            tx.exec_drop(
                "INSERT INTO auth_sessions (user_id, device, source) VALUES (?, ?, ?)",
                (user.0, device, source),
            )
            .await?;
            let id = AuthSessionId(tx.last_insert_id().unwrap_or_default());
            // Locks the user's live rows to trim them past the cap.
            let beyond: Vec<u64> = tx
                .exec(
                    "SELECT id FROM auth_sessions WHERE user_id = ? AND revoked_at IS NULL \
                 ORDER BY id DESC LIMIT 18446744073709551615 OFFSET ? FOR UPDATE",
                    (user.0, max as u64),
                )
                .await?;
            for chunk in beyond.chunks(super::MAX_ID_LIST) {
                let marks = vec!["?"; chunk.len()].join(",");
                tx.exec_drop(
                    format!(
                        "UPDATE auth_sessions SET revoked_at = NOW(3) \
                     WHERE id IN ({marks}) AND revoked_at IS NULL"
                    ),
                    chunk.to_vec(),
                )
                .await?;
                // A revoked session's browsers get no more pushes (V0014).
                tx.exec_drop(
                    format!("DELETE FROM push_subscriptions WHERE auth_session_id IN ({marks})"),
                    chunk.to_vec(),
                )
                .await?;
            }
            tx.commit().await?;
            Ok((id, beyond.into_iter().map(AuthSessionId).collect()))
        })
        .await
    }

    /// Deletes rows that can sign nothing in any more: revoked longer ago than
    /// `revoked_for`, or not seen for `unseen_for` (longer than a token lives). At
    /// most a few thousand a call, so it never holds locks for long.
    pub async fn purge_auth_sessions(
        &self,
        revoked_for: std::time::Duration,
        unseen_for: std::time::Duration,
    ) -> Result<u64, DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM auth_sessions \
             WHERE revoked_at < NOW(3) - INTERVAL ? SECOND \
                OR last_seen_at < NOW(3) - INTERVAL ? SECOND \
             LIMIT 5000",
            (revoked_for.as_secs(), unseen_for.as_secs()),
        )
        .await?;
        Ok(conn.affected_rows())
    }

    /// Whose session `id` is and whether it is revoked (None: no such session).
    pub async fn auth_session_state(
        &self,
        id: AuthSessionId,
    ) -> Result<Option<AuthSessionState>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<(u64, bool)> = conn
            .exec_first(
                "SELECT user_id, revoked_at IS NOT NULL FROM auth_sessions WHERE id = ?",
                (id.0,),
            )
            .await?;
        Ok(row.map(|(user, revoked)| AuthSessionState {
            user: UserId(user),
            revoked,
        }))
    }

    /// `user`'s live sessions, newest first.
    pub async fn live_auth_sessions(&self, user: UserId) -> Result<Vec<AuthSessionRow>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, String, Option<String>, NaiveDateTime, NaiveDateTime)> = conn
            .exec(
                "SELECT id, device, source, created_at, last_seen_at FROM auth_sessions \
                 WHERE user_id = ? AND revoked_at IS NULL ORDER BY id DESC",
                (user.0,),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, device, source, created_at, last_seen_at)| AuthSessionRow {
                    id: AuthSessionId(id),
                    device,
                    source,
                    created_at: Timestamp::from(created_at),
                    last_seen_at: Timestamp::from(last_seen_at),
                },
            )
            .collect())
    }

    /// Revokes `user`'s session `id`; false when it is not theirs or already revoked.
    pub async fn revoke_auth_session(
        &self,
        user: UserId,
        id: AuthSessionId,
    ) -> Result<bool, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn
                .start_transaction(mysql_async::TxOpts::default())
                .await?;
            tx.exec_drop(
                "UPDATE auth_sessions SET revoked_at = NOW(3) \
             WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                (id.0, user.0),
            )
            .await?;
            let revoked = tx.affected_rows() == 1;
            if revoked {
                // Its browsers get no more pushes (V0014).
                tx.exec_drop(
                    "DELETE FROM push_subscriptions WHERE auth_session_id = ?",
                    (id.0,),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(revoked)
        })
        .await
    }

    /// Revokes every live session of `user` except `keep`; the ids it revoked.
    pub async fn revoke_auth_sessions(
        &self,
        user: UserId,
        keep: Option<AuthSessionId>,
    ) -> Result<Vec<AuthSessionId>, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn
                .start_transaction(mysql_async::TxOpts::default())
                .await?;
            let keep = keep.map(|k| k.0).unwrap_or(0);
            let ids: Vec<u64> = tx
                .exec(
                    "SELECT id FROM auth_sessions \
                 WHERE user_id = ? AND revoked_at IS NULL AND id <> ? FOR UPDATE",
                    (user.0, keep),
                )
                .await?;
            tx.exec_drop(
                "UPDATE auth_sessions SET revoked_at = NOW(3) \
             WHERE user_id = ? AND revoked_at IS NULL AND id <> ?",
                (user.0, keep),
            )
            .await?;
            // Their browsers get no more pushes (V0014); the kept session's still do.
            tx.exec_drop(
                "DELETE FROM push_subscriptions WHERE user_id = ? AND auth_session_id <> ?",
                (user.0, keep),
            )
            .await?;
            tx.commit().await?;
            Ok(ids.into_iter().map(AuthSessionId).collect())
        })
        .await
    }

    /// Sessions revoked at or after `since` (the database's clock), with their users:
    /// the revocation log each node polls.
    pub async fn auth_sessions_revoked_since(
        &self,
        since: NaiveDateTime,
    ) -> Result<Vec<(AuthSessionId, UserId)>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(u64, u64)> = conn
            .exec(
                "SELECT id, user_id FROM auth_sessions WHERE revoked_at >= ?",
                (since,),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(s, u)| (AuthSessionId(s), UserId(u)))
            .collect())
    }

    /// The database's clock now (the revocation log is read against it, so the
    /// nodes' own clocks never matter).
    pub async fn database_now(&self) -> Result<NaiveDateTime, DbError> {
        let mut conn = self.conn().await?;
        let now: Option<NaiveDateTime> = conn.query_first("SELECT NOW(3)").await?;
        now.ok_or_else(|| DbError::Mapping("NOW(3) returned no row".into()))
    }

    /// Marks `ids` as seen now (batched by the caller; never once per request).
    pub async fn touch_auth_sessions(&self, ids: &[AuthSessionId]) -> Result<(), DbError> {
        for chunk in ids.chunks(super::MAX_ID_LIST) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut conn = self.conn().await?;
            conn.exec_drop(
                format!(
                    "UPDATE auth_sessions SET last_seen_at = NOW(3) \
                     WHERE id IN ({marks}) AND revoked_at IS NULL"
                ),
                chunk.iter().map(|i| i.0).collect::<Vec<_>>(),
            )
            .await?;
        }
        Ok(())
    }
}
