//! The cluster seam: everything that depends on how many nodes there are goes
//! through the [`Cluster`] trait, so sessions, presence and calls have one path
//! whether Parley runs as one process or many.
//!
//! - [`Local`]: in memory. One process is a cluster of one node; the same type
//!   also links several in-process nodes sharing one [`Hub`] (unit tests). On one
//!   node every "elsewhere" question answers "nowhere" without a lock, and
//!   publishing to other nodes is one relaxed atomic load.
//! - [`redis::Redis`]: several processes through Redis (see that module).
//!
//! What the seam decides: which nodes a user is on (presence transitions answer
//! "first anywhere" / "last anywhere"; presence.rs announces), whether a user is
//! online anywhere, who owns a call and who is busy, and carrying frames to other
//! nodes (users, one session, a call's owner). Frames between nodes are encoded by
//! [`codec`].

pub mod codec;
pub mod primary;
pub mod redis;

pub use primary::{RedisPrimary, RedisSource};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use bytestring::ByteString;
use smallvec::SmallVec;

use crate::directory::{Deliver, RemoteRoute, SessionDirectory, SessionHandle};
use crate::ids::{CallId, ChatId, SessionId, UserId};
use crate::messages::{
    CallEvent, FromSession, LiveSessions, MembersChanged, Reannounce, Reaped, SessionGone,
};
use crate::store::Store;

/// How to reach Redis and how long a silent node counts as alive.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Redis, shared with the process's other uses of it (one primary followed).
    pub redis: Arc<RedisPrimary>,
    pub prefix: String,
    pub node_ttl: Duration,
}

/// Why a call into the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

/// What `reserve_call` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    CallerBusy,
    CalleeBusy,
}

/// Where a node's cluster hands what arrives for it, once the actors exist.
#[derive(Clone)]
pub struct Inbox {
    pub directory: SessionDirectory,
    pub sessions: LiveSessions,
    pub store: Arc<dyn Store>,
    pub reannounce: Recipient<Reannounce>,
    pub reaped: Recipient<Reaped>,
    pub calls: Recipient<FromSession>,
    pub gone: Recipient<SessionGone>,
    /// The room directory: a chat's members changed on another node.
    pub rooms: Recipient<MembersChanged>,
}

/// The seam (see the module docs). Publishing is fire-and-forget and never waits;
/// questions are async (Local answers at once: its futures are ready on first poll).
#[async_trait]
pub trait Cluster: RemoteRoute {
    /// This node's id.
    fn node(&self) -> &Arc<str>;

    /// Whether the cluster answers (Local: always).
    fn is_up(&self) -> bool;

    /// Starts what runs in the background (listening, heartbeats), once the actors
    /// that `inbox` names exist. Called once.
    fn start(&self, inbox: Inbox);

    /// Lists `user` on this node; true when they were on no node before. An error
    /// means nobody can tell: presence then announces to whoever can hear.
    async fn join(&self, user: UserId) -> Result<bool, ClusterError>;

    /// Takes `user` off this node; true when they are now on no node.
    async fn leave(&self, user: UserId) -> Result<bool, ClusterError>;

    /// For each of `users`, whether some *other* node lists them.
    async fn online_elsewhere(&self, users: &[UserId]) -> Result<Vec<bool>, ClusterError>;

    /// Records, for each `(user, hidden)`, whether every session of `user` on this
    /// node has reported its page hidden (`client:state`), or not (some session is
    /// visible, or the user has none here any more). Only transitions are sent, by
    /// one task per node that coalesces them (`visibility.rs`), so a client flipping
    /// its state costs the cluster nothing per flip.
    async fn set_hidden_here(&self, changes: &[(UserId, bool)]) -> Result<(), ClusterError>;

    /// For each of `users`, whether some *other* node has a session of theirs that
    /// is visible (listed there, and not marked hidden by that node).
    async fn visible_elsewhere(&self, users: &[UserId]) -> Result<Vec<bool>, ClusterError>;

    /// Reserves both parties at once and names this node as the call's owner.
    async fn reserve_call(
        &self,
        call: &CallId,
        caller: UserId,
        callee: UserId,
    ) -> Result<Reservation, ClusterError>;

    async fn release_call(&self, call: &CallId, parties: [UserId; 2]);

    /// The node that owns `call`, when that is another node.
    async fn call_node(&self, call: &CallId) -> Option<Arc<str>>;

    /// The node of the call `user` is in, when that is another node.
    async fn busy_call_node(&self, user: UserId) -> Option<Arc<str>>;

    /// Hands `d` to the other nodes' sessions of `users` (never to this node's:
    /// the bus delivers those), except `skip` (a session on another node).
    fn to_users(&self, users: &[UserId], d: &Deliver, skip: Option<&SessionHandle>);

