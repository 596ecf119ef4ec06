//! What the actors need from persistence. `src/db` implements it over MySQL; the
//! actors never see SQL, and the compiler keeps the layers apart.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error_code::ErrorCode;
use crate::ids::{AudioId, CallId, ChatId, MessageId, UserId};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatKind {
    Direct,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    Audio,
    /// A call's trace in the history (missed, rejected, duration); made by the server only.
    Call,
}

/// A chat and who is in it.
#[derive(Debug, Clone)]
pub struct ChatMembers {
    pub chat: ChatId,
    pub kind: ChatKind,
    pub members: Vec<UserId>,
}

/// The voice message attached to a message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioInfo {
    pub audio_id: AudioId,
    pub url: String,
    pub mime: String,
    pub bytes: u64,
    pub duration_ms: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Sent,
    Delivered,
    Read,
}

/// The `message` object of PROTOCOL.md.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub sender_id: UserId,
    pub client_id: String,
    pub kind: MessageKind,
    pub content: String,
    pub audio: Option<AudioInfo>,
    pub encrypted: bool,
    /// The encryption envelope exactly as the sender sent it; never parsed here.
    pub e2ee: Option<Box<RawValue>>,
    pub created_at: Timestamp,
    pub status: MessageStatus,
}

/// A message to store, already checked by its room.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: ChatId,
    pub sender_id: UserId,
    pub client_id: String,
    pub kind: MessageKind,
    pub content: String,
    pub audio_id: Option<AudioId>,
    pub encrypted: bool,
    pub e2ee: Option<Box<RawValue>>,
}

/// The outcome of storing one message.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// Stored now; fan it out.
    Fresh(Message),
    /// The sender used this client id before: here is that first message.
    Existing(Message),
    /// Refused by a rule only the database can check (e.g. the audio is not yours).
    Rejected { code: ErrorCode, message: String },
}

/// Delivery receipts for one sender in one chat.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub chat_id: ChatId,
    pub sender_id: UserId,
    pub message_ids: Vec<MessageId>,
}

pub enum ReadOutcome {
    NotMember,
    /// The watermark moved; these members (the reader excluded) should hear of it.
    Advanced {
        up_to: MessageId,
        notify: Vec<UserId>,
    },
    Unchanged,
}

/// How a finished call is written down.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub call_id: CallId,
    pub chat_id: ChatId,
    pub caller: UserId,
    pub callee: UserId,
    pub video: bool,
    pub started_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Timestamp,
    pub reason: String,
}

/// What went wrong below the `Store`, as the actors need to tell it apart:
/// `Unavailable` is answered `unavailable` (retry, nothing is lost), anything else is
/// logged with its whole chain (see [`StoreError::chain`]) and answered `internal`.
/// Cloned when one failed batch answers many requests, so the cause is shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The storage cannot take the request now (unreachable, no connection free in
    /// time, too much waiting); the same request may succeed later.
    #[error("storage unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// Any other failure: a bug, a broken row, an outcome that makes no sense.
    #[error("storage error: {context}")]
    Other {
        context: String,
        #[source]
        source: Option<Cause>,
    },
}

/// The error a `StoreError` came from, kept for the logs.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

impl StoreError {
    /// Unavailable for a reason of this crate's own (no underlying error).
    pub fn unavailable(context: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// Another failure of this crate's own (no underlying error).
    pub fn other(context: impl Into<String>) -> StoreError {
        StoreError::Other {
            context: context.into(),
            source: None,
        }
    }

    /// Unavailable because of `source`.
    pub fn unavailable_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Unavailable {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// Failed because of `source`.
    pub fn other_from(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Other {
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// The error and every cause below it, `: `-separated, for a log line.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// Displays an error followed by its sources.
pub struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The chat and its members, or `None` when there is no such chat.
    async fn chat_members(&self, chat: ChatId) -> Result<Option<ChatMembers>, StoreError>;

    /// Stores a batch in one round trip where possible, in order; one outcome per input.
    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<Inserted>, StoreError>;

    /// Marks messages delivered, for several readers at once (only messages
    /// addressed to each); per request, its receipts grouped by chat and sender.
    async fn mark_delivered(
        &self,
        batch: &[(UserId, Vec<MessageId>)],
    ) -> Result<Vec<Vec<Receipt>>, StoreError>;

    /// Moves `user`'s read (and delivered) watermark in `chat` up to `up_to`.
    async fn mark_read(
        &self,
        user: UserId,
        chat: ChatId,
        up_to: MessageId,
    ) -> Result<ReadOutcome, StoreError>;

    /// Messages to `user` from others not yet delivered, oldest first, with id > `after`.
    async fn undelivered(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    /// Every message in `user`'s chats with id > `after`, oldest first.
    async fn messages_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError>;

    /// Whether `user` is a member of `chat` (false when there is no such chat).
    async fn is_member(&self, user: UserId, chat: ChatId) -> Result<bool, StoreError>;

    /// The direct chat between two users, if they have one.
    async fn direct_chat(&self, a: UserId, b: UserId) -> Result<Option<ChatId>, StoreError>;

    /// Users who share at least one chat with `user`.
    async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError>;

    /// The contacts of each of `users`, one list per input, in order (a batch of
    /// sessions coming online).
    async fn contacts_of(&self, users: &[UserId]) -> Result<Vec<Vec<UserId>>, StoreError>;

    /// Which of `users` have messages from others not yet delivered to them.
    async fn with_undelivered(&self, users: &[UserId]) -> Result<Vec<UserId>, StoreError>;

    async fn set_last_seen(&self, user: UserId, at: Timestamp) -> Result<(), StoreError>;

    /// The id of the newest stored message (0 when there is none).
    async fn newest_message_id(&self) -> Result<MessageId, StoreError>;

    /// Writes the call log row and the call's message in its chat.
    async fn record_call(&self, call: &CallRecord) -> Result<Option<Message>, StoreError>;
}
