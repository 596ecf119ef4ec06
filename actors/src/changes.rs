//! Edits, deletes for everyone and reactions: the changes to stored messages. Each
//! runs detached from the session that asked (like receipts: a change sent just
//! before closing still lands), off the send path (no room, no writer lane: a
//! reaction never waits behind, or delays, a chat's messages). The order is the
//! same as for a message: checked, stored with its `changeId`, then acknowledged and
//! fanned out to every session of every member on every node.

use std::sync::Arc;

use bytestring::ByteString;

use crate::directory::{Deliver, SessionHandle};
use crate::e2ee;
use crate::error_code::ErrorCode;
use crate::ids::MessageId;
use crate::ids::UserId;
use crate::protocol::{self, Ack, EditMessage, MessageRef, React, ServerEvent, WireError};
use crate::room::MAX_TEXT_CHARS;
use crate::store::{
    Change, ChangeKind, ChangeTarget, Edit, EditBody, MessageKind, ReactOutcome, StoreError,
};
use crate::time::Timestamp;
use crate::Shared;

/// Most distinct emoji one user may put on one message.
pub const MAX_REACTIONS_PER_USER: u32 = 8;
/// Longest emoji accepted, in UTF-8 bytes (the longest family and flag sequences fit).
pub const MAX_EMOJI_BYTES: usize = 32;

/// A change request as the session received it.
pub enum ChangeRequest {
    Edit(EditMessage),
    Delete(MessageRef),
    React(React),
}

impl ChangeRequest {
    fn message_id(&self) -> MessageId {
        match self {
            ChangeRequest::Edit(e) => e.message_id,
            ChangeRequest::Delete(d) => d.message_id,
            ChangeRequest::React(r) => r.message_id,
        }
    }
}

/// Runs `request` for `me` in a task of its own and answers it (an `ack` or an
/// `error`, carrying `reference`).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    me: SessionHandle,
    request: ChangeRequest,
    reference: Option<String>,
) {
    // Counted like a message in flight, so a graceful shutdown waits for it.
    shared
        .in_flight
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    actix::spawn(async move {
        let reply = match run(&shared, &me, request, reference.as_deref()).await {
            Ok(ack) => ack,
            Err(e) => protocol::encode_error(&e, reference.as_deref()),
        };
        me.deliver(Deliver::frame(reply));
        shared.post_answered();
    });
}

/// Decides, stores and fans out one change; the `ack` for the caller.
async fn run(
    shared: &Shared,
    me: &SessionHandle,
    request: ChangeRequest,
    reference: Option<&str>,
) -> Result<ByteString, WireError> {
    if let ChangeRequest::React(r) = &request {
        check_emoji(&r.emoji)?;
    }
    let store = &shared.store;
    let target = store
        .change_target(me.user, request.message_id())
        .await
        .map_err(|e| store_error(&e, "change"))?
        .ok_or_else(not_found)?;
    if target.kind == MessageKind::System {
        // A group's record of its own changes: nobody rewrites it.
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "a system message cannot be edited, deleted or reacted to",
        ));
    }
    let members = &target.members.members;
    let chat_id = target.members.chat;
    let changed = |change| ack(Ack::Changed { change_id: change }, reference);
    match request {
        ChangeRequest::Edit(edit) => {
            let edit = check_edit(
                edit,
                me.user,
                &target,
                shared.settings.edit_window,
                Timestamp::now(),
            )?;
            let (message, change_id) = store
                .edit_message(&edit)
                .await
                .map_err(|e| store_error(&e, "edit"))?
                .ok_or_else(deleted)?;
            let reply = ack(
                Ack::Edited {
                    message: &message,
                    change_id,
                },
                reference,
            );
            let change = Change {
                id: change_id,
                chat_id,
                message_id: message.id,
                what: ChangeKind::Edited(Box::new(message)),
            };
            shared
                .bus
                .to_users(members, &Deliver::frame(change_frame(&change)), Some(me));
            Ok(reply)
        }
        ChangeRequest::Delete(d) => {
            // A group's owner and admins moderate it: they delete anyone's message
            // for everyone (the store checks the role again, in its transaction).
            if target.sender_id != me.user && !target.members.admins.contains(&me.user) {
                return Err(WireError::new(
                    ErrorCode::Forbidden,
                    "only its sender or a group admin can delete a message",
                ));
            }
            if target.deleted {
                return Ok(changed(None));
            }
            let Some(change_id) = store
                .delete_message(me.user, d.message_id)
                .await
                .map_err(|e| store_error(&e, "delete"))?
            else {
                return Ok(changed(None));
            };
            let change = Change {
                id: change_id,
                chat_id,
                message_id: d.message_id,
                what: ChangeKind::Deleted,
            };
            shared
                .bus
                .to_users(members, &Deliver::frame(change_frame(&change)), Some(me));
            Ok(changed(Some(change_id)))
        }
        ChangeRequest::React(r) => {
            if target.deleted {
                return Err(deleted());
            }
            let outcome = store
                .react(
                    me.user,
                    r.message_id,
                    &r.emoji,
                    r.active,
                    MAX_REACTIONS_PER_USER,
                )
                .await
                .map_err(|e| store_error(&e, "reaction"))?;
            match outcome {
                ReactOutcome::Changed { change, count } => {
                    let c = Change {
                        id: change,
                        chat_id,
                        message_id: r.message_id,
                        what: ChangeKind::Reaction {
                            user: me.user,
                            emoji: r.emoji,
                            active: r.active,
                            count,
                        },
                    };
                    shared
                        .bus
                        .to_users(members, &Deliver::frame(change_frame(&c)), Some(me));
                    Ok(changed(Some(change)))
                }
                ReactOutcome::Unchanged => Ok(changed(None)),
                ReactOutcome::TooMany => Err(WireError::new(
                    ErrorCode::TooManyReactions,
                    format!(
                        "at most {MAX_REACTIONS_PER_USER} different reactions of yours per message"
                    ),
                )),
                ReactOutcome::Deleted => Err(deleted()),
            }
        }
    }
}

