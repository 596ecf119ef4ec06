//! What the actors need from persistence. `src/db` implements it over MySQL; the
//! actors never see SQL, and the compiler keeps the layers apart.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::attachment::{MediaInfo, MediaKind};
use crate::error_code::ErrorCode;
use crate::ids::{AudioId, CallId, ChangeId, ChatId, MediaId, MessageId, UserId};
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
    Image,
    File,
    /// A call's trace in the history (missed, rejected, duration); made by the server only.
    Call,
    /// A change to a group (renamed, members added or removed, roles): content is
    /// JSON `{action, actorId, userIds, title?}`; made by the server only, in the
    /// change's transaction, and never edited, deleted or reacted to.
    System,
}

impl MessageKind {
    /// The kind of upload a plaintext message of this kind carries; `None` for text
    /// and call messages, which carry none.
    pub fn media_kind(self) -> Option<MediaKind> {
        match self {
            MessageKind::Image => Some(MediaKind::Image),
            MessageKind::Audio => Some(MediaKind::Audio),
            MessageKind::File => Some(MediaKind::File),
            MessageKind::Text | MessageKind::Call | MessageKind::System => None,
        }
    }
}

/// A chat and who is in it.
#[derive(Debug, Clone)]
pub struct ChatMembers {
    pub chat: ChatId,
    pub kind: ChatKind,
    pub members: Vec<UserId>,
    /// The group's owner and admins (who may delete others' messages); empty for a
    /// direct chat.
    pub admins: Vec<UserId>,
    /// A direct chat one of whose two people blocked the other: nothing is sent in
    /// it (messages, calls). Always false for a group.
    pub blocked: bool,
}

/// The voice message attached to a message, as clients of before attachments read
/// it (the same upload as `media`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioInfo {
    pub audio_id: AudioId,
    pub url: String,
    pub mime: String,
    pub bytes: u64,
    pub duration_ms: Option<u32>,
}

impl AudioInfo {
    /// The `audio` object of an audio message carrying `media`.
    pub fn of(media: &MediaInfo) -> AudioInfo {
        let id = AudioId(media.media_id.0);
        AudioInfo {
            audio_id: id,
            url: crate::attachment::audio_url(id),
            mime: media.mime.clone(),
            bytes: media.bytes,
            duration_ms: media.duration_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Sent,
    Delivered,
    Read,
}

/// The `message` object of PROTOCOL.md. A message deleted for everyone serializes
/// as `{id, chatId, senderId, deleted: true, createdAt}` and nothing else, wherever
/// it is read (see `Serialize` below).
#[derive(Debug, Clone)]
pub struct Message {
    pub id: MessageId,
    pub chat_id: ChatId,
    pub sender_id: UserId,
    pub client_id: String,
    pub kind: MessageKind,
    /// The text, or an attachment's caption (empty when none).
    pub content: String,
    /// For an audio message, its upload as `audio` showed it before attachments.
    pub audio: Option<AudioInfo>,
    /// The upload the message carries (image, audio or file).
    pub media: Option<MediaInfo>,
    pub encrypted: bool,
    /// The encryption envelope exactly as the sender sent it; never parsed here.
    pub e2ee: Option<Box<RawValue>>,
    pub reply_to: Option<ReplyTo>,
    pub edited_at: Option<Timestamp>,
    pub deleted: bool,
    pub reactions: Vec<Reaction>,
    pub created_at: Timestamp,
    pub status: MessageStatus,
}

/// What a reply shows of the message it answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyTo {
    pub id: MessageId,
    pub sender_id: UserId,
    pub kind: MessageKind,
    /// The first [`REPLY_PREVIEW_CHARS`] characters of a plaintext original (an
    /// attachment's caption); `None` for an encrypted, deleted or call message and an
    /// attachment without a caption. See [`reply_preview`].
    pub preview: Option<String>,
    pub deleted: bool,
}

/// What a reply shows of an original of `kind` whose text (or caption) starts with
/// `text` (at least its first [`REPLY_PREVIEW_CHARS`] characters): the one rule, for
/// every store.
pub fn reply_preview(
    kind: MessageKind,
    encrypted: bool,
    deleted: bool,
    text: &str,
) -> Option<String> {
    if encrypted || deleted || matches!(kind, MessageKind::Call | MessageKind::System) {
        return None;
    }
    if kind != MessageKind::Text && text.is_empty() {
        // An attachment without a caption: the client shows the attachment itself.
        return None;
    }
    Some(text.chars().take(REPLY_PREVIEW_CHARS).collect())
}

/// Characters of the original a reply carries.
pub const REPLY_PREVIEW_CHARS: usize = 120;
/// Users listed per emoji in `reactions` (the count is exact).
pub const REACTION_USERS_LISTED: usize = 20;

/// One emoji's reactions on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    pub emoji: String,
    pub count: u32,
    /// At most [`REACTION_USERS_LISTED`], the earliest first.
    pub user_ids: Vec<UserId>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LiveView<'a> {
    id: MessageId,
    chat_id: ChatId,
    sender_id: UserId,
    client_id: &'a str,
    kind: MessageKind,
    content: &'a str,
    audio: &'a Option<AudioInfo>,
    media: &'a Option<MediaInfo>,
    encrypted: bool,
    e2ee: &'a Option<Box<RawValue>>,
    reply_to: &'a Option<ReplyTo>,
    edited_at: Option<Timestamp>,
    deleted: bool,
    reactions: &'a [Reaction],
    created_at: Timestamp,
    status: MessageStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeletedView {
    id: MessageId,
    chat_id: ChatId,
    sender_id: UserId,
    deleted: bool,
    created_at: Timestamp,
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.deleted {
            return DeletedView {
                id: self.id,
                chat_id: self.chat_id,
                sender_id: self.sender_id,
                deleted: true,
                created_at: self.created_at,
            }
            .serialize(s);
        }
        LiveView {
            id: self.id,
            chat_id: self.chat_id,
            sender_id: self.sender_id,
            client_id: &self.client_id,
            kind: self.kind,
            content: &self.content,
            audio: &self.audio,
            media: &self.media,
            encrypted: self.encrypted,
            e2ee: &self.e2ee,
            reply_to: &self.reply_to,
            edited_at: self.edited_at,
            deleted: false,
            reactions: &self.reactions,
            created_at: self.created_at,
            status: self.status,
        }
        .serialize(s)
    }
}

