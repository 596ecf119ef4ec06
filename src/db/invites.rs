//! The `invites` table (migration V0012): tokens that let someone register while
//! `auth.registration = "invite"`. Only the token's hash is stored.

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use parley_actors::Timestamp;

use super::users::{insert_user_on, InsertOutcome};
use super::{Db, DbError};
use crate::domain::token::TokenHash;
use crate::domain::{Email, Username};

/// An invite's id (what `parley admin invite list` shows and `revoke` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InviteId(pub u64);

impl std::fmt::Display for InviteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One invite as the admin CLI lists it.
#[derive(Debug, Clone)]
pub struct InviteRow {
    pub id: InviteId,
    pub max_uses: u32,
    pub uses: u32,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Neither used up, expired nor revoked (by the database's clock).
    pub usable: bool,
}

/// What registering with an invite came to.
pub enum InvitedOutcome {
    /// The user exists and the invite has one use fewer.
    Registered(InsertOutcome),
    /// The invite is unknown, used up, expired or revoked: nothing was written.
    InviteInvalid,
}

/// The condition for an invite that may still be used.
const USABLE: &str = "revoked_at IS NULL AND uses < max_uses \
                      AND (expires_at IS NULL OR expires_at > UTC_TIMESTAMP(3))";

impl Db {
    /// Stores a new invite for `max_uses` registrations, expiring `expires_in_secs`
    /// from now by the database's clock (None: never).
    pub async fn create_invite(
        &self,
        token: &TokenHash,
        max_uses: u32,
        expires_in_secs: Option<u64>,
    ) -> Result<InviteId, DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "INSERT INTO invites (token_hash, max_uses, expires_at) VALUES (?, ?, \
             IF(? IS NULL, NULL, UTC_TIMESTAMP(3) + INTERVAL ? SECOND))",
            (token.as_bytes(), max_uses, expires_in_secs, expires_in_secs),
        )
        .await?;
        Ok(InviteId(conn.last_insert_id().unwrap_or_default()))
    }

    /// Every invite, newest first.
    pub async fn invites(&self) -> Result<Vec<InviteRow>, DbError> {
        let mut conn = self.conn().await?;
        type Row = (
            u64,
            u32,
            u32,
            Option<NaiveDateTime>,
            Option<NaiveDateTime>,
            NaiveDateTime,
            bool,
        );
        let rows: Vec<Row> = conn
            .query(format!(
                "SELECT id, max_uses, uses, expires_at, revoked_at, created_at, ({USABLE}) \
                 FROM invites ORDER BY id DESC"
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, max_uses, uses, expires_at, revoked_at, created_at, usable)| InviteRow {
                    id: InviteId(id),
                    max_uses,
                    uses,
                    expires_at: expires_at.map(Timestamp::from),
                    revoked_at: revoked_at.map(Timestamp::from),
                    created_at: Timestamp::from(created_at),
                    usable,
                },
            )
            .collect())
    }

    /// Revokes invite `id`; false when there is none or it was revoked already.
    pub async fn revoke_invite(&self, id: InviteId) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE invites SET revoked_at = UTC_TIMESTAMP(3) WHERE id = ? AND revoked_at IS NULL",
            (id.0,),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    }

    /// Whether `token` names an invite that can still be used: asked before a
    /// password is hashed, so a made-up invite costs one indexed read, not a hash.
    /// (Registration checks again, under a lock.)
    pub async fn invite_usable(&self, token: &TokenHash) -> Result<bool, DbError> {
        let mut conn = self.conn().await?;
        let hit: Option<u8> = conn
            .exec_first(
                format!("SELECT 1 FROM invites WHERE token_hash = ? AND {USABLE}"),
                (token.as_bytes(),),
            )
            .await?;
        Ok(hit.is_some())
    }

    /// Creates the user and consumes one use of the invite, in one transaction: the
    /// invite's row is locked first, so two registrations racing for its last use
    /// are served one after the other and the second finds it used up; a taken
    /// email or username rolls everything back, so it burns no use.
    pub async fn insert_invited_user(
        &self,
        token: &TokenHash,
        email: &Email,
        username: &Username,
        password_hash: &str,
    ) -> Result<InvitedOutcome, DbError> {
        self.retrying(false, || async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let invite: Option<u64> = tx
                .exec_first(
                    format!("SELECT id FROM invites WHERE token_hash = ? AND {USABLE} FOR UPDATE"),
                    (token.as_bytes(),),
                )
                .await?;
            let Some(invite) = invite else {
                tx.rollback().await?;
                return Ok(InvitedOutcome::InviteInvalid);
            };
            let outcome = insert_user_on(&mut tx, email, username, Some(password_hash)).await?;
            match outcome {
                InsertOutcome::Created(_) => {
                    tx.exec_drop("UPDATE invites SET uses = uses + 1 WHERE id = ?", (invite,))
                        .await?;
                    tx.commit().await?;
                }
                InsertOutcome::Taken(_) => tx.rollback().await?,
            }
            Ok(InvitedOutcome::Registered(outcome))
        })
        .await
    }

    /// Invites that can still be used (for `admin stats`).
    pub async fn usable_invites(&self) -> Result<u64, DbError> {
        let mut conn = self.conn().await?;
        let n: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM invites WHERE {USABLE}"))
            .await?;
        Ok(n.unwrap_or(0))
    }
}
