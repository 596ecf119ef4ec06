//! The messages the actors exchange, in a module of their own: a sender needs the
//! message type, never the receiving actor's type, so sessions, rooms, calls,
//! presence and the cluster seam can each be tested with stand-ins and no module
//! imports back into one that imports it.

use std::sync::Arc;

use actix::prelude::*;
use dashmap::DashMap;

use crate::directory::SessionHandle;
use crate::ids::{CallId, ChatId, MessageId, SessionId, UserId};
use crate::protocol::{CallAnswer, CallIceCandidate, CallInitiate, CallRef};
use crate::time::Timestamp;

/// Asks a session to close (server shutdown): after any store call it started
/// has been answered, so nothing accepted is left unanswered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

/// Hold live messages: a `Resync` follows once this node is listed in the cluster
/// again. Holding from *before* re-registering means nothing routed to us afterwards
/// is shown before what the replay brings, so per-sender order survives the outage.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Hold {
    pub after: MessageId,
}

/// Send again every message of this user's chats newer than `after` (after a cluster
/// outage: frames from other nodes may have been lost on the way; MySQL has them
/// all), then release what was held. Messages the client already has may come
/// twice; clients keep one per id.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Resync {
    /// 0: no floor is known; then what is undelivered is sent, as on connect.
    pub after: MessageId,
}

/// What the process as a whole asks of every live session: one message type, so
/// the list of live sessions holds one `Recipient` each (one allocation per
/// connection) and needs not know the session actor's type.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Control {
    Close(Close),
    Hold(Hold),
    Resync(Resync),
}

/// Every live session of this process, registered or not, so shutdown and the
/// cluster's outage recovery can reach them all.
pub type LiveSessions = Arc<DashMap<SessionId, Recipient<Control>>>;

/// Sends `make()` to every live session.
pub fn to_every_session(sessions: &LiveSessions, make: impl Fn() -> Control) {
    for s in sessions.iter() {
        s.value().do_send(make());
    }
}

/// A session is ready to receive: make it reachable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionOpened {
    pub handle: SessionHandle,
    pub contacts: Vec<UserId>,
    /// Told once the whole cluster routes this user's messages here (at once
    /// with one node): a catch-up that ran earlier could miss a message another
    /// node stored and did not route here.
    pub listed: tokio::sync::oneshot::Sender<()>,
}

/// A session has ended; idempotent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub user: UserId,
    pub session: SessionId,
}

/// A user now shares a chat with more people (a chat was created): they hear of
/// each other's presence from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContactsAdded {
    pub user: UserId,
    pub contacts: Vec<UserId>,
}

/// These two no longer see each other's presence (a block): the registry forgets
/// each as the other's contact.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContactsRemoved {
    pub a: UserId,
    pub b: UserId,
}

/// The cluster lost track of this node (an outage, or it was reaped): list every
/// local user again, announcing those who are online nowhere else.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reannounce {
    /// Sessions are then sent every message newer than this.
    pub replay_after: MessageId,
}

/// Another node died and the cluster took `user` off it: they are online nowhere
/// now, so presence announces them offline (once, from the node that reaped it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reaped {
    pub user: UserId,
    pub at: Timestamp,
}

/// A `call:*` event from a session.
#[derive(Debug)]
pub enum CallEvent {
    Initiate(CallInitiate),
    Answer(CallAnswer),
    Reject(CallRef),
    Ice(CallIceCandidate),
    End(CallRef),
}

impl CallEvent {
    pub fn call_id(&self) -> &CallId {
        match self {
            CallEvent::Initiate(e) => &e.call_id,
            CallEvent::Answer(e) => &e.call_id,
            CallEvent::Reject(e) | CallEvent::End(e) => &e.call_id,
            CallEvent::Ice(e) => &e.call_id,
        }
    }
}

/// A call event from a session: of this node, or of another node (the session
/// handle is then remote, and the event came through the cluster because this
/// node owns the call).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromSession {
    pub session: SessionHandle,
    pub reference: Option<String>,
    pub event: CallEvent,
}

/// A session ended: a call it takes part in ends with `disconnected`. `node` is set
/// when the session was on another node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionGone {
    pub user: UserId,
    pub session: SessionId,
    pub node: Option<Arc<str>>,
}

/// A session finished its catch-up (`ready`): a call still ringing for its user
/// rings it too, so a device opened from a call notification can answer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionReady {
    pub session: SessionHandle,
}

/// The chat's members changed (or a block in a direct chat): a room loads them
/// again before it judges or fans out anything else.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct MembersChanged {
    pub chat: ChatId,
}
