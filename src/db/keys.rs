//! The `public_keys` table: one current end-to-end key per user.

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use parley_actors::{Timestamp, UserId};

use super::{Db, DbError};

pub struct KeyRow {
    pub user: UserId,
    pub pem: String,
    pub fingerprint: String,
    pub updated_at: Timestamp,
}

impl Db {
    /// Stores `user`'s key; returns the fingerprint it replaced, if any.
    pub async fn put_public_key(
        &self,
        user: UserId,
        pem: &str,
        fingerprint: &str,
        at: Timestamp,
    ) -> Result<Option<String>, DbError> {
        let mut conn = self.conn().await?;
        let previous: Option<String> = conn
            .exec_first(
                "SELECT fingerprint FROM public_keys WHERE user_id = ?",
                (user.0,),
            )
            .await?;
        conn.exec_drop(
            "INSERT INTO public_keys (user_id, public_key, fingerprint, updated_at) VALUES (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE public_key = VALUES(public_key), fingerprint = VALUES(fingerprint), \
             updated_at = VALUES(updated_at)",
            (user.0, pem, fingerprint, at.naive()),
        )
        .await?;
        Ok(previous)
    }

    pub async fn public_key(&self, user: UserId) -> Result<Option<KeyRow>, DbError> {
        let mut conn = self.conn().await?;
        let row: Option<(String, String, NaiveDateTime)> = conn
            .exec_first(
                "SELECT public_key, fingerprint, updated_at FROM public_keys WHERE user_id = ?",
                (user.0,),
            )
            .await?;
        Ok(row.map(|(pem, fingerprint, at)| KeyRow {
            user,
            pem,
            fingerprint,
            updated_at: Timestamp::from(at),
        }))
    }
}