fn ack(ack: Ack<'_>, reference: Option<&str>) -> ByteString {
    protocol::encode(&ServerEvent::Ack(ack), reference)
}

fn deleted() -> WireError {
    WireError::new(ErrorCode::MessageDeleted, "the message was deleted")
}

/// Why a change to a message is refused when it is not in the caller's chats.
fn not_found() -> WireError {
    WireError::new(ErrorCode::Forbidden, "no such message in a chat of yours")
}

fn store_error(e: &StoreError, what: &str) -> WireError {
    match e {
        StoreError::Unavailable { .. } => WireError::new(
            ErrorCode::Unavailable,
            format!("the {what} could not be stored; retry"),
        ),
        StoreError::Other { .. } => {
            tracing::error!(error = %e.chain(), "storing a {what}");
            WireError::new(
                ErrorCode::Internal,
                format!("the {what} could not be stored"),
            )
        }
    }
}

/// Checks an edit against its target and the edit window.
pub fn check_edit(
    edit: EditMessage,
    editor: UserId,
    target: &ChangeTarget,
    window: std::time::Duration,
    now: Timestamp,
) -> Result<Edit, WireError> {
    if target.sender_id != editor {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "only its sender can edit a message",
        ));
    }
    if target.kind != MessageKind::Text {
        return Err(WireError::new(
            ErrorCode::InvalidData,
            "only text messages can be edited",
        ));
    }
    if target.deleted {
        return Err(WireError::new(
            ErrorCode::MessageDeleted,
            "the message was deleted",
        ));
    }
    let age = now.0.signed_duration_since(target.created_at.0);
    if age.num_milliseconds() > window.as_millis() as i64 {
        return Err(WireError::new(
            ErrorCode::EditWindowClosed,
            format!(
                "messages can be edited for {} seconds after sending",
                window.as_secs()
            ),
        ));
    }
    let body = match (target.encrypted, edit.content, edit.e2ee) {
        (false, Some(content), None) => {
            if content.trim().is_empty() {
                return Err(WireError::new(
                    ErrorCode::InvalidData,
                    "content must not be empty",
                ));
            }
            if content.chars().count() > MAX_TEXT_CHARS {
                return Err(WireError::new(
                    ErrorCode::TooLarge,
                    format!("content is longer than {MAX_TEXT_CHARS} characters"),
                ));
            }
            EditBody::Text(content)
        }
        (true, None, Some(env)) => {
            e2ee::check_envelope(env.get(), &target.members.members)?;
            EditBody::Envelope(env)
        }
        (false, _, _) => {
            return Err(WireError::new(
                ErrorCode::InvalidData,
                "a plaintext message is edited with content (and no e2ee)",
            ))
        }
        (true, _, _) => {
            return Err(WireError::new(
                ErrorCode::InvalidData,
                "an encrypted message is edited with a new e2ee envelope (and no content)",
            ))
        }
    };
    Ok(Edit {
        message: edit.message_id,
        editor,
        body,
    })
}

/// Whether `emoji` is one emoji of the Unicode set (skin tones included) of at most
/// [`MAX_EMOJI_BYTES`].
pub fn check_emoji(emoji: &str) -> Result<(), WireError> {
    if emoji.len() > MAX_EMOJI_BYTES || emojis::get(emoji).is_none() {
        return Err(WireError::new(
            ErrorCode::InvalidData,
            "emoji must be a single emoji",
        ));
    }
    Ok(())
}

/// The event that tells of `change` (live and in a `sync` replay alike).
pub fn change_frame(change: &Change) -> ByteString {
    let event = match &change.what {
        ChangeKind::Edited(message) => ServerEvent::MessageEdited {
            message,
            change_id: change.id,
        },
        ChangeKind::Deleted => ServerEvent::MessageDeleted {
            chat_id: change.chat_id,
            message_id: change.message_id,
            change_id: change.id,
        },
        ChangeKind::Reaction {
            user,
            emoji,
            active,
            count,
        } => ServerEvent::MessageReaction {
            chat_id: change.chat_id,
            message_id: change.message_id,
            user_id: *user,
            emoji,
            active: *active,
            count: *count,
            change_id: change.id,
        },
    };
    protocol::encode(&event, None)
}