    /// Forwards a session's call event to the call's node (`node`, not this one).
    fn forward_call(
        &self,
        node: &Arc<str>,
        session: &SessionHandle,
        reference: Option<&str>,
        event: &CallEvent,
    );

    /// Tells a call's node that a session of one of its parties has ended.
    fn session_gone(&self, node: &Arc<str>, user: UserId, session: SessionId);

    /// Tells every other node that `chat`'s members changed (or a block in it):
    /// their rooms for it load them again at once.
    fn chat_changed(&self, chat: ChatId);
}

/// The cluster `settings` name: Redis when set, else a node of its own.
pub fn connect(settings: Option<&ClusterSettings>) -> Arc<dyn Cluster> {
    match settings {
        Some(s) => redis::Redis::new(s),
        None => Arc::new(Local::new()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The in-memory state of a Local cluster: one per process, or shared by several
/// in-process nodes in tests.
#[derive(Default)]
pub struct Hub {
    /// Set once a second node starts: until then nothing is ever published.
    multi: AtomicBool,
    nodes: Mutex<HashMap<Arc<str>, Inbox>>,
    /// The nodes each online user is on.
    users: Mutex<HashMap<UserId, SmallVec<[Arc<str>; 1]>>>,
    /// The nodes where all of a user's sessions are hidden (`set_hidden_here`).
    hidden: Mutex<HashMap<UserId, SmallVec<[Arc<str>; 1]>>>,
    calls: Mutex<Calls>,
}

#[derive(Default)]
struct Calls {
    busy: HashMap<UserId, CallId>,
    owner: HashMap<CallId, Arc<str>>,
}

/// A node of an in-memory cluster (see the module docs).
pub struct Local {
    node: Arc<str>,
    hub: Arc<Hub>,
    /// Other nodes may share the hub (`Local::on`): only then does the hub keep
    /// this node's inbox (which holds the actors' addresses).
    linked: bool,
}

impl Default for Local {
    fn default() -> Self {
        Local::new()
    }
}

impl Local {
    /// One process on its own.
    pub fn new() -> Local {
        Local {
            linked: false,
            ..Local::on(&Arc::new(Hub::default()))
        }
    }

    /// Another node of the in-memory cluster `hub`.
    pub fn on(hub: &Arc<Hub>) -> Local {
        Local {
            node: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            hub: hub.clone(),
            linked: true,
        }
    }

    fn multi(&self) -> bool {
        self.hub.multi.load(Ordering::Relaxed)
    }

    /// The inbox of another node, if it runs.
    fn inbox(&self, node: &str) -> Option<Inbox> {
        lock(&self.hub.nodes).get(node).cloned()
    }
}

impl RemoteRoute for Local {
    fn to_session(&self, node: &Arc<str>, session: SessionId, frame: ByteString) {
        if let Some(inbox) = self.inbox(node) {
            inbox
                .directory
                .deliver_to_session(session, Deliver::frame(frame));
        }
    }
}

/// A session handle for a remote node needs the route as an `Arc`; a Local is
/// shared through its hub, so the route back is a fresh `Local` on the same hub
/// with the origin's id.
fn route_back(hub: &Arc<Hub>, origin: &Arc<str>) -> Arc<dyn RemoteRoute> {
    Arc::new(Local {
        node: origin.clone(),
        hub: hub.clone(),
        linked: true,
    })
}

#[async_trait]
impl Cluster for Local {
    fn node(&self) -> &Arc<str> {
        &self.node
    }

    fn is_up(&self) -> bool {
        true
    }

    fn start(&self, inbox: Inbox) {
        if !self.linked {
            return;
        }
        let mut nodes = lock(&self.hub.nodes);
        nodes.insert(self.node.clone(), inbox);
        self.hub.multi.store(nodes.len() > 1, Ordering::Relaxed);
    }

    async fn join(&self, user: UserId) -> Result<bool, ClusterError> {
        let mut users = lock(&self.hub.users);
        let on = users.entry(user).or_default();
        let first = on.is_empty();
        if !on.contains(&self.node) {
            on.push(self.node.clone());
        }
        Ok(first)
    }

    async fn leave(&self, user: UserId) -> Result<bool, ClusterError> {
        let mut users = lock(&self.hub.users);
        let Some(on) = users.get_mut(&user) else {
            return Ok(false);
        };
        let before = on.len();
        on.retain(|n| *n != self.node);
        let last = before > 0 && on.is_empty();
        if on.is_empty() {
            users.remove(&user);
        }
        Ok(last)
    }

    async fn online_elsewhere(&self, users: &[UserId]) -> Result<Vec<bool>, ClusterError> {
        if !self.multi() {
            return Ok(vec![false; users.len()]);
        }
        let on = lock(&self.hub.users);
        Ok(users
            .iter()
            .map(|u| on.get(u).is_some_and(|n| n.iter().any(|n| *n != self.node)))
            .collect())
    }

    async fn set_hidden_here(&self, changes: &[(UserId, bool)]) -> Result<(), ClusterError> {
        let mut hidden = lock(&self.hub.hidden);
        for &(user, now) in changes {
            let on = hidden.entry(user).or_default();
            on.retain(|n| *n != self.node);
            if now {
                on.push(self.node.clone());
            }
            if on.is_empty() {
                hidden.remove(&user);
            }
        }
        Ok(())
    }

    async fn visible_elsewhere(&self, users: &[UserId]) -> Result<Vec<bool>, ClusterError> {
        if !self.multi() {
            return Ok(vec![false; users.len()]);
        }
        let on = lock(&self.hub.users);
        let hidden = lock(&self.hub.hidden);
        Ok(users
            .iter()
            .map(|u| {
                let hid = hidden.get(u);
                on.get(u).is_some_and(|nodes| {
                    nodes
                        .iter()
                        .any(|n| *n != self.node && !hid.is_some_and(|h| h.contains(n)))
                })
            })
            .collect())
    }

    async fn reserve_call(
        &self,
        call: &CallId,
        caller: UserId,
        callee: UserId,
    ) -> Result<Reservation, ClusterError> {
        let mut calls = lock(&self.hub.calls);
        if calls.busy.contains_key(&caller) {
            return Ok(Reservation::CallerBusy);
        }
        if calls.busy.contains_key(&callee) {
            return Ok(Reservation::CalleeBusy);
        }
        calls.busy.insert(caller, call.clone());
        calls.busy.insert(callee, call.clone());
        calls.owner.insert(call.clone(), self.node.clone());
        Ok(Reservation::Reserved)
    }

    async fn release_call(&self, call: &CallId, parties: [UserId; 2]) {
        let mut calls = lock(&self.hub.calls);
        for u in parties {
            if calls.busy.get(&u) == Some(call) {
                calls.busy.remove(&u);
            }
        }
        calls.owner.remove(call);
    }

    async fn call_node(&self, call: &CallId) -> Option<Arc<str>> {
        if !self.multi() {
            return None;
        }
        let calls = lock(&self.hub.calls);
        calls.owner.get(call).filter(|n| **n != self.node).cloned()
    }

    async fn busy_call_node(&self, user: UserId) -> Option<Arc<str>> {
        if !self.multi() {
            return None;
        }
        let calls = lock(&self.hub.calls);
        let call = calls.busy.get(&user)?;
        calls.owner.get(call).filter(|n| **n != self.node).cloned()
    }

    fn chat_changed(&self, chat: ChatId) {
        if !self.multi() {
            return;
        }
        let others: Vec<Inbox> = lock(&self.hub.nodes)
            .iter()
            .filter(|(n, _)| **n != self.node)
            .map(|(_, i)| i.clone())
            .collect();
        for inbox in others {
            inbox.rooms.do_send(MembersChanged { chat });
        }
    }

    fn to_users(&self, users: &[UserId], d: &Deliver, skip: Option<&SessionHandle>) {
        if !self.multi() {
            return;
        }
        let targets: Vec<(Arc<str>, Vec<UserId>)> = {
            let on = lock(&self.hub.users);
            let mut per_node: HashMap<Arc<str>, Vec<UserId>> = HashMap::new();
            for u in users {
                for n in on.get(u).into_iter().flatten() {
                    if *n != self.node {
                        per_node.entry(n.clone()).or_default().push(*u);
                    }
                }
            }
            per_node.into_iter().collect()
        };
        for (node, users) in targets {
            let Some(inbox) = self.inbox(&node) else {
                continue;
            };
            let skip = skip.filter(|s| s.node() == Some(&node)).map(|s| s.id);
            for u in users {
                inbox.directory.deliver_to_user(u, d, skip);
            }
        }
    }

    fn forward_call(
        &self,
        node: &Arc<str>,
        session: &SessionHandle,
        reference: Option<&str>,
        event: &CallEvent,
    ) {
        let Some(inbox) = self.inbox(node) else {
            return;
        };
        // Through the codec, as between processes: the event arrives as a new value.
        let Some(frame) =
            codec::encode_call(&self.node, session.id, session.user, reference, event)
        else {
            return;
        };
        if let Ok(codec::Frame::Call {
            session: id,
            user,
            reference,
            event,
            ..
        }) = codec::decode(frame.as_bytes())
        {
            let handle = SessionHandle::remote(
                id,
                user,
                self.node.clone(),
                route_back(&self.hub, &self.node),
            );
            inbox.calls.do_send(FromSession {
                session: handle,
                reference,
                event,
            });
        }
    }

    fn session_gone(&self, node: &Arc<str>, user: UserId, session: SessionId) {
        if let Some(inbox) = self.inbox(node) {
            inbox.gone.do_send(SessionGone {
                user,
                session,
                node: Some(self.node.clone()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;
    use crate::ids::ChatId;
    use crate::store::ChatKind;
    use crate::testing::{node, open, Fake, MemoryStore};

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CYD: UserId = UserId(3);
    const ANN_BOB: ChatId = ChatId(7);
    const CYD_BOB: ChatId = ChatId(8);

    fn initiate(call: &str, chat: ChatId) -> CallEvent {
        CallEvent::Initiate(
            serde_json::from_value(json!({
                "callId": call, "chatId": chat.0, "video": false,
                "sdp": {"type": "offer", "sdp": "v=0"}
            }))
            .expect("a valid call:initiate"),
        )
    }

    fn answer(call: &str) -> CallEvent {
        CallEvent::Answer(
            serde_json::from_value(
                json!({"callId": call, "sdp": {"type": "answer", "sdp": "v=0"}}),
            )
            .expect("a valid call:answer"),
        )
    }

    fn from(s: &Fake, r: &str, event: CallEvent) -> FromSession {
        FromSession {
            session: s.handle.clone(),
            reference: Some(r.to_string()),
            event,
        }
    }

    #[actix::test]
    async fn a_call_spans_two_in_memory_nodes_through_the_seam() {
        let hub = Arc::new(Hub::default());
        let store = MemoryStore::new();
        store.add_chat(ANN_BOB, ChatKind::Direct, &[ANN, BOB]);
        store.add_chat(CYD_BOB, ChatKind::Direct, &[CYD, BOB]);
        let a = node(&hub, store.clone());
        let b = node(&hub, store.clone());
        let ann = open(&a, 1, ANN, &[BOB]).await;
        let bob = open(&b, 1, BOB, &[ANN, CYD]).await;
        let cyd = open(&b, 2, CYD, &[BOB]).await;

        // The call lives on A (the caller's node); bob on B rings.
        a.calls.do_send(from(&ann, "i", initiate("x", ANN_BOB)));
        bob.wait_for("call:incoming", 1).await;
        ann.wait_for("ack", 1).await;

        // Busy holds across nodes: cyd, on B where the call is not, calls bob.
        b.calls.do_send(from(&cyd, "c", initiate("y", CYD_BOB)));
        cyd.wait_for("error", 1).await;
        assert_eq!(cyd.frames_of("error")[0].data()["code"], "callee_busy");
        assert_eq!(cyd.frames_of("call:busy").len(), 1);

        // Bob answers on B: the event is forwarded (through the codec) to A, and the
        // ack comes back to his session on B.
        b.calls.do_send(from(&bob, "a", answer("x")));
        ann.wait_for("call:answer", 1).await;
        bob.wait_for("ack", 1).await;
        assert_eq!(bob.frames_of("ack")[0].reference(), Some("a"));

        // Bob's session on B ends: the call on A ends `disconnected`.
        b.calls.do_send(SessionGone {
            user: BOB,
            session: bob.handle.id,
            node: None,
        });
        ann.wait_for("call:end", 1).await;
        assert_eq!(
            ann.frames_of("call:end")[0].data()["reason"],
            "disconnected"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.call_records().is_empty() {
            assert!(Instant::now() < deadline, "the call was never recorded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(store.call_records()[0].reason, "disconnected");

        // Both are free again on every node: cyd's call to bob rings now.
        b.calls.do_send(from(&cyd, "c2", initiate("z", CYD_BOB)));
        cyd.wait_for("ack", 1).await;
        bob.wait_for("call:incoming", 2).await;
    }

    #[actix::test]
    async fn one_node_answers_every_elsewhere_question_with_nowhere() {
        let local = Local::new();
        let call = CallId("c".into());
        assert!(local.join(ANN).await.expect("local"));
        assert!(!local.join(ANN).await.expect("local"), "listed already");
        assert_eq!(
            local.online_elsewhere(&[ANN, BOB]).await.expect("local"),
            [false, false]
        );
        assert_eq!(
            local.reserve_call(&call, ANN, BOB).await.expect("local"),
            Reservation::Reserved
        );
        assert_eq!(
            local
                .reserve_call(&CallId("d".into()), CYD, BOB)
                .await
                .expect("local"),
            Reservation::CalleeBusy
        );
        assert_eq!(local.call_node(&call).await, None, "the call is here");
        assert_eq!(local.busy_call_node(BOB).await, None);
        local.release_call(&call, [ANN, BOB]).await;
        assert_eq!(
            local
                .reserve_call(&CallId("d".into()), CYD, BOB)
                .await
                .expect("local"),
            Reservation::Reserved
        );
        assert!(local.leave(ANN).await.expect("local"), "the last anywhere");
        assert!(!local.leave(ANN).await.expect("local"), "idempotent");
    }
}
