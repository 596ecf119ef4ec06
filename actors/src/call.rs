//! Calls: one actor per call, ringing → active → ended, and a `CallDirectory` that
//! knows which calls exist and who is busy. Signalling (SDP, ICE) is relayed
//! opaquely and only between the caller's session and the callee's answering
//! session; anyone else gets `forbidden` and nothing is relayed. Every ended call
//! leaves a `call` message in its chat so the history shows it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use serde_json::value::RawValue;

use crate::asap::{asap, detach};
use crate::cluster::Reservation;
use crate::directory::{Deliver, SessionHandle};
use crate::error_code::ErrorCode;
use crate::ids::{CallId, ChatId, UserId};
pub use crate::messages::{CallEvent, FromSession, SessionGone};
use crate::protocol::{self, Ack, CallInitiate, ServerEvent, WireError};
use crate::push::{PushEvent, PushOffer};
use crate::shared::Shared;
use crate::store::{CallRecord, ChatKind};
use crate::time::Timestamp;

/// A call has ended; the directory forgets it and its parties are free again.
#[derive(Message)]
#[rtype(result = "()")]
struct CallFinished {
    call_id: CallId,
    parties: [UserId; 2],
}

/// The caller and callee were resolved for a new call.
#[derive(Message)]
#[rtype(result = "()")]
struct Resolved {
    session: SessionHandle,
    reference: Option<String>,
    initiate: CallInitiate,
    target: Result<(ChatId, UserId), WireError>,
}

fn reply(session: &SessionHandle, reference: Option<&str>, result: Result<(), WireError>) {
    let frame = match result {
        Ok(()) if reference.is_none() => return,
        Ok(()) => protocol::encode(&ServerEvent::Ack(Ack::Empty {}), reference),
        Err(e) => protocol::encode_error(&e, reference),
    };
    session.deliver(Deliver::frame(frame));
}

fn check_call_id(id: &CallId) -> Result<(), WireError> {
    let ok = !id.0.is_empty()
        && id.0.len() <= 64
        && id
            .0
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then_some(()).ok_or_else(|| {
        WireError::new(
            ErrorCode::InvalidData,
            "callId must be 1 to 64 characters of A-Z a-z 0-9 - _",
        )
    })
}

pub struct CallDirectory {
    shared: Arc<Shared>,
    calls: HashMap<CallId, Addr<Call>>,
    busy: HashMap<UserId, CallId>,
}

impl CallDirectory {
    pub fn new(shared: Arc<Shared>) -> CallDirectory {
        CallDirectory {
            shared,
            calls: HashMap::new(),
            busy: HashMap::new(),
        }
    }

    fn too_large(&self, raw: &RawValue) -> Result<(), WireError> {
        let max = self.shared.settings.signal_max_bytes;
        if raw.get().len() > max {
            return Err(WireError::new(
                ErrorCode::TooLarge,
                format!("signalling data is limited to {max} bytes"),
            ));
        }
        Ok(())
    }
}

impl Actor for CallDirectory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16 * 1024);
    }
}

impl Handler<FromSession> for CallDirectory {
    type Result = ();

    fn handle(&mut self, msg: FromSession, ctx: &mut Context<Self>) {
        let FromSession {
            session,
            reference,
            event,
        } = msg;
        if let Err(e) = check_call_id(event.call_id()) {
            return reply(&session, reference.as_deref(), Err(e));
        }
        let size = match &event {
            CallEvent::Initiate(e) => self.too_large(&e.sdp),
            CallEvent::Answer(e) => self.too_large(&e.sdp),
            CallEvent::Ice(e) => self.too_large(&e.candidate),
            CallEvent::Reject(_) | CallEvent::End(_) => Ok(()),
        };
        if let Err(e) = size {
            return reply(&session, reference.as_deref(), Err(e));
        }
        match event {
            CallEvent::Initiate(initiate) => {
                if self.calls.contains_key(&initiate.call_id) {
                    let e = WireError::new(ErrorCode::Conflict, "a call with this callId exists");
                    return reply(&session, reference.as_deref(), Err(e));
                }
                let store = self.shared.store.clone();
                let cluster = self.shared.bus.cluster().clone();
                let caller = session.user;
                let (chat, to) = (initiate.chat_id, initiate.to_user_id);
                let call_id = initiate.call_id.clone();
                ctx.spawn(
                    async move {
                        let target = resolve_target(store, caller, chat, to).await?;
                        // Busy holds across nodes: both parties are reserved at once.
                        match cluster.reserve_call(&call_id, caller, target.1).await {
                            Ok(Reservation::Reserved) => {}
                            Ok(Reservation::CallerBusy) => return Err(WireError::new(ErrorCode::Busy, "you are already in a call")),
                            Ok(Reservation::CalleeBusy) => return Err(WireError::new(ErrorCode::CalleeBusy, "the person you called is in another call")),
                            Err(e) => tracing::warn!(error = %e, "call reservation in the cluster failed; checking this node only"),
                        }
                        Ok(target)
                    }
                    .into_actor(self)
                        .map(move |target, _, ctx| {
                            ctx.notify(Resolved {
                                session,
                                reference,
                                initiate,
                                target,
                            })
                        }),
                );
            }
            other => match self.calls.get(other.call_id()) {
                Some(call) => call.do_send(FromSession {
                    session,
                    reference,
                    event: other,
                }),
                // Not here: it may live on another node (never asked for a session
                // of another node: its node asked already, and found it here).
                None if session.is_local() => {
                    let cluster = self.shared.bus.cluster().clone();
                    let id = other.call_id().clone();
                    let owner = async move { cluster.call_node(&id).await };
                    asap(self, ctx, owner, move |this, owner, _| match owner {
                        Some(node) => this.shared.bus.cluster().forward_call(
                            &node,
                            &session,
                            reference.as_deref(),
                            &other,
                        ),
                        None => not_a_party(&session, reference.as_deref()),
                    });
                }
                None => not_a_party(&session, reference.as_deref()),
            },
        }
    }
}

