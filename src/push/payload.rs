//! What a notification says: the JSON the service worker receives (PROTOCOL.md,
//! "Web Push"), built from an offer and the chat's names. An encrypted message's
//! offer carries no preview, so its body is always the generic "New message".

use parley_actors::push::PushEvent;
use serde::Serialize;

use crate::db::push::PushChat;
use crate::routes::DELETED_ACCOUNT;

/// The body of a message push without content.
pub const GENERIC_MESSAGE: &str = "New message";
/// The body of a call push.
pub const INCOMING_CALL: &str = "Incoming call";
/// A preview longer than this is cut (a push payload is at most 4 KiB).
const PREVIEW_CHARS: usize = 200;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub chat_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    pub title: String,
    pub body: String,
}

/// "ann" for a direct chat, "ann in Book club" for a group.
pub fn title(chat: &PushChat) -> String {
    let sender = chat.sender.as_deref().unwrap_or(DELETED_ACCOUNT);
    match (&chat.title, chat.group) {
        (Some(t), true) if !t.is_empty() => format!("{sender} in {t}"),
        _ => sender.to_owned(),
    }
}

/// The payload of `event`; `include_content` is `push.include_content`.
pub fn build(event: &PushEvent, chat: &PushChat, include_content: bool) -> Payload {
    match event {
        PushEvent::Message {
            chat: id,
            message,
            preview,
            ..
        } => Payload {
            kind: "message",
            chat_id: id.0,
            message_id: Some(message.0),
            call_id: None,
            title: title(chat),
            body: match preview {
                Some(text) if include_content && !text.trim().is_empty() => cut(text),
                _ => GENERIC_MESSAGE.to_owned(),
            },
        },
        PushEvent::Call { chat: id, call, .. } => Payload {
            kind: "call",
            chat_id: id.0,
            message_id: None,
            call_id: Some(call.to_string()),
            title: title(chat),
            body: INCOMING_CALL.to_owned(),
        },
    }
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parley_actors::{ChatId, MessageId, UserId};

    use super::*;

    fn group() -> PushChat {
        PushChat {
            group: true,
            title: Some("Book club".into()),
            sender: Some("ann".into()),
        }
    }

    fn message(preview: Option<&str>) -> PushEvent {
        PushEvent::Message {
            chat: ChatId(7),
            message: MessageId(9),
            sender: UserId(1),
            preview: preview.map(Arc::from),
        }
    }

    #[test]
    fn titles_and_bodies() {
        let p = build(&message(Some("hi")), &group(), true);
        assert_eq!(p.title, "ann in Book club");
        assert_eq!(p.body, "hi");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "message", "chatId": 7, "messageId": 9,
                "title": "ann in Book club", "body": "hi"})
        );
        assert_eq!(
            build(&message(Some("hi")), &group(), false).body,
            GENERIC_MESSAGE
        );
        // An encrypted message has no preview: never content.
        assert_eq!(build(&message(None), &group(), true).body, GENERIC_MESSAGE);
        let direct = PushChat {
            group: false,
            title: None,
            sender: None,
        };
        assert_eq!(build(&message(None), &direct, true).title, DELETED_ACCOUNT);
        let long = "é".repeat(500);
        assert_eq!(
            build(&message(Some(&long)), &direct, true)
                .body
                .chars()
                .count(),
            201
        );
    }
}