/// A message to store, already checked by its room.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat_id: ChatId,
    pub sender_id: UserId,
    pub client_id: String,
    pub kind: MessageKind,
    /// The text, or an attachment's caption (possibly empty).
    pub content: String,
    /// The upload an image, file or audio message carries, to be claimed by the store
    /// (see [`crate::attachment::refusal`]).
    pub media_id: Option<MediaId>,
    pub encrypted: bool,
    pub e2ee: Option<Box<RawValue>>,
    /// Checked by the store: a message of the same chat.
    pub reply_to: Option<MessageId>,
}

/// A stored message as a change request needs to judge it, with its chat's members
/// (to check an envelope and to fan the change out).
#[derive(Debug, Clone)]
pub struct ChangeTarget {
    pub members: ChatMembers,
    pub sender_id: UserId,
    pub kind: MessageKind,
    pub encrypted: bool,
    pub deleted: bool,
    pub created_at: Timestamp,
}

/// The new body of an edited message.
#[derive(Debug, Clone)]
pub enum EditBody {
    Text(String),
    Envelope(Box<RawValue>),
}

/// An edit, already checked against its target.
#[derive(Debug, Clone)]
pub struct Edit {
    pub message: MessageId,
    pub editor: UserId,
    pub body: EditBody,
}

/// What a reaction request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReactOutcome {
    /// Stored: the emoji now has `count` users on the message.
    Changed { change: ChangeId, count: u32 },
    /// Already as asked (a second add, or removing what is not there).
    Unchanged,
    /// The user already has the most distinct emoji allowed on it.
    TooMany,
    /// The message was deleted for everyone.
    Deleted,
}

/// One stored change, as `sync` replays it.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: ChangeId,
    pub chat_id: ChatId,
    pub message_id: MessageId,
    pub what: ChangeKind,
}

#[derive(Debug, Clone)]
pub enum ChangeKind {
    /// The message as it is now (possibly deleted since).
    Edited(Box<Message>),
    Deleted,
    Reaction {
        user: UserId,
        emoji: String,
        active: bool,
        count: u32,
    },
}