fn not_a_party(session: &SessionHandle, reference: Option<&str>) {
    let e = WireError::new(ErrorCode::Forbidden, "you are not a party to this call");
    reply(session, reference, Err(e));
}

/// The direct chat and the callee for `call:initiate`, or why there is none.
async fn resolve_target(
    store: Arc<dyn crate::store::Store>,
    caller: UserId,
    chat: Option<ChatId>,
    to: Option<UserId>,
) -> Result<(ChatId, UserId), WireError> {
    let unavailable = |_| WireError::new(ErrorCode::Unavailable, "storage is not answering; retry");
    let forbidden = || {
        WireError::new(
            ErrorCode::Forbidden,
            "you can only call someone you share a direct chat with",
        )
    };
    match (chat, to) {
        (Some(chat), _) => {
            let members = store.chat_members(chat).await.map_err(unavailable)?;
            let members = members.ok_or_else(forbidden)?;
            // A block either way: the same answer as a stranger's chat.
            if !members.members.contains(&caller) || members.blocked {
                return Err(forbidden());
            }
            if members.kind != ChatKind::Direct {
                return Err(WireError::new(
                    ErrorCode::InvalidData,
                    "calls are 1:1: use a direct chat",
                ));
            }
            let callee = members
                .members
                .iter()
                .copied()
                .find(|&m| m != caller)
                .ok_or_else(forbidden)?;
            match to {
                Some(t) if t != callee => Err(WireError::new(
                    ErrorCode::InvalidData,
                    "toUserId is not in this chat",
                )),
                _ => Ok((chat, callee)),
            }
        }
        (None, Some(callee)) if callee != caller => {
            let chat = store
                .direct_chat(caller, callee)
                .await
                .map_err(unavailable)?;
            let chat = chat.ok_or_else(forbidden)?;
            let members = store.chat_members(chat).await.map_err(unavailable)?;
            if members.is_none_or(|m| m.blocked) {
                return Err(forbidden());
            }
            Ok((chat, callee))
        }
        (None, Some(_)) => Err(WireError::new(
            ErrorCode::InvalidData,
            "you cannot call yourself",
        )),
        (None, None) => Err(WireError::new(
            ErrorCode::InvalidData,
            "call:initiate needs chatId or toUserId",
        )),
    }
}

impl Handler<Resolved> for CallDirectory {
    type Result = ();

