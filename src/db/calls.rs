//! Calls: the log row of each ended call and its trace in the chat.

use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use parley_actors::protocol::MessageKind;
use parley_actors::store::{CallRecord, Message};
use parley_actors::MessageId;

use super::{Db, DbError};

impl Db {
    /// The call's log row and its trace in the chat, together.
    pub async fn record_call(&self, c: &CallRecord) -> Result<Option<Message>, DbError> {
        let duration_ms = c
            .answered_at
            .map(|a| (c.ended_at.0 - a.0).num_milliseconds().max(0));
        let content = serde_json::json!({
            "outcome": c.reason,
            "video": c.video,
            "callerId": c.caller,
            "durationMs": duration_ms,
        })
        .to_string();
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        tx.exec_drop(
            "INSERT INTO calls (call_id, chat_id, caller_id, callee_id, video, started_at, answered_at, ended_at, end_reason) \
             VALUES (?,?,?,?,?,?,?,?,?)",
            (
                c.call_id.0.as_str(),
                c.chat_id.0,
                c.caller.0,
                c.callee.0,
                c.video,
                c.started_at.naive(),
                c.answered_at.map(|a| a.naive()),
                c.ended_at.naive(),
                c.reason.as_str(),
            ),
        )
        .await?;
        tx.exec_drop(
            "INSERT INTO messages (chat_id, sender_id, client_id, kind, content, created_at) VALUES (?,?,?,?,?,?)",
            (
                c.chat_id.0,
                c.caller.0,
                format!("call:{}", c.call_id),
                super::messages::kind_str(MessageKind::Call),
                content,
                c.ended_at.naive(),
            ),
        )
        .await?;
        let id = tx.last_insert_id().unwrap_or_default();
        tx.commit().await?;
        drop(conn);
        // Read back on its own: a failure here must not record the call twice.
        self.retrying(true, || self.message_by_id(MessageId(id)))
            .await
            .map_err(DbError::after_commit)
    }
}