/// The outcome of storing one message.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// Stored now; fan it out.
    Fresh(Message),
    /// The sender used this client id before: here is that first message.
    Existing(Message),
    /// Refused by a rule only the database can check (e.g. the upload is not yours).
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

    /// The message `id` as a change by `user` needs it, or `None` when there is no
    /// such message or `user` is not a member of its chat (the same answer, so ids of
    /// other chats cannot be probed).
    async fn change_target(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<ChangeTarget>, StoreError>;

    /// Stores an edit by the message's sender and logs the change; `None` when the
    /// message is no longer editable by them (deleted meanwhile).
    async fn edit_message(&self, edit: &Edit) -> Result<Option<(Message, ChangeId)>, StoreError>;

    /// Deletes `id` for everyone (by its sender): content, envelope, reactions and
    /// media go; `None` when it was deleted already (or is not `user`'s).
    async fn delete_message(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<ChangeId>, StoreError>;

    /// Adds (`active`) or removes `user`'s `emoji` on `id`, at most `max_distinct`
    /// distinct emoji per user and message.
    async fn react(
        &self,
        user: UserId,
        id: MessageId,
        emoji: &str,
        active: bool,
        max_distinct: u32,
    ) -> Result<ReactOutcome, StoreError>;

    /// Changes to messages of `user`'s chats with id > `after`, oldest first.
    async fn changes_after(
        &self,
        user: UserId,
        after: ChangeId,
        limit: u32,
    ) -> Result<Vec<Change>, StoreError>;

    /// The newest change visible to each of `users` (0 when none), one per input.
    async fn last_changes(&self, users: &[UserId]) -> Result<Vec<ChangeId>, StoreError>;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn image_message() -> Message {
        let id = MediaId(9);
        Message {
            id: MessageId(3),
            chat_id: ChatId(2),
            sender_id: UserId(1),
            client_id: "c1".into(),
            kind: MessageKind::Image,
            content: "the view".into(),
            audio: None,
            media: Some(MediaInfo {
                media_id: id,
                kind: MediaKind::Image,
                mime: "image/jpeg".into(),
                bytes: 2048,
                name: "view.jpg".into(),
                url: crate::attachment::media_url(id),
                width: Some(1200),
                height: Some(800),
                thumbnail_url: Some(crate::attachment::thumbnail_url(id)),
                duration_ms: None,
            }),
            encrypted: false,
            e2ee: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            created_at: Timestamp::now(),
            status: MessageStatus::Sent,
        }
    }

    #[test]
    fn a_message_carries_its_media_and_a_deleted_one_only_five_keys() {
        let m = image_message();
        let v = serde_json::to_value(&m).expect("json");
        assert_eq!(v["media"]["mediaId"], json!(9));
        assert_eq!(v["media"]["thumbnailUrl"], json!("/api/media/9/thumbnail"));
        assert_eq!(v["audio"], json!(null));
        assert_eq!(v["kind"], json!("image"));
        let deleted = Message { deleted: true, ..m };
        let v = serde_json::to_value(&deleted).expect("json");
        let keys: Vec<&str> = v
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        assert!(v.get("media").is_none());
    }

    #[test]
    fn a_reply_previews_a_caption_and_nothing_for_an_attachment_without_one() {
        use MessageKind::{Audio, Call, File, Image, Text};
        assert_eq!(
            reply_preview(Image, false, false, "x").as_deref(),
            Some("x")
        );
        assert_eq!(reply_preview(File, false, false, ""), None);
        assert_eq!(reply_preview(Audio, false, false, ""), None);
        assert_eq!(reply_preview(Text, false, false, "").as_deref(), Some(""));
        assert_eq!(reply_preview(Image, true, false, "x"), None);
        assert_eq!(reply_preview(Image, false, true, "x"), None);
        assert_eq!(reply_preview(Call, false, false, "{}"), None);
        let long = "é".repeat(REPLY_PREVIEW_CHARS + 5);
        assert_eq!(
            reply_preview(File, false, false, &long).map(|p| p.chars().count()),
            Some(REPLY_PREVIEW_CHARS)
        );
    }

    #[test]
    fn an_audio_message_shows_its_upload_as_audio_too() {
        let media = MediaInfo {
            media_id: MediaId(4),
            kind: MediaKind::Audio,
            mime: "audio/ogg".into(),
            bytes: 10,
            name: "voice.ogg".into(),
            url: crate::attachment::media_url(MediaId(4)),
            width: None,
            height: None,
            thumbnail_url: None,
            duration_ms: Some(700),
        };
        let a = AudioInfo::of(&media);
        assert_eq!(
            serde_json::to_value(&a).expect("json"),
            json!({"audioId": 4, "url": "/api/media/audio/4", "mime": "audio/ogg", "bytes": 10, "durationMs": 700})
        );
    }
}