    fn handle(&mut self, msg: Resolved, ctx: &mut Context<Self>) {
        let Resolved {
            session,
            reference,
            initiate,
            target,
        } = msg;
        let (chat, callee) = match target {
            Ok(t) => t,
            Err(e) => {
                if e.code == ErrorCode::CalleeBusy {
                    session.deliver(Deliver::frame(protocol::encode(
                        &ServerEvent::CallBusy {
                            call_id: &initiate.call_id,
                        },
                        None,
                    )));
                }
                return reply(&session, reference.as_deref(), Err(e));
            }
        };
        let refused = self.calls.contains_key(&initiate.call_id)
            || self.busy.contains_key(&session.user)
            || self.busy.contains_key(&callee);
        if refused {
            // The cluster reserved both for this call an instant ago (it raced
            // another call of theirs, or one with the same id): free them there
            // again, or they would stay busy for everyone.
            let c = self.shared.bus.cluster().clone();
            let (id, parties) = (initiate.call_id.clone(), [session.user, callee]);
            detach(async move { c.release_call(&id, parties).await });
        }
        if self.calls.contains_key(&initiate.call_id) {
            let e = WireError::new(ErrorCode::Conflict, "a call with this callId exists");
            return reply(&session, reference.as_deref(), Err(e));
        }
        if self.busy.contains_key(&session.user) {
            let e = WireError::new(ErrorCode::Busy, "you are already in a call");
            return reply(&session, reference.as_deref(), Err(e));
        }
        if self.busy.contains_key(&callee) {
            session.deliver(Deliver::frame(protocol::encode(
                &ServerEvent::CallBusy {
                    call_id: &initiate.call_id,
                },
                None,
            )));
            let e = WireError::new(
                ErrorCode::CalleeBusy,
                "the person you called is in another call",
            );
            return reply(&session, reference.as_deref(), Err(e));
        }
        let call_id = initiate.call_id.clone();
        let incoming = Deliver::frame(protocol::encode(
            &ServerEvent::CallIncoming {
                call_id: &call_id,
                chat_id: chat,
                from: session.user,
                video: initiate.video,
                sdp: &initiate.sdp,
            },
            None,
        ));
        let call = Call {
            shared: self.shared.clone(),
            directory: ctx.address(),
            call_id: call_id.clone(),
            chat,
            caller: session.clone(),
            callee,
            callee_session: None,
            video: initiate.video,
            state: CallState::Ringing,
            held_candidates: Vec::new(),
            started_at: Timestamp::now(),
            answered_at: None,
        };
        let addr = call.start();
        self.busy.insert(session.user, call_id.clone());
        self.busy.insert(callee, call_id.clone());
        self.calls.insert(call_id.clone(), addr);
        self.shared.bus.to_user(callee, &incoming, None);
        // Web Push: a callee with no visible session here may still be notified
        // (the engine asks the other nodes).
        if self.shared.push.attached() && !self.shared.bus.directory().has_visible_session(callee) {
            self.shared.push.offer(PushOffer {
                users: smallvec::smallvec![callee],
                event: PushEvent::Call {
                    chat,
                    call: call_id,
                    caller: session.user,
                },
            });
        }
        reply(&session, reference.as_deref(), Ok(()));
    }
}

impl Handler<SessionGone> for CallDirectory {
    type Result = ();

    fn handle(&mut self, msg: SessionGone, ctx: &mut Context<Self>) {
        if let Some(call) = self.busy.get(&msg.user).and_then(|id| self.calls.get(id)) {
            return call.do_send(msg);
        }
        if msg.node.is_some() {
            return;
        }
        // A session of this node whose user's call may live on another node.
        let cluster = self.shared.bus.cluster().clone();
        let user = msg.user;
        let owner = async move { cluster.busy_call_node(user).await };
        asap(self, ctx, owner, move |this, owner, _| {
            if let Some(node) = owner {
                this.shared
                    .bus
                    .cluster()
                    .session_gone(&node, msg.user, msg.session);
            }
        });
    }
}

impl Handler<CallFinished> for CallDirectory {
    type Result = ();

