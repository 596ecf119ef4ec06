//! The `push_subscriptions` table (V0014): which browsers to push to for whom. The
//! engine reads it in one query per batch of offers; rows go when their session is
//! revoked (src/db/sessions.rs, in the revoking transaction), when the push service
//! says the subscription is gone (404/410), or when the user unsubscribes.

use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use parley_actors::{ChatId, UserId};

use super::sessions::AuthSessionId;
use super::{id_list, Db, DbError, MAX_ID_LIST};

/// One subscription as the engine sends to it.
#[derive(Clone)]
pub struct PushTarget {
    pub id: u64,
    pub user: UserId,
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

// The keys are secrets of the browser: never in a log line.
impl std::fmt::Debug for PushTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushTarget")
            .field("id", &self.id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// id, user_id, endpoint, p256dh, auth.
type TargetRow = (u64, u64, String, Vec<u8>, Vec<u8>);

/// What a subscribe came to.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// Stored; how many of the user's oldest were replaced to stay within the cap.
    Stored { replaced: usize },
    /// The session was revoked meanwhile.
    SessionRevoked,
}

/// The chat as a notification names it.
#[derive(Debug, Clone)]
pub struct PushChat {
    pub group: bool,
    pub title: Option<String>,
    /// The sender's (or caller's) username; None for a deleted account.
    pub sender: Option<String>,
}

impl Db {
    /// Stores `user`'s subscription made by `session`. The same endpoint is updated
    /// (and moved to this session, or taken from another account: a browser's
    /// endpoint belongs to whoever subscribed last on it); past `max` the user's
    /// oldest subscriptions are replaced.
    pub async fn upsert_push_subscription(
        &self,
        user: UserId,
        session: AuthSessionId,
        endpoint: &str,
        p256dh: &[u8],
        auth: &[u8],
        max: usize,
    ) -> Result<SubscribeOutcome, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            // The same lock order as a sign-in (user, then sessions): one subscribe of an
            // account at a time, so two cannot both pass the cap; and a revocation of
            // this session waits for us (or we see it), so no row outlives its session.
            tx.exec_drop("SELECT id FROM users WHERE id = ? FOR UPDATE", (user.0,))
                .await?;
            let live: Option<u8> = tx
                .exec_first(
                    "SELECT 1 FROM auth_sessions WHERE id = ? AND user_id = ? \
                 AND revoked_at IS NULL FOR UPDATE",
                    (session.0, user.0),
                )
                .await?;
            if live.is_none() {
                tx.rollback().await?;
                return Ok(SubscribeOutcome::SessionRevoked);
            }
            tx.exec_drop(
            "INSERT INTO push_subscriptions (user_id, auth_session_id, endpoint, p256dh, auth) \
             VALUES (?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), \
               auth_session_id = VALUES(auth_session_id), p256dh = VALUES(p256dh), \
               auth = VALUES(auth), created_at = NOW(3), failures = 0",
            (user.0, session.0, endpoint, p256dh, auth),
        )
        .await?;
            let beyond: Vec<u64> = tx
                .exec(
                    "SELECT id FROM push_subscriptions WHERE user_id = ? \
                 ORDER BY created_at DESC, id DESC LIMIT 18446744073709551615 OFFSET ?",
                    (user.0, max as u64),
                )
                .await?;
            for chunk in beyond.chunks(MAX_ID_LIST) {
                let (marks, params) = id_list(chunk.iter().copied());
                tx.exec_drop(
                    format!("DELETE FROM push_subscriptions WHERE id IN ({marks})"),
                    params,
                )
                .await?;
            }
            tx.commit().await?;
            Ok(SubscribeOutcome::Stored {
                replaced: beyond.len(),
            })
        })
        .await
    }

    /// Deletes `user`'s subscription with this endpoint; false when they have none.
    pub async fn delete_push_subscription(
        &self,
        user: UserId,
        endpoint: &str,
    ) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM push_subscriptions WHERE endpoint = ? AND user_id = ?",
            (endpoint, user.0),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// The subscriptions of `users` (at most `MAX_ID_LIST` of them), one query.
    pub async fn push_targets(&self, users: &[UserId]) -> Result<Vec<PushTarget>, DbError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut conn = self.conn().await?;
        for chunk in users.chunks(MAX_ID_LIST) {
            let (marks, params) = id_list(chunk.iter().map(|u| u.0));
            let rows: Vec<TargetRow> = conn
                .exec(
                    format!(
                        "SELECT id, user_id, endpoint, p256dh, auth FROM push_subscriptions \
                         WHERE user_id IN ({marks})"
                    ),
                    params,
                )
                .await?;
            out.extend(
                rows.into_iter()
                    .map(|(id, user, endpoint, p256dh, auth)| PushTarget {
                        id,
                        user: UserId(user),
                        endpoint,
                        p256dh,
                        auth,
                    }),
            );
        }
        Ok(out)
    }

    /// The chat's kind and title and the sender's name, for a notification's title.
    pub async fn push_chat(&self, chat: ChatId, sender: UserId) -> Result<PushChat, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<(String, Option<String>, Option<String>)> = conn
            .exec_first(
                "SELECT c.kind, c.title, (SELECT username FROM users WHERE id = ?) \
                 FROM chats c WHERE c.id = ?",
                (sender.0, chat.0),
            )
            .await?;
        Ok(match row {
            Some((kind, title, sender)) => PushChat {
                group: kind == "group",
                title,
                sender,
            },
            None => PushChat {
                group: false,
                title: None,
                sender: None,
            },
        })
    }

    /// The push service said the subscription is gone (404/410).
    pub async fn delete_push_subscription_by_id(&self, id: u64) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop("DELETE FROM push_subscriptions WHERE id = ?", (id,))
            .await?;
        Ok(())
    }

    /// Records the outcome of sends: delivered ones, and ones that failed for good.
    pub async fn record_push_outcomes(&self, ok: &[u64], failed: &[u64]) -> Result<(), DbError> {
        if ok.is_empty() && failed.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        for chunk in ok.chunks(MAX_ID_LIST) {
            let (marks, params) = id_list(chunk.iter().copied());
            conn.exec_drop(
                format!(
                    "UPDATE push_subscriptions SET last_success_at = NOW(3), failures = 0 \
                     WHERE id IN ({marks})"
                ),
                params,
            )
            .await?;
        }
        for chunk in failed.chunks(MAX_ID_LIST) {
            let (marks, params) = id_list(chunk.iter().copied());
            conn.exec_drop(
                format!(
                    "UPDATE push_subscriptions SET failures = failures + 1 WHERE id IN ({marks})"
                ),
                params,
            )
            .await?;
        }
        Ok(())
    }
}
