//! The frames nodes send each other (see docs/ARCHITECTURE.md, "Inter-node
//! frames"). One line of tab-separated header fields, a newline, then a body:
//!
//! | kind | header                                          | body |
//! |------|-------------------------------------------------|------|
//! | `U`  | `U\t<skip node or ->\t<skip session or 0>\t<user,user,…>\t<message id or ->` | the encoded server frame |
//! | `S`  | `S\t<session>`                                  | the encoded server frame |
//! | `E`  | `E\t<origin node>\t<session>\t<user>`           | `{"ref":…,"ev":{"<kind>":{…}}}`: the typed call event |
//! | `G`  | `G\t<origin node>\t<session>\t<user>`           | empty |
//! | `M`  | `M\t<chat>`                                     | empty: the chat's members (or a block) changed |
//!
//! `U` and `S` carry the frame exactly as the sessions write it, so a group message
//! is encoded once on the sending node and never parsed on the way. `E` carries the
//! call event as its own serde form (no client envelope to re-parse). A node of the
//! previous release sends `C` (the client's frame text) for call events and no
//! message id in `U`; both still decode.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use crate::ids::{ChatId, MessageId, SessionId, UserId};
use crate::messages::CallEvent;
use crate::protocol::{self, CallAnswer, CallIceCandidate, CallRef, ClientEvent};

/// One decoded inter-node frame.
#[derive(Debug)]
pub enum Frame {
    /// To every session of `users` on the receiving node, except `skip` (a session
    /// of the receiving node when the node matches).
    ToUsers {
        skip: Option<(String, SessionId)>,
        users: Vec<UserId>,
        message: Option<MessageId>,
        frame: ByteString,
    },
    /// To one session of the receiving node.
    ToSession {
        session: SessionId,
        frame: ByteString,
    },
    /// A call event of a session on `origin`, for the call's node.
    Call {
        origin: String,
        session: SessionId,
        user: UserId,
        reference: Option<String>,
        event: CallEvent,
    },
    /// A session on `origin` ended: the call it is in (owned here) hears of it.
    SessionGone {
        origin: String,
        session: SessionId,
        user: UserId,
    },
    /// The members of a chat changed (or a block in a direct chat): the receiving
    /// node's room for it, if one runs, loads them again at once.
    ChatChanged { chat: ChatId },
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame is not UTF-8")]
    NotUtf8,
    #[error("unknown frame kind {0:?}")]
    UnknownKind(String),
    #[error("frame {kind} needs {want} header fields, has {got}")]
    Fields {
        kind: &'static str,
        want: usize,
        got: usize,
    },
    #[error("bad number {0:?}")]
    Number(String),
    #[error("bad call event: {0}")]
    Call(String),
}

pub fn encode_to_users(
    skip: Option<(&str, SessionId)>,
    users: &[UserId],
    message: Option<MessageId>,
    frame: &str,
) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(frame.len() + 48 + users.len() * 8);
    out.push_str("U\t");
    match skip {
        Some((node, session)) => {
            let _ = write!(out, "{node}\t{session}\t");
        }
        None => out.push_str("-\t0\t"),
    }
    for (i, u) in users.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{u}");
    }
    match message {
        Some(m) => {
            let _ = writeln!(out, "\t{m}");
        }
        None => out.push_str("\t-\n"),
    }
    out.push_str(frame);
    out
}

pub fn encode_to_session(session: SessionId, frame: &str) -> String {
    format!("S\t{session}\n{frame}")
}