    fn handle(&mut self, msg: CallFinished, _: &mut Context<Self>) {
        self.calls.remove(&msg.call_id);
        for u in msg.parties {
            if self.busy.get(&u) == Some(&msg.call_id) {
                self.busy.remove(&u);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Ringing,
    Active,
    Ended,
}

pub struct Call {
    shared: Arc<Shared>,
    directory: Addr<CallDirectory>,
    call_id: CallId,
    chat: ChatId,
    caller: SessionHandle,
    callee: UserId,
    callee_session: Option<SessionHandle>,
    video: bool,
    state: CallState,
    /// The caller's candidates sent before the answer, delivered in order after it.
    held_candidates: Vec<Box<RawValue>>,
    started_at: Timestamp,
    answered_at: Option<Timestamp>,
}

impl Call {
    fn frame(&self, event: &ServerEvent<'_>) -> Deliver {
        Deliver::frame(protocol::encode(event, None))
    }

    /// Ends the call once: both sides hear `reason`, the history gets its message.
    fn end(&mut self, reason: &str, ctx: &mut Context<Self>) {
        if self.state == CallState::Ended {
            return;
        }
        self.state = CallState::Ended;
        let d = self.frame(&ServerEvent::CallEnd {
            call_id: &self.call_id,
            reason,
        });
        self.caller.deliver(d.clone());
        match &self.callee_session {
            Some(s) => s.deliver(d),
            None => self.shared.bus.to_user(self.callee, &d, None),
        }
        self.directory.do_send(CallFinished {
            call_id: self.call_id.clone(),
            parties: [self.caller.user, self.callee],
        });
        let c = self.shared.bus.cluster().clone();
        let (id, parties) = (self.call_id.clone(), [self.caller.user, self.callee]);
        detach(async move { c.release_call(&id, parties).await });
        let record = CallRecord {
            call_id: self.call_id.clone(),
            chat_id: self.chat,
            caller: self.caller.user,
            callee: self.callee,
            video: self.video,
            started_at: self.started_at,
            answered_at: self.answered_at,
            ended_at: Timestamp::now(),
            reason: reason.to_string(),
        };
        let shared = self.shared.clone();
        let members = [self.caller.user, self.callee];
        ctx.wait(
            async move {
                match shared.store.record_call(&record).await {
                    Ok(Some(m)) => {
                        let d = Deliver {
                            frame: protocol::encode(&ServerEvent::MessageReceived(&m), None),
                            message: Some(m.id),
                        };
                        shared.bus.to_users(&members, &d, None);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(call = %record.call_id, error = %e.chain(), "recording a call")
                    }
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        );
    }

    fn is_caller(&self, s: &SessionHandle) -> bool {
        s.same(&self.caller)
    }

    fn is_answering_callee(&self, s: &SessionHandle) -> bool {
        self.callee_session.as_ref().is_some_and(|c| c.same(s))
    }
}

impl Actor for Call {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let ring = self.shared.settings.ring_timeout;
        ctx.run_later(ring, |call, ctx| {
            if call.state == CallState::Ringing {
                call.end("timeout", ctx);
            }
        });
    }
}

impl Handler<FromSession> for Call {
    type Result = ();

    fn handle(&mut self, msg: FromSession, ctx: &mut Context<Self>) {
        let FromSession {
            session: s,
            reference,
            event,
        } = msg;
        let r = reference.as_deref();
        let forbidden = || {
            Err(WireError::new(
                ErrorCode::Forbidden,
                "you are not a party to this call",
            ))
        };
        if self.state == CallState::Ended {
            return reply(
                &s,
                r,
                Err(WireError::new(
                    ErrorCode::Forbidden,
                    "you are not a party to this call",
                )),
            );
        }
        let result = match event {
            CallEvent::Initiate(_) => Err(WireError::new(
                ErrorCode::Conflict,
                "a call with this callId exists",
            )),
            CallEvent::Answer(a) => {
                if s.user != self.callee {
                    forbidden()
                } else if self.state != CallState::Ringing {
                    Err(WireError::new(
                        ErrorCode::Conflict,
                        "the call was already answered",
                    ))
                } else {
                    self.state = CallState::Active;
                    self.answered_at = Some(Timestamp::now());
                    self.callee_session = Some(s.clone());
                    self.caller.deliver(self.frame(&ServerEvent::CallAnswer {
                        call_id: &self.call_id,
                        sdp: &a.sdp,
                    }));
                    let elsewhere = self.frame(&ServerEvent::CallEnd {
                        call_id: &self.call_id,
                        reason: "answered_elsewhere",
                    });
                    self.shared.bus.to_user(self.callee, &elsewhere, Some(&s));
                    for c in std::mem::take(&mut self.held_candidates) {
                        s.deliver(self.frame(&ServerEvent::CallIceCandidate {
                            call_id: &self.call_id,
                            candidate: &c,
                        }));
                    }
                    Ok(())
                }
            }
            CallEvent::Reject(_) => {
                if s.user != self.callee || self.state != CallState::Ringing {
                    forbidden()
                } else {
                    self.end("rejected", ctx);
                    Ok(())
                }
            }
            CallEvent::Ice(ice) => {
                if self.is_caller(&s) {
                    match &self.callee_session {
                        Some(callee) => {
                            callee.deliver(self.frame(&ServerEvent::CallIceCandidate {
                                call_id: &self.call_id,
                                candidate: &ice.candidate,
                            }))
                        }
                        None => self.held_candidates.push(ice.candidate),
                    }
                    Ok(())
                } else if self.is_answering_callee(&s) {
                    self.caller
                        .deliver(self.frame(&ServerEvent::CallIceCandidate {
                            call_id: &self.call_id,
                            candidate: &ice.candidate,
                        }));
                    Ok(())
                } else {
                    forbidden()
                }
            }
            CallEvent::End(_) => {
                if self.is_caller(&s) {
                    let reason = if self.state == CallState::Ringing {
                        "cancelled"
                    } else {
                        "ended"
                    };
                    self.end(reason, ctx);
                    Ok(())
                } else if self.is_answering_callee(&s) {
                    self.end("ended", ctx);
                    Ok(())
                } else if s.user == self.callee && self.state == CallState::Ringing {
                    self.end("rejected", ctx);
                    Ok(())
                } else {
                    forbidden()
                }
            }
        };
        reply(&s, r, result);
    }
}

impl Handler<SessionGone> for Call {
    type Result = ();

    fn handle(&mut self, msg: SessionGone, ctx: &mut Context<Self>) {
        let gone = |h: &SessionHandle| h.id == msg.session && h.node() == msg.node.as_ref();
        let callee_left = self.callee_session.as_ref().is_some_and(gone);
        if gone(&self.caller) || callee_left {
            self.end("disconnected", ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::protocol::{CallAnswer, CallIceCandidate, CallRef};
    use crate::testing::{self, Fake, Frame, MemoryStore, Op};

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CAT: UserId = UserId(3);
    const DAVE: UserId = UserId(4);
    const ANN_BOB: ChatId = ChatId(10);
    const GROUP: ChatId = ChatId(20);

    struct Fixture {
        store: Arc<MemoryStore>,
        shared: Arc<Shared>,
        calls: Addr<CallDirectory>,
    }

    /// Ann, bob and cat, each pair with a direct chat, and a group of the three;
    /// dave shares nothing with anyone.
    fn fixture(ring_timeout: Duration) -> Fixture {
        let store = MemoryStore::new();
        store.add_chat(ANN_BOB, ChatKind::Direct, &[ANN, BOB]);
        store.add_chat(ChatId(11), ChatKind::Direct, &[ANN, CAT]);
        store.add_chat(ChatId(12), ChatKind::Direct, &[BOB, CAT]);
        store.add_chat(GROUP, ChatKind::Group, &[ANN, BOB, CAT]);
        let mut settings = testing::settings();
        settings.ring_timeout = ring_timeout;
        settings.signal_max_bytes = 256;
        let shared = testing::shared(store.clone(), settings);
        let calls = CallDirectory::new(shared.clone()).start();
        Fixture {
            store,
            shared,
            calls,
        }
    }

    /// Long enough never to ring out during a test.
    const NO_TIMEOUT: Duration = Duration::from_secs(600);

    fn raw(v: serde_json::Value) -> Box<RawValue> {
        RawValue::from_string(v.to_string()).expect("JSON")
    }

    fn id(s: &str) -> CallId {
        CallId(s.into())
    }

    fn call_to(call: &str, to: UserId) -> CallEvent {
        CallEvent::Initiate(CallInitiate {
            call_id: id(call),
            chat_id: None,
            to_user_id: Some(to),
            video: false,
            sdp: raw(json!({"type": "offer", "sdp": "v=0"})),
        })
    }

    fn call_in(call: &str, chat: ChatId) -> CallEvent {
        CallEvent::Initiate(CallInitiate {
            call_id: id(call),
            chat_id: Some(chat),
            to_user_id: None,
            video: true,
            sdp: raw(json!({"type": "offer"})),
        })
    }

    fn answer(call: &str) -> CallEvent {
        CallEvent::Answer(CallAnswer {
            call_id: id(call),
            sdp: raw(json!({"type": "answer"})),
        })
    }

    fn ice(call: &str, n: u32) -> CallEvent {
        CallEvent::Ice(CallIceCandidate {
            call_id: id(call),
            candidate: raw(json!({"candidate": n})),
        })
    }

    fn end(call: &str) -> CallEvent {
        CallEvent::End(CallRef { call_id: id(call) })
    }

    fn reject(call: &str) -> CallEvent {
        CallEvent::Reject(CallRef { call_id: id(call) })
    }

    impl Fixture {
        fn send(&self, from: &Fake, reference: Option<&str>, event: CallEvent) {
            self.calls.do_send(FromSession {
                session: from.handle.clone(),
                reference: reference.map(Into::into),
                event,
            });
        }

        fn gone(&self, session: &Fake) {
            self.calls.do_send(SessionGone {
                user: session.user(),
                session: session.handle.id,
                node: None,
            });
        }

        /// The error code `from` gets for `event` (sent with a ref).
        async fn refused(&self, from: &Fake, event: CallEvent) -> String {
            let seen = from.frames().len();
            self.send(from, Some("x"), event);
            let answer = from
                .wait_until(seen, "an answer", |fr| fr.reference() == Some("x"))
                .await;
            answer.error_code().expect("an error").to_owned()
        }

        /// The call record of the `n`th call to end.
        async fn record(&self, n: usize) -> CallRecord {
            self.store.called(Op::RecordCall, n).await;
            self.store.call_records()[n - 1].clone()
        }
    }

    fn event(f: &Frame) -> (&str, &serde_json::Value) {
        (f.event(), f.data())
    }

    fn ended(f: &Frame, call: &str, reason: &str) {
        assert_eq!(
            event(f),
            ("call:end", &json!({"callId": call, "reason": reason}))
        );
    }

    #[actix::test]
    async fn a_callee_with_no_visible_session_here_is_offered_a_push() {
        let f = fixture(NO_TIMEOUT);
        let sink = testing::RecordingSink::new();
        f.shared.push.attach(sink.clone());
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        // Bob's tab is visible: he hears it ring, no push.
        f.send(&ann, Some("i1"), call_to("c1", BOB));
        ann.wait_until(0, "the ack", |fr| fr.reference() == Some("i1"))
            .await;
        assert!(sink.offers().is_empty());
        f.send(&ann, None, end("c1"));
        f.record(1).await;

        // Bob hides his tab; cat is offline.
        bob.handle.set_visible(false);
        f.send(&ann, Some("i2"), call_to("c2", BOB));
        ann.wait_until(0, "the ack", |fr| fr.reference() == Some("i2"))
            .await;
        f.send(&ann, None, end("c2"));
        f.record(2).await;
        f.send(&ann, Some("i3"), call_to("c3", CAT));
        ann.wait_until(0, "the ack", |fr| fr.reference() == Some("i3"))
            .await;
        let offers = sink.offers();
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].users.as_slice(), [BOB]);
        assert_eq!(
            offers[0].event,
            PushEvent::Call {
                chat: ANN_BOB,
                call: id("c2"),
                caller: ANN
            }
        );
        assert_eq!(offers[1].users.as_slice(), [CAT]);
    }

    #[actix::test]
    async fn rings_every_callee_session_and_the_answer_connects_one_of_them() {
        let f = fixture(NO_TIMEOUT);
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob_phone = Fake::connect(&f.shared, 2, BOB);
        let bob_laptop = Fake::connect(&f.shared, 3, BOB);
        f.send(&ann, Some("i"), call_to("c1", BOB));
        for bob in [&bob_phone, &bob_laptop] {
            let incoming = bob.wait_frames(1).await;
            assert_eq!(
                event(&incoming[0]),
                (
                    "call:incoming",
                    &json!({"callId": "c1", "chatId": 10, "from": 1, "video": false, "sdp": {"type": "offer", "sdp": "v=0"}})
                )
            );
        }
        let acked = ann.wait_frames(1).await;
        assert_eq!((acked[0].event(), acked[0].reference()), ("ack", Some("i")));

        // The caller's candidates before the answer wait for the answering session.
        f.send(&ann, None, ice("c1", 1));
        f.send(&ann, None, ice("c1", 2));
        f.send(&bob_laptop, Some("a"), answer("c1"));
        let laptop = bob_laptop.wait_frames(4).await;
        assert_eq!(
            event(&laptop[1]),
            (
                "call:ice-candidate",
                &json!({"callId": "c1", "candidate": {"candidate": 1}})
            )
        );
        assert_eq!(laptop[2].data()["candidate"], json!({"candidate": 2}));
        assert_eq!(
            (laptop[3].event(), laptop[3].reference()),
            ("ack", Some("a"))
        );
        let caller = ann.wait_frames(2).await;
        assert_eq!(
            event(&caller[1]),
            (
                "call:answer",
                &json!({"callId": "c1", "sdp": {"type": "answer"}})
            )
        );
        let phone = bob_phone.wait_frames(2).await;
        ended(&phone[1], "c1", "answered_elsewhere");

        // From now on only the two connected sessions relay.
        assert_eq!(f.refused(&bob_phone, ice("c1", 3)).await, "forbidden");
        assert_eq!(f.refused(&bob_phone, answer("c1")).await, "conflict");
        f.send(&bob_laptop, None, ice("c1", 4));
        let caller = ann.wait_frames(3).await;
        assert_eq!(caller[2].data()["candidate"], json!({"candidate": 4}));
        f.send(&ann, None, ice("c1", 5));
        let laptop = bob_laptop.wait_frames(5).await;
        assert_eq!(laptop[4].data()["candidate"], json!({"candidate": 5}));
        assert_eq!(
            bob_phone.settled().await.len(),
            4,
            "the other device hears no signalling"
        );

        f.send(&ann, Some("e"), end("c1"));
        let caller = ann.wait_frames(5).await;
        ended(&caller[3], "c1", "ended");
        assert_eq!(
            (caller[4].event(), caller[4].reference()),
            ("ack", Some("e"))
        );
        ended(&bob_laptop.wait_frames(6).await[5], "c1", "ended");

        let record = f.record(1).await;
        assert_eq!(
            (
                record.call_id.0.as_str(),
                record.chat_id,
                record.caller,
                record.callee
            ),
            ("c1", ANN_BOB, ANN, BOB)
        );
        assert_eq!(record.reason, "ended");
        assert!(record.answered_at.is_some());
        assert!(!record.video);
        // The history's trace reaches every session of both.
        for (s, n) in [(&ann, 6), (&bob_phone, 5), (&bob_laptop, 7)] {
            let frames = s.wait_frames(n).await;
            let m = &frames[n - 1];
            assert_eq!(m.event(), "message:received", "{:?}", s.events());
            assert_eq!(m.data()["kind"], json!("call"));
            assert!(m.message.is_some());
        }
        let content: serde_json::Value =
            serde_json::from_str(f.store.messages()[0].content.as_str()).expect("JSON content");
        assert_eq!(content["outcome"], json!("ended"));

        // Both are free again.
        f.send(&ann, None, call_to("c2", BOB));
        let again = bob_phone.next_frame(5).await;
        assert_eq!(again.event(), "call:incoming");
        assert_eq!(again.data()["callId"], json!("c2"));
    }

    #[actix::test]
    async fn an_unanswered_call_rings_out() {
        let f = fixture(Duration::from_millis(100));
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        f.send(&ann, Some("i"), call_in("c1", ANN_BOB));
        let incoming = bob.wait_frames(1).await;
        assert_eq!(incoming[0].data()["video"], json!(true));
        ended(&ann.wait_frames(2).await[1], "c1", "timeout");
        ended(&bob.wait_frames(2).await[1], "c1", "timeout");
        let record = f.record(1).await;
        assert_eq!(record.reason, "timeout");
        assert_eq!(record.answered_at, None);
        assert!(record.video);
        // Answering too late finds no call.
        bob.wait_frames(3).await;
        assert_eq!(f.refused(&bob, answer("c1")).await, "forbidden");
    }

    #[actix::test]
    async fn an_answered_call_does_not_ring_out() {
        // Long enough for the answer to come first on a loaded machine, short
        // enough to wait out.
        let ring = Duration::from_millis(250);
        let f = fixture(ring);
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        f.send(&ann, None, call_to("c1", BOB));
        bob.wait_frames(1).await;
        f.send(&bob, None, answer("c1"));
        ann.wait_frames(1).await;
        tokio::time::sleep(ring * 2).await;
        assert_eq!(ann.settled().await.len(), 1, "{:?}", ann.events());
        assert_eq!(f.store.calls(Op::RecordCall), 0);
    }

    #[actix::test]
    async fn a_callee_in_a_call_is_busy_and_so_is_a_caller() {
        let f = fixture(NO_TIMEOUT);
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        let cat = Fake::connect(&f.shared, 3, CAT);
        f.send(&ann, None, call_to("c1", BOB));
        bob.wait_frames(1).await;

        f.send(&cat, Some("x"), call_to("c2", BOB));
        let got = cat.wait_frames(2).await;
        assert_eq!(event(&got[0]), ("call:busy", &json!({"callId": "c2"})));
        assert_eq!(got[1].error_code(), Some("callee_busy"));
        assert_eq!(f.refused(&cat, call_to("c3", ANN)).await, "callee_busy");
        assert_eq!(f.refused(&ann, call_to("c4", CAT)).await, "busy");
        assert_eq!(f.refused(&cat, call_to("c1", ANN)).await, "conflict");
        assert_eq!(bob.settled().await.len(), 1, "no second ring");
        assert_eq!(
            f.store.calls(Op::RecordCall),
            0,
            "refused calls leave no record"
        );
    }

    #[actix::test]
    async fn the_callers_disconnect_ends_a_ringing_call() {
        let f = fixture(NO_TIMEOUT);
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        f.send(&ann, None, call_to("c1", BOB));
        bob.wait_frames(1).await;
        f.gone(&ann);
        ended(&bob.wait_frames(2).await[1], "c1", "disconnected");
        assert_eq!(f.record(1).await.reason, "disconnected");
    }

    #[actix::test]
    async fn the_answering_sessions_disconnect_ends_the_call_and_another_device_does_not() {
        let f = fixture(NO_TIMEOUT);
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob_phone = Fake::connect(&f.shared, 2, BOB);
        let bob_laptop = Fake::connect(&f.shared, 3, BOB);
        f.send(&ann, None, call_to("c1", BOB));
        bob_phone.wait_frames(1).await;
        f.send(&bob_laptop, None, answer("c1"));
        ann.wait_frames(1).await;
        f.gone(&bob_phone);
        f.send(&ann, None, ice("c1", 1));
        bob_laptop.wait_frames(2).await;
        assert_eq!(f.store.calls(Op::RecordCall), 0, "still on");
        f.gone(&bob_laptop);
        ended(&ann.wait_frames(2).await[1], "c1", "disconnected");
        let record = f.record(1).await;
        assert_eq!(record.reason, "disconnected");
        assert!(record.answered_at.is_some());
    }

    #[actix::test]
    async fn either_party_ends_it_and_the_record_says_how() {
        let f = fixture(NO_TIMEOUT);
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        let cases: [(&str, &Fake, CallEvent, bool, &str); 4] = [
            ("c1", &ann, end("c1"), false, "cancelled"),
            ("c2", &bob, reject("c2"), false, "rejected"),
            ("c3", &bob, end("c3"), false, "rejected"),
            ("c4", &bob, end("c4"), true, "ended"),
        ];
        let about = |event: &'static str, call: &'static str| {
            move |fr: &Frame| fr.event() == event && fr.data()["callId"] == json!(call)
        };
        for (n, (call, by, how, answered, reason)) in cases.into_iter().enumerate() {
            f.send(&ann, None, call_to(call, BOB));
            bob.wait_until(0, "the ring", about("call:incoming", call))
                .await;
            if answered {
                f.send(&bob, None, answer(call));
                ann.wait_until(0, "the answer", about("call:answer", call))
                    .await;
            }
            f.send(by, Some("bye"), how);
            let record = f.record(n + 1).await;
            assert_eq!(record.reason, reason, "{call}");
            assert_eq!(record.answered_at.is_some(), answered, "{call}");
            for s in [&ann, &bob] {
                let told = s.wait_until(0, "the end", about("call:end", call)).await;
                ended(&told, call, reason);
            }
            let acked = by.settled().await;
            assert!(acked
                .iter()
                .any(|fr| fr.event() == "ack" && fr.reference() == Some("bye")));
        }
    }

    #[actix::test]
    async fn outsiders_and_bad_requests_are_refused_and_nothing_is_relayed() {
        let f = fixture(NO_TIMEOUT);
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        let cat = Fake::connect(&f.shared, 3, CAT);
        let dave = Fake::connect(&f.shared, 4, DAVE);
        assert_eq!(f.refused(&ann, call_to("c0", DAVE)).await, "forbidden");
        assert_eq!(f.refused(&dave, call_in("c0", ANN_BOB)).await, "forbidden");
        assert_eq!(f.refused(&ann, call_in("c0", GROUP)).await, "invalid_data");
        assert_eq!(
            f.refused(&ann, call_in("c0", ChatId(99))).await,
            "forbidden"
        );
        assert_eq!(f.refused(&ann, call_to("c0", ANN)).await, "invalid_data");
        assert_eq!(
            f.refused(&ann, call_to("bad id!", BOB)).await,
            "invalid_data"
        );
        let big = CallEvent::Initiate(CallInitiate {
            call_id: id("c0"),
            chat_id: Some(ANN_BOB),
            to_user_id: None,
            video: false,
            sdp: raw(json!({"sdp": "x".repeat(300)})),
        });
        assert_eq!(f.refused(&ann, big).await, "too_large");
        let wrong_callee = CallEvent::Initiate(CallInitiate {
            call_id: id("c0"),
            chat_id: Some(ANN_BOB),
            to_user_id: Some(CAT),
            video: false,
            sdp: raw(json!({})),
        });
        assert_eq!(f.refused(&ann, wrong_callee).await, "invalid_data");
        assert!(bob.settled().await.is_empty(), "nothing rang");

        f.send(&ann, None, call_to("c1", BOB));
        bob.wait_frames(1).await;
        assert_eq!(f.refused(&cat, answer("c1")).await, "forbidden");
        assert_eq!(f.refused(&cat, ice("c1", 1)).await, "forbidden");
        assert_eq!(f.refused(&cat, end("c1")).await, "forbidden");
        assert_eq!(f.refused(&cat, reject("c1")).await, "forbidden");
        assert_eq!(
            f.refused(&ann, reject("c1")).await,
            "forbidden",
            "the caller cancels, not rejects"
        );
        assert_eq!(f.refused(&cat, end("nope")).await, "forbidden");
        assert_eq!(bob.settled().await.len(), 1);
        assert_eq!(
            ann.settled()
                .await
                .iter()
                .filter(|fr| fr.error_code().is_none())
                .count(),
            0
        );
        assert_eq!(f.store.calls(Op::RecordCall), 0);
    }
}
