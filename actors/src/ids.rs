//! Typed ids shared by both crates, so a chat id can never be passed where a user
//! id is wanted. Integer ids serialize as plain JSON numbers.

use serde::{Deserialize, Serialize};

macro_rules! int_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

int_id!(
    /// A user (`users.id`).
    UserId,
    /// A chat (`chats.id`).
    ChatId,
    /// A stored message (`messages.id`); ids grow with time within the whole server.
    MessageId,
    /// An uploaded voice message (`media_files.id` of kind audio): the id of the
    /// old `audioId` field and `/api/media/audio/:id` route, the same number as its
    /// `MediaId`.
    AudioId,
    /// An uploaded image, file or voice message (`media_files.id`).
    MediaId,
    /// One WebSocket connection, unique within this process.
    SessionId,
    /// A sign-in (`auth_sessions.id`, the `sid` of a token). Several WebSockets may
    /// belong to one; revoking it closes them all.
    AuthSessionId,
    /// An edit, delete or reaction (`message_changes.id`): increasing, so a client
    /// syncs the changes after the last one it saw.
    ChangeId,
);

/// A call, named by the caller's client (UUID text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub String);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<AudioId> for MediaId {
    /// An old client's `audioId` names the same row as a `mediaId`.
    fn from(a: AudioId) -> MediaId {
        MediaId(a.0)
    }
}