#[derive(Serialize)]
struct CallOut<'a> {
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    ev: EvOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum EvOut<'a> {
    Answer(&'a CallAnswer),
    Reject(&'a CallRef),
    Ice(&'a CallIceCandidate),
    End(&'a CallRef),
}

#[derive(Deserialize)]
struct CallIn {
    #[serde(rename = "ref", default)]
    reference: Option<String>,
    ev: EvIn,
}

// Externally tagged: serde reads the payload in place, which the raw SDP and ICE
// values (`RawValue`) need.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum EvIn {
    Answer(CallAnswer),
    Reject(CallRef),
    Ice(CallIceCandidate),
    End(CallRef),
}

/// A call event for the call's node; `None` for `call:initiate`, which is never
/// forwarded (the node where it is made owns the call).
pub fn encode_call(
    origin: &str,
    session: SessionId,
    user: UserId,
    reference: Option<&str>,
    event: &CallEvent,
) -> Option<String> {
    let ev = match event {
        CallEvent::Initiate(_) => return None,
        CallEvent::Answer(e) => EvOut::Answer(e),
        CallEvent::Reject(e) => EvOut::Reject(e),
        CallEvent::Ice(e) => EvOut::Ice(e),
        CallEvent::End(e) => EvOut::End(e),
    };
    let body = serde_json::to_string(&CallOut { reference, ev }).ok()?;
    Some(format!("E\t{origin}\t{session}\t{user}\n{body}"))
}

pub fn encode_session_gone(origin: &str, session: SessionId, user: UserId) -> String {
    format!("G\t{origin}\t{session}\t{user}\n")
}

pub fn encode_chat_changed(chat: ChatId) -> String {
    format!("M\t{chat}\n")
}

fn number(s: &str) -> Result<u64, CodecError> {
    s.parse::<u64>()
        .map_err(|_| CodecError::Number(s.to_string()))
}

fn fields<'a, const N: usize>(
    kind: &'static str,
    f: &[&'a str],
) -> Result<[&'a str; N], CodecError> {
    <[&str; N]>::try_from(f).map_err(|_| CodecError::Fields {
        kind,
        want: N,
        got: f.len(),
    })
}

pub fn decode(payload: &[u8]) -> Result<Frame, CodecError> {
    let text = std::str::from_utf8(payload).map_err(|_| CodecError::NotUtf8)?;
    let (head, body) = text.split_once('\n').unwrap_or((text, ""));
    let mut parts = head.split('\t');
    let kind = parts.next().unwrap_or_default();
    let rest: smallvec::SmallVec<[&str; 5]> = parts.collect();
    match kind {
        "U" => {
            // (A node of the previous release sends no message id.)
            let [skip_node, skip_session, users, message] = match rest.as_slice() {
                [a, b, c] => [*a, *b, *c, "-"],
                _ => fields::<4>("U", &rest)?,
            };
            let skip = match skip_node {
                "-" => None,
                n => Some((n.to_string(), SessionId(number(skip_session)?))),
            };
            let users = if users.is_empty() {
                Vec::new()
            } else {
                users
                    .split(',')
                    .map(|u| number(u).map(UserId))
                    .collect::<Result<_, _>>()?
            };
            let message = match message {
                "-" => None,
                m => Some(MessageId(number(m)?)),
            };
            Ok(Frame::ToUsers {
                skip,
                users,
                message,
                frame: ByteString::from(body),
            })
        }
        "S" => {
            let [session] = fields::<1>("S", &rest)?;
            Ok(Frame::ToSession {
                session: SessionId(number(session)?),
                frame: ByteString::from(body),
            })
        }
        "E" | "C" => {
            let [origin, session, user] = fields::<3>(if kind == "E" { "E" } else { "C" }, &rest)?;
            let (reference, event) = if kind == "E" {
                let c: CallIn =
                    serde_json::from_str(body).map_err(|e| CodecError::Call(e.to_string()))?;
                let event = match c.ev {
                    EvIn::Answer(e) => CallEvent::Answer(e),
                    EvIn::Reject(e) => CallEvent::Reject(e),
                    EvIn::Ice(e) => CallEvent::Ice(e),
                    EvIn::End(e) => CallEvent::End(e),
                };
                (c.reference, event)
            } else {
                legacy_call(body)?
            };
            Ok(Frame::Call {
                origin: origin.to_string(),
                session: SessionId(number(session)?),
                user: UserId(number(user)?),
                reference,
                event,
            })
        }
        "G" => {
            let [origin, session, user] = fields::<3>("G", &rest)?;
            Ok(Frame::SessionGone {
                origin: origin.to_string(),
                session: SessionId(number(session)?),
                user: UserId(number(user)?),
            })
        }
        "M" => {
            let [chat] = fields::<1>("M", &rest)?;
            Ok(Frame::ChatChanged {
                chat: ChatId(number(chat)?),
            })
        }
        other => Err(CodecError::UnknownKind(other.chars().take(16).collect())),
    }
}

/// A previous release's `C` body: the client's own frame.
fn legacy_call(body: &str) -> Result<(Option<String>, CallEvent), CodecError> {
    let decoded = protocol::decode(body);
    let event = match decoded.event {
        Ok(ClientEvent::CallAnswer(e)) => CallEvent::Answer(e),
        Ok(ClientEvent::CallReject(e)) => CallEvent::Reject(e),
        Ok(ClientEvent::CallIceCandidate(e)) => CallEvent::Ice(e),
        Ok(ClientEvent::CallEnd(e)) => CallEvent::End(e),
        Ok(_) => return Err(CodecError::Call("not a forwardable call event".into())),
        Err(e) => return Err(CodecError::Call(e.message)),
    };
    Ok((decoded.reference, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CallId;
    use serde_json::value::RawValue;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).expect("valid json")
    }

    #[test]
    fn chat_changed_round_trips_and_refuses_a_bad_id() {
        let text = encode_chat_changed(ChatId(42));
        assert!(matches!(
            decode(text.as_bytes()),
            Ok(Frame::ChatChanged { chat: ChatId(42) })
        ));
        assert!(decode(b"M\tx\n").is_err());
        assert!(decode(b"M\n").is_err());
    }

    #[test]
    fn to_users_round_trips() {
        let frame = r#"{"event":"message:received","data":{"id":7,"content":"a\tb\nc"}}"#;
        let text = encode_to_users(
            Some(("node-a", SessionId(9))),
            &[UserId(1), UserId(22)],
            Some(MessageId(7)),
            frame,
        );
        match decode(text.as_bytes()).expect("decodes") {
            Frame::ToUsers {
                skip,
                users,
                message,
                frame: f,
            } => {
                assert_eq!(skip, Some(("node-a".to_string(), SessionId(9))));
                assert_eq!(users, vec![UserId(1), UserId(22)]);
                assert_eq!(message, Some(MessageId(7)));
                assert_eq!(&*f, frame);
            }
            other => panic!("decoded as {other:?}"),
        }
        let text = encode_to_users(None, &[UserId(3)], None, "{}");
        assert_eq!(text, "U\t-\t0\t3\t-\n{}");
        match decode(text.as_bytes()).expect("decodes") {
            Frame::ToUsers { skip, message, .. } => {
                assert_eq!(skip, None);
                assert_eq!(message, None);
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn previous_release_to_users_without_message_id_decodes() {
        match decode(b"U\t-\t0\t4,5\n{\"x\":1}").expect("decodes") {
            Frame::ToUsers { users, message, .. } => {
                assert_eq!(users, vec![UserId(4), UserId(5)]);
                assert_eq!(message, None);
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn to_session_round_trips() {
        let text = encode_to_session(SessionId(42), "{\"event\":\"call:answer\"}");
        match decode(text.as_bytes()).expect("decodes") {
            Frame::ToSession { session, frame } => {
                assert_eq!(session, SessionId(42));
                assert_eq!(&*frame, "{\"event\":\"call:answer\"}");
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn call_events_round_trip_typed() {
        let call_id = CallId("c-1".into());
        let events = [
            CallEvent::Answer(CallAnswer {
                call_id: call_id.clone(),
                sdp: raw(r#"{"type":"answer","sdp":"v=0\r\n"}"#),
            }),
            CallEvent::Reject(CallRef {
                call_id: call_id.clone(),
            }),
            CallEvent::Ice(CallIceCandidate {
                call_id: call_id.clone(),
                candidate: raw(r#"{"candidate":"a=1","sdpMid":"0"}"#),
            }),
            CallEvent::End(CallRef {
                call_id: call_id.clone(),
            }),
        ];
        for (i, ev) in events.iter().enumerate() {
            let reference = (i % 2 == 0).then_some("r1");
            let text =
                encode_call("node-b", SessionId(5), UserId(8), reference, ev).expect("forwardable");
            match decode(text.as_bytes()).expect("decodes") {
                Frame::Call {
                    origin,
                    session,
                    user,
                    reference: r,
                    event,
                } => {
                    assert_eq!(origin, "node-b");
                    assert_eq!(session, SessionId(5));
                    assert_eq!(user, UserId(8));
                    assert_eq!(r.as_deref(), reference);
                    assert_eq!(format!("{event:?}"), format!("{ev:?}"));
                }
                other => panic!("decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn previous_release_call_frame_decodes() {
        let body = r#"{"event":"call:end","data":{"callId":"c-9"},"ref":"x"}"#;
        let text = format!("C\tnode-z\t3\t4\n{body}");
        match decode(text.as_bytes()).expect("decodes") {
            Frame::Call {
                reference, event, ..
            } => {
                assert_eq!(reference.as_deref(), Some("x"));
                assert!(matches!(event, CallEvent::End(CallRef { call_id }) if call_id.0 == "c-9"));
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn session_gone_round_trips() {
        let text = encode_session_gone("node-c", SessionId(11), UserId(12));
        match decode(text.as_bytes()).expect("decodes") {
            Frame::SessionGone {
                origin,
                session,
                user,
            } => {
                assert_eq!(
                    (origin.as_str(), session, user),
                    ("node-c", SessionId(11), UserId(12))
                );
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let bad: &[&[u8]] = &[
            b"",
            b"\n",
            b"\xff\xfe",
            b"X\t1\n{}",
            b"U\n{}",
            b"U\t-\t0\n",
            b"U\tn\tnotanumber\t1\t-\n{}",
            b"U\t-\t0\t1,x\t-\n{}",
            b"U\t-\t0\t1\t99999999999999999999999\n{}",
            b"S\n{}",
            b"S\t-1\n{}",
            b"S\t1\t2\n{}",
            b"E\tn\t1\n{}",
            b"E\tn\t1\t2\n",
            b"E\tn\t1\t2\n{\"ev\":{\"initiate\":{}}}",
            b"E\tn\t1\t2\n{\"ev\":{\"end\":{\"callId\":\"c\",\"extra\":1}}}",
            b"C\tn\t1\t2\n{\"event\":\"message:send\",\"data\":{}}",
            b"G\tn\t1\n",
            b"G\tn\tx\t2\n",
        ];
        for b in bad {
            assert!(
                decode(b).is_err(),
                "{:?} decoded",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn initiate_is_never_forwarded() {
        let init: crate::protocol::CallInitiate = serde_json::from_str(
            r#"{"callId":"c","toUserId":2,"video":false,"sdp":{"type":"offer"}}"#,
        )
        .expect("valid initiate");
        assert!(encode_call(
            "n",
            SessionId(1),
            UserId(1),
            None,
            &CallEvent::Initiate(init)
        )
        .is_none());
    }
}
