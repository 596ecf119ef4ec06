//! The WebSocket wire format of PROTOCOL.md, in one place. Every frame is
//! `{"event": "...", "data": {...}, "ref": "..."}`. Inbound frames are decoded in
//! two steps (the envelope, then `data` for the named event) so a client learns
//! exactly what was wrong; outbound frames are encoded once and shared by every
//! session that receives them.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error_code::ErrorCode;
use crate::ids::{AudioId, CallId, ChangeId, ChatId, MediaId, MessageId, UserId};
// Defined with the stored message, so the store needs nothing of the wire.
use crate::store::Message;
pub use crate::store::MessageKind;
use crate::time::Timestamp;

/// The envelope as it arrives; `data` stays raw until the event is known.
#[derive(Deserialize)]
struct InFrame<'a> {
    event: &'a str,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(rename = "ref", default)]
    reference: Option<String>,
}

/// Every event a client may send.
#[derive(Debug)]
pub enum ClientEvent {
    MessageSend(SendMessage),
    MessageDelivered(DeliveredIds),
    MessageRead(ReadUpTo),
    MessageEdit(EditMessage),
    MessageDelete(MessageRef),
    MessageReact(React),
    Typing(Typing),
    Sync(SyncAfter),
    Ping,
    /// `client:state`: whether the page is visible (issue 20, Web Push).
    ClientState(ClientState),
    CallInitiate(CallInitiate),
    CallAnswer(CallAnswer),
    CallReject(CallRef),
    CallIceCandidate(CallIceCandidate),
    CallEnd(CallRef),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessage {
    pub chat_id: ChatId,
    pub client_id: String,
    pub kind: MessageKind,
    /// The text, or an attachment's optional caption.
    #[serde(default)]
    pub content: Option<String>,
    /// The upload an image, file or audio message carries.
    #[serde(default)]
    pub media_id: Option<MediaId>,
    /// What clients of before attachments name a voice message's upload by: the same
    /// number as its `mediaId` (see `room::validate`).
    #[serde(default)]
    pub audio_id: Option<AudioId>,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub e2ee: Option<Box<RawValue>>,
    #[serde(default)]
    pub reply_to_id: Option<MessageId>,
}

/// `message:edit`: new `content` for a plaintext message, or a new `e2ee` envelope
/// for an encrypted one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditMessage {
    pub message_id: MessageId,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub e2ee: Option<Box<RawValue>>,
}

/// `message:delete`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageRef {
    pub message_id: MessageId,
}

/// `message:react`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct React {
    pub message_id: MessageId,
    pub emoji: String,
    pub active: bool,
}

/// `{messageIds:[...]}` or `{messageId}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveredIds {
    #[serde(default)]
    pub message_ids: Option<Vec<MessageId>>,
    #[serde(default)]
    pub message_id: Option<MessageId>,
}

