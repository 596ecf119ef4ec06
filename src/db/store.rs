//! `parley_actors::Store` over MySQL: the actors' persistence, by way of the
//! query functions of this module's siblings.

use async_trait::async_trait;
use std::path::PathBuf;

use parley_actors::store::{
    CallRecord, Change, ChangeTarget, ChatMembers, Edit, Inserted, Message, NewMessage,
    ReactOutcome, ReadOutcome, Receipt, Store, StoreError,
};
use parley_actors::{ChangeId, ChatId, MessageId, Timestamp, UserId};

use super::{Db, DbError};

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) | DbError::Retry(_) => StoreError::unavailable_from("MySQL", e),
            _ => StoreError::other_from("MySQL", e),
        }
    }
}

/// The store handed to the actors.
pub struct MysqlStore {
    db: Db,
    /// Whether a multi-row INSERT gets consecutive ids (`innodb_autoinc_lock_mode` < 2).
    consecutive_ids: bool,
    /// The uploads' root (`storage.uploads_dir`): a message deleted for everyone takes
    /// its files with it, and the actors know nothing of files.
    uploads_dir: PathBuf,
}

impl MysqlStore {
    pub async fn new(db: Db, uploads_dir: PathBuf) -> MysqlStore {
        let mode = db.autoinc_lock_mode().await.unwrap_or(Some(2));
        let consecutive_ids = matches!(mode, Some(0) | Some(1));
        if !consecutive_ids {
            tracing::info!(
                "innodb_autoinc_lock_mode is 2 (or unknown): message ids are read back per batch"
            );
        }
        MysqlStore {
            db,
            consecutive_ids,
            uploads_dir,
        }
    }
}

#[async_trait]
impl Store for MysqlStore {
    async fn chat_members(&self, chat: ChatId) -> Result<Option<ChatMembers>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || self.db.chat_members(chat))
            .await?)
    }

    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<Inserted>, StoreError> {
        // A commit can succeed and its answer still be lost (the connection or the
        // node dropped at that moment): the retry then finds those messages stored
        // already. They were never fanned out, so they count as fresh here (at worst
        // a client's resend is pushed twice, and clients keep one per id).
        let failed_once = std::sync::atomic::AtomicBool::new(false);
        let mut outcomes = self
            .db
            .retrying(true, || async {
                let r = self.db.insert_messages(batch, self.consecutive_ids).await;
                if r.is_err() {
                    failed_once.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                r
            })
            .await?;
        if failed_once.load(std::sync::atomic::Ordering::Relaxed) {
            for o in &mut outcomes {
                if let Inserted::Existing(m) = o {
                    *o = Inserted::Fresh(m.clone());
                }
            }
        }
        self.db.search_queue().push_stored(&outcomes);
        Ok(outcomes)
    }

    async fn mark_delivered(
        &self,
        batch: &[(UserId, Vec<MessageId>)],
    ) -> Result<Vec<Vec<Receipt>>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || self.db.mark_delivered(batch))
            .await?)
    }

    async fn mark_read(
        &self,
        user: UserId,
        chat: ChatId,
        up_to: MessageId,
    ) -> Result<ReadOutcome, StoreError> {
        Ok(self
            .db
            .retrying(true, move || {
                super::acting_for(user, self.db.mark_read(user, chat, up_to))
            })
            .await?)
    }

    async fn undelivered(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        // A session's catch-up runs within its user's share of the pool.
        Ok(self
            .db
            .retrying(true, move || {
                super::acting_for(user, self.db.undelivered(user, after, limit))
            })
            .await?)
    }

    async fn messages_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || {
                super::acting_for(user, self.db.messages_after(user, after, limit))
            })
            .await?)
    }

    async fn is_member(&self, user: UserId, chat: ChatId) -> Result<bool, StoreError> {
        Ok(self
            .db
            .retrying(true, move || {
                super::acting_for(user, self.db.is_member_of(chat, user))
            })
            .await?)
    }

    async fn direct_chat(&self, a: UserId, b: UserId) -> Result<Option<ChatId>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || self.db.direct_chat(a, b))
            .await?)
    }

    async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || self.db.contacts(user))
            .await?)
    }

    async fn contacts_of(&self, users: &[UserId]) -> Result<Vec<Vec<UserId>>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || self.db.contacts_of(users))
            .await?)
    }

    async fn with_undelivered(&self, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || self.db.with_undelivered(users))
            .await?)
    }

    async fn newest_message_id(&self) -> Result<MessageId, StoreError> {
        Ok(self
            .db
            .retrying(true, move || self.db.newest_message_id())
            .await?)
    }

    async fn set_last_seen(&self, user: UserId, at: Timestamp) -> Result<(), StoreError> {
        Ok(self
            .db
            .retrying(true, move || self.db.set_last_seen(user, at))
            .await?)
    }

    async fn record_call(&self, call: &CallRecord) -> Result<Option<Message>, StoreError> {
        Ok(self
            .db
            .retrying(false, move || self.db.record_call(call))
            .await?)
    }

    async fn change_target(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<ChangeTarget>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || {
                super::acting_for(user, self.db.change_target(user, id))
            })
            .await?)
    }

    async fn edit_message(&self, edit: &Edit) -> Result<Option<(Message, ChangeId)>, StoreError> {
        Ok(self
            .db
            .retrying(false, move || {
                super::acting_for(edit.editor, self.db.edit_message(edit))
            })
            .await?)
    }

    async fn delete_message(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<ChangeId>, StoreError> {
        let Some(deleted) = self
            .db
            .retrying(false, move || {
                super::acting_for(user, self.db.delete_message(user, id))
            })
            .await?
        else {
            return Ok(None);
        };
        if let Some(up) = deleted.upload {
            // After the commit: a failed removal leaves an orphan file (logged), never
            // a message pointing at a missing one.
            crate::media::files::remove(
                &self.uploads_dir,
                up.kind,
                &up.storage_name,
                up.thumb_name.as_deref(),
            )
            .await;
        }
        Ok(Some(deleted.change))
    }

    async fn react(
        &self,
        user: UserId,
        id: MessageId,
        emoji: &str,
        active: bool,
        max_distinct: u32,
    ) -> Result<ReactOutcome, StoreError> {
        Ok(self
            .db
            .retrying(false, move || {
                super::acting_for(user, self.db.react(user, id, emoji, active, max_distinct))
            })
            .await?)
    }

    async fn changes_after(
        &self,
        user: UserId,
        after: ChangeId,
        limit: u32,
    ) -> Result<Vec<Change>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || {
                super::acting_for(user, self.db.changes_after(user, after, limit))
            })
            .await?)
    }

    async fn last_changes(&self, users: &[UserId]) -> Result<Vec<ChangeId>, StoreError> {
        Ok(self
            .db
            .retrying(true, move || self.db.last_changes(users))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn a_db_error_stays_the_source_of_the_store_error() {
        let e = StoreError::from(DbError::Unavailable("connection refused".into()));
        assert!(e.is_unavailable());
        let source = e.source().expect("the DbError is kept");
        assert_eq!(
            source.to_string(),
            "database unavailable: connection refused"
        );
        assert_eq!(
            e.chain().to_string(),
            "storage unavailable: MySQL: database unavailable: connection refused"
        );

        let e = StoreError::from(DbError::Mapping("chat without a kind".into()));
        assert!(!e.is_unavailable());
        assert!(e.source().is_some());
        assert!(e
            .chain()
            .to_string()
            .ends_with("unexpected row: chat without a kind"));
        // One failed batch answers many requests: a clone shares the cause.
        assert_eq!(e.clone().chain().to_string(), e.chain().to_string());
    }
}
