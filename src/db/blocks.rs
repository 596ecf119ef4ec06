//! The `user_blocks` table: who does not want to hear from whom.
//!
//! A block is read where a chat is judged, never per message: a room loads "is this
//! direct chat blocked?" with its members (`Db::chat_members`) and is told to load
//! again when a block changes, so the send path costs nothing more.

use std::collections::HashSet;

use mysql_async::prelude::Queryable;
use mysql_async::{Params, TxOpts};
use parley_actors::UserId;

use super::users::{user_from, UserRow, UserTuple, USER_COLUMNS};
use super::{Db, DbError, MAX_ID_LIST};

/// Most users one account may block: the list stays a page, and blocking cannot be
/// used to grow a table without bound.
pub const MAX_BLOCKS: u64 = 1_000;

/// What `block` came to.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Blocked now, or already.
    Blocked,
    /// The list is full ([`MAX_BLOCKS`]).
    Full,
    /// No such user.
    NoSuchUser,
}

/// Whether `a` blocked `b` or `b` blocked `a`.
pub(super) async fn either_blocks<Q: Queryable>(
    q: &mut Q,
    a: UserId,
    b: UserId,
) -> Result<bool, DbError> {
    let hit: Option<u8> = q
        .exec_first(
            "SELECT 1 FROM user_blocks WHERE (blocker_id = ? AND blocked_id = ?) \
             OR (blocker_id = ? AND blocked_id = ?) LIMIT 1",
            (a.0, b.0, b.0, a.0),
        )
        .await?;
    Ok(hit.is_some())
}

impl Db {
    /// `blocker` blocks `blocked` (idempotent).
    pub async fn block(&self, blocker: UserId, blocked: UserId) -> Result<BlockOutcome, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let exists: Option<u8> = tx
                .exec_first(
                    "SELECT 1 FROM users WHERE id = ? AND deleted_at IS NULL",
                    (blocked.0,),
                )
                .await?;
            if exists.is_none() {
                tx.rollback().await?;
                return Ok(BlockOutcome::NoSuchUser);
            }
            // Locks the blocker's rows: two blocks at once cannot both pass the cap.
            let count: Option<u64> = tx
                .exec_first(
                    "SELECT COUNT(*) FROM user_blocks WHERE blocker_id = ? FOR UPDATE",
                    (blocker.0,),
                )
                .await?;
            let already: Option<u8> = tx
                .exec_first(
                    "SELECT 1 FROM user_blocks WHERE blocker_id = ? AND blocked_id = ?",
                    (blocker.0, blocked.0),
                )
                .await?;
            if already.is_some() {
                tx.rollback().await?;
                return Ok(BlockOutcome::Blocked);
            }
            if count.unwrap_or(0) >= MAX_BLOCKS {
                tx.rollback().await?;
                return Ok(BlockOutcome::Full);
            }
            tx.exec_drop(
                "INSERT INTO user_blocks (blocker_id, blocked_id) VALUES (?, ?)",
                (blocker.0, blocked.0),
            )
            .await?;
            tx.commit().await?;
            Ok(BlockOutcome::Blocked)
        })
        .await
    }

    /// `blocker` no longer blocks `blocked` (idempotent).
    pub async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "DELETE FROM user_blocks WHERE blocker_id = ? AND blocked_id = ?",
            (blocker.0, blocked.0),
        )
        .await?;
        Ok(())
    }

    /// The users `blocker` blocked, most recent first (at most [`MAX_BLOCKS`]).
    pub async fn blocked_users(&self, blocker: UserId) -> Result<Vec<UserRow>, DbError> {
        let mut conn = self.conn().await?;
        let rows: Vec<UserTuple> = conn
            .exec(
                format!(
                    "SELECT {USER_COLUMNS} FROM user_blocks b JOIN users u ON u.id = b.blocked_id \
                     LEFT JOIN public_keys k ON k.user_id = u.id \
                     WHERE b.blocker_id = ? ORDER BY b.created_at DESC, u.id DESC LIMIT ?"
                ),
                (blocker.0, MAX_BLOCKS),
            )
            .await?;
        Ok(rows.into_iter().map(user_from).collect())
    }

    /// Whether `a` blocked `b` or `b` blocked `a`.
    pub async fn blocked_either_way(&self, a: UserId, b: UserId) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        either_blocks(&mut *conn, a, b).await
    }

    /// Whether `blocked` is blocked by `blocker`.
    pub async fn is_blocked_by(&self, blocker: UserId, blocked: UserId) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        let hit: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM user_blocks WHERE blocker_id = ? AND blocked_id = ?",
                (blocker.0, blocked.0),
            )
            .await?;
        Ok(hit.is_some())
    }

    /// Whether any of `users` blocked `who` (adding them to a group is refused).
    pub async fn blocked_by_any(&self, who: UserId, users: &[UserId]) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        for chunk in users.chunks(MAX_ID_LIST) {
            let (list, mut params) = super::id_list(chunk.iter().map(|u| u.0));
            params.insert(0, who.0.into());
            let hit: Option<u8> = conn
                .exec_first(
                    format!(
                        "SELECT 1 FROM user_blocks WHERE blocked_id = ? AND blocker_id IN ({list}) LIMIT 1"
                    ),
                    Params::Positional(params),
                )
                .await?;
            if hit.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Everyone `viewer` blocked or was blocked by: their presence is hidden from
    /// the viewer (and the viewer's from them). One query, indexed both ways.
    pub async fn block_partners(&self, viewer: UserId) -> Result<HashSet<UserId>, DbError> {
        let mut conn = self.conn().await?;
        let ids: Vec<u64> = conn
            .exec(
                "SELECT blocked_id FROM user_blocks WHERE blocker_id = ? \
                 UNION SELECT blocker_id FROM user_blocks WHERE blocked_id = ?",
                (viewer.0, viewer.0),
            )
            .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }
}