impl DeliveredIds {
    pub fn ids(self) -> Vec<MessageId> {
        let mut ids = self.message_ids.unwrap_or_default();
        ids.extend(self.message_id);
        ids
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadUpTo {
    pub chat_id: ChatId,
    pub message_id: MessageId,
}

#[derive(Debug, Deserialize, Serialize, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Typing {
    pub chat_id: ChatId,
    pub active: bool,
}

/// `client:state`: the page became visible or hidden. A session that never
/// reported counts as visible.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientState {
    pub visible: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncAfter {
    pub after_id: MessageId,
    /// Also replay the changes after this one (clients that know of changes).
    #[serde(default)]
    pub after_change: Option<ChangeId>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallInitiate {
    pub call_id: CallId,
    #[serde(default)]
    pub chat_id: Option<ChatId>,
    #[serde(default)]
    pub to_user_id: Option<UserId>,
    #[serde(default)]
    pub video: bool,
    pub sdp: Box<RawValue>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallAnswer {
    pub call_id: CallId,
    pub sdp: Box<RawValue>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallRef {
    pub call_id: CallId,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallIceCandidate {
    pub call_id: CallId,
    pub candidate: Box<RawValue>,
}

/// Why an inbound frame was refused; `code` is the wire code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
        }
    }
}

/// A decoded frame: the event (or why it could not be decoded) and its `ref`.
pub struct Decoded {
    pub reference: Option<String>,
    pub event: Result<ClientEvent, WireError>,
}

/// Decodes one text frame. A frame that is not even an envelope has no `ref`.
pub fn decode(text: &str) -> Decoded {
    let frame: InFrame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            return Decoded {
                reference: None,
                event: Err(WireError::new(
                    ErrorCode::BadFrame,
                    format!("expected {{\"event\", \"data\", \"ref\"}} JSON: {e}"),
                )),
            }
        }
    };
    let data = frame.data.map(RawValue::get).unwrap_or("{}");
    fn parse<T: serde::de::DeserializeOwned>(event: &str, data: &str) -> Result<T, WireError> {
        serde_json::from_str(data)
            .map_err(|e| WireError::new(ErrorCode::InvalidData, format!("{event}: {e}")))
    }
    let event = match frame.event {
        "message:send" => parse(frame.event, data).map(ClientEvent::MessageSend),
        "message:delivered" => parse(frame.event, data).map(ClientEvent::MessageDelivered),
        "message:read" => parse(frame.event, data).map(ClientEvent::MessageRead),
        "message:edit" => parse(frame.event, data).map(ClientEvent::MessageEdit),
        "message:delete" => parse(frame.event, data).map(ClientEvent::MessageDelete),
        "message:react" => parse(frame.event, data).map(ClientEvent::MessageReact),
        "typing" => parse(frame.event, data).map(ClientEvent::Typing),
        "sync" => parse(frame.event, data).map(ClientEvent::Sync),
        "ping" => Ok(ClientEvent::Ping),
        "client:state" => parse(frame.event, data).map(ClientEvent::ClientState),
        "call:initiate" => parse(frame.event, data).map(ClientEvent::CallInitiate),
        "call:answer" => parse(frame.event, data).map(ClientEvent::CallAnswer),
        "call:reject" => parse(frame.event, data).map(ClientEvent::CallReject),
        "call:ice-candidate" => parse(frame.event, data).map(ClientEvent::CallIceCandidate),
        "call:end" => parse(frame.event, data).map(ClientEvent::CallEnd),
        other => Err(WireError::new(
            ErrorCode::UnknownEvent,
            format!("unknown event {:?}", truncate(other, 64)),
        )),
    };
    Decoded {
        reference: frame.reference,
        event,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Every event the server sends, with its data.
#[derive(Serialize)]
#[serde(tag = "event", content = "data")]
pub enum ServerEvent<'a> {
    #[serde(rename = "ack")]
    Ack(Ack<'a>),
    #[serde(rename = "error")]
    Error { code: ErrorCode, message: &'a str },
    #[serde(rename = "pong")]
    Pong {},
    #[serde(rename = "message:received")]
    MessageReceived(&'a Message),
    #[serde(rename = "message:delivered", rename_all = "camelCase")]
    MessageDelivered {
        chat_id: ChatId,
        message_ids: &'a [MessageId],
        user_id: UserId,
        at: Timestamp,
    },
    #[serde(rename = "message:read", rename_all = "camelCase")]
    MessageRead {
        chat_id: ChatId,
        message_id: MessageId,
        user_id: UserId,
        at: Timestamp,
    },
    /// The session is registered and has pushed everything undelivered.
    /// `last_change` is `None` when it could not be read (the client syncs anyway).
    #[serde(rename = "ready", rename_all = "camelCase")]
    Ready {
        user_id: UserId,
        pushed: usize,
        last_change: Option<ChangeId>,
    },
    #[serde(rename = "message:edited", rename_all = "camelCase")]
    MessageEdited {
        message: &'a Message,
        change_id: ChangeId,
    },
    #[serde(rename = "message:deleted", rename_all = "camelCase")]
    MessageDeleted {
        chat_id: ChatId,
        message_id: MessageId,
        change_id: ChangeId,
    },
    #[serde(rename = "message:reaction", rename_all = "camelCase")]
    MessageReaction {
        chat_id: ChatId,
        message_id: MessageId,
        user_id: UserId,
        emoji: &'a str,
        active: bool,
        count: u32,
        change_id: ChangeId,
    },
    #[serde(rename = "user:online", rename_all = "camelCase")]
    UserOnline { user_id: UserId },
    #[serde(rename = "user:offline", rename_all = "camelCase")]
    UserOffline {
        user_id: UserId,
        last_seen_at: Timestamp,
    },
    #[serde(rename = "user:key-changed", rename_all = "camelCase")]
    UserKeyChanged {
        user_id: UserId,
        fingerprint: &'a str,
    },
    /// A member left a group (sent to those who remain and to the leaver's sessions).
    #[serde(rename = "chat:member-left", rename_all = "camelCase")]
    ChatMemberLeft { chat_id: ChatId, user_id: UserId },
    /// A group changed (title, members, roles): the `chat` object less its per-viewer
    /// `unreadCount`, sent to every member's sessions.
    #[serde(rename = "chat:updated")]
    ChatUpdated { chat: &'a serde_json::Value },
    /// The user is no longer a member of this group (removed, or left from another
    /// session): the chat takes nothing more from them; its history up to
    /// `messageId` (the system message that recorded it) stays readable.
    #[serde(rename = "chat:removed", rename_all = "camelCase")]
    ChatRemoved {
        chat_id: ChatId,
        message_id: Option<MessageId>,
    },
    /// The user changed their own settings of a chat on another device (issue 20:
    /// muted notifications); to their own sessions only.
    #[serde(rename = "chat:settings", rename_all = "camelCase")]
    ChatSettings {
        chat_id: ChatId,
        muted: bool,
        muted_until: Option<Timestamp>,
    },
    #[serde(rename = "typing", rename_all = "camelCase")]
    Typing {
        chat_id: ChatId,
        user_id: UserId,
        active: bool,
    },
    #[serde(rename = "call:incoming", rename_all = "camelCase")]
    CallIncoming {
        call_id: &'a CallId,
        chat_id: ChatId,
        from: UserId,
        video: bool,
        sdp: &'a RawValue,
    },
    #[serde(rename = "call:answer", rename_all = "camelCase")]
    CallAnswer {
        call_id: &'a CallId,
        sdp: &'a RawValue,
    },
    #[serde(rename = "call:ice-candidate", rename_all = "camelCase")]
    CallIceCandidate {
        call_id: &'a CallId,
        candidate: &'a RawValue,
    },
    #[serde(rename = "call:busy", rename_all = "camelCase")]
    CallBusy { call_id: &'a CallId },
    #[serde(rename = "call:end", rename_all = "camelCase")]
    CallEnd {
        call_id: &'a CallId,
        reason: &'a str,
    },
}

/// What an `ack` carries.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Ack<'a> {
    Message(&'a Message),
    #[serde(rename_all = "camelCase")]
    Sync {
        count: usize,
        last_id: Option<MessageId>,
        has_more: bool,
        changes: usize,
        last_change: Option<ChangeId>,
    },
    /// `message:edit`.
    #[serde(rename_all = "camelCase")]
    Edited {
        message: &'a Message,
        change_id: ChangeId,
    },
    /// `message:delete` and `message:react`: `null` when nothing changed.
    #[serde(rename_all = "camelCase")]
    Changed {
        change_id: Option<ChangeId>,
    },
    #[serde(rename_all = "camelCase")]
    Delivered {
        count: usize,
    },
    Empty {},
}

#[derive(Serialize)]
struct OutFrame<'a> {
    #[serde(flatten)]
    event: &'a ServerEvent<'a>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
}

/// Serializes a frame once; the result is cheap to clone for fan-out.
pub fn encode(event: &ServerEvent<'_>, reference: Option<&str>) -> ByteString {
    match serde_json::to_string(&OutFrame { event, reference }) {
        Ok(s) => ByteString::from(s),
        // Every field above serializes infallibly; keep the socket alive regardless.
        Err(e) => ByteString::from(format!(
            r#"{{"event":"error","data":{{"code":"{}","message":"encoding failed: {e}"}}}}"#,
            ErrorCode::Internal
        )),
    }
}

pub fn encode_error(err: &WireError, reference: Option<&str>) -> ByteString {
    encode(
        &ServerEvent::Error {
            code: err.code,
            message: &err.message,
        },
        reference,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_events_with_their_ref() {
        let d = decode(
            r#"{"event":"message:send","ref":"1","data":{"chatId":3,"clientId":"a1","kind":"text","content":"hi"}}"#,
        );
        assert_eq!(d.reference.as_deref(), Some("1"));
        match d.event {
            Ok(ClientEvent::MessageSend(m)) => {
                assert_eq!(m.chat_id, ChatId(3));
                assert_eq!(m.content.as_deref(), Some("hi"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(r#"{"event":"ping"}"#).event,
            Ok(ClientEvent::Ping)
        ));
    }

    #[test]
    fn names_what_was_wrong() {
        for (frame, code, has_ref) in [
            ("not json", "bad_frame", false),
            (r#"{"data":{}}"#, "bad_frame", false),
            (r#"{"event":"nope","ref":"r"}"#, "unknown_event", true),
            (
                r#"{"event":"typing","ref":"r","data":{"chatId":"x","active":true}}"#,
                "invalid_data",
                true,
            ),
            (
                r#"{"event":"typing","ref":"r","data":{"active":true}}"#,
                "invalid_data",
                true,
            ),
            (r#"{"event":"sync","ref":"r"}"#, "invalid_data", true),
        ] {
            let d = decode(frame);
            assert_eq!(d.event.unwrap_err().code, code, "{frame}");
            assert_eq!(d.reference.is_some(), has_ref, "{frame}");
        }
    }

    #[test]
    fn delivered_takes_both_shapes() {
        let Ok(ClientEvent::MessageDelivered(d)) =
            decode(r#"{"event":"message:delivered","data":{"messageIds":[1,2]}}"#).event
        else {
            panic!()
        };
        assert_eq!(d.ids(), vec![MessageId(1), MessageId(2)]);
        let Ok(ClientEvent::MessageDelivered(d)) =
            decode(r#"{"event":"message:delivered","data":{"messageId":7}}"#).event
        else {
            panic!()
        };
        assert_eq!(d.ids(), vec![MessageId(7)]);
    }

    #[test]
    fn encodes_event_data_and_ref() {
        let s = encode(&ServerEvent::Pong {}, Some("9"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, serde_json::json!({"event":"pong","data":{},"ref":"9"}));
        let s = encode(
            &ServerEvent::Typing {
                chat_id: ChatId(1),
                user_id: UserId(2),
                active: true,
            },
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event":"typing","data":{"chatId":1,"userId":2,"active":true}})
        );
    }
}
