//! Stand-ins for unit-testing the actors without MySQL, Redis or sockets: an
//! in-memory [`Store`] that logs every call and can be told to fail or stall, and
//! [`FakeSession`]s that record every frame handed to them. Built for this crate's
//! tests and, behind the `testing` feature, for other crates' tests.
//!
//! The store follows the rules of `src/db` where the actors depend on them (ids
//! grow, `(sender, clientId)` is idempotent, delivered/read are per-member
//! watermarks, a call leaves a `call` message); it does not check what only the
//! routes check (e.g. group sizes).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore};

use crate::directory::{Deliver, SessionDirectory, SessionHandle};
use crate::ids::{AudioId, ChatId, MessageId, SessionId, UserId};
use crate::protocol::MessageKind;
use crate::store::{
    CallRecord, ChatKind, ChatMembers, Inserted, Message, MessageStatus, NewMessage, ReadOutcome,
    Receipt, Store, StoreError,
};
use crate::time::Timestamp;
use crate::{Bus, RealtimeSettings, Shared};

/// How long a test waits for frames before it fails (a stuck actor fails fast).
pub const PATIENCE: Duration = Duration::from_secs(2);

/// The realtime settings unit tests start from. `RealtimeSettings` has no
/// defaults of its own (the application's `Settings` owns them); these are the
/// tests' own values, generous so nothing but the case under test trips a limit.
pub fn settings() -> RealtimeSettings {
    RealtimeSettings {
        ws_frame_bytes: 64 * 1024,
        outbound_bytes: 4 * 1024 * 1024,
        events_per_sec: 1_000,
        events_burst: 1_000,
        ping_interval: Duration::from_secs(10),
        client_timeout: Duration::from_secs(30),
        writer_lanes: 2,
        room_idle: crate::session::ROOM_IDLE,
        room_arbiters: 1,
        ring_timeout: Duration::from_secs(45),
        signal_max_bytes: crate::session::SIGNAL_MAX_BYTES,
    }
}

/// The shared state every realtime actor holds, over `store`, on one node.
/// Call it inside an actix system (it starts the receipt and connect lanes).
pub fn shared(store: Arc<dyn Store>, settings: RealtimeSettings) -> Arc<Shared> {
    let bus = Bus::new(
        SessionDirectory::default(),
        Arc::new(crate::cluster::Local::new()),
    );
    Arc::new(Shared::new(store, bus, settings))
}

/// Storage that is down: the caller may retry.
pub fn unavailable() -> StoreError {
    StoreError::unavailable("memory store told to be down")
}

/// Whether `e` says the storage is down (the caller may retry).
pub fn is_unavailable(e: &StoreError) -> bool {
    e.is_unavailable()
}

/// Storage that failed for good (a bug, a constraint).
pub fn broken() -> StoreError {
    StoreError::other("memory store told to fail")
}

/// The store calls, for the call log and the failure knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    ChatMembers,
    InsertMessages,
    MarkDelivered,
    MarkRead,
    Undelivered,
    MessagesAfter,
    IsMember,
    DirectChat,
    Contacts,
    ContactsOf,
    WithUndelivered,
    SetLastSeen,
    NewestMessageId,
    RecordCall,
}

/// How a store call is told to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// [`unavailable`].
    Unavailable,
    /// [`broken`].
    Broken,
}

impl Failure {
    fn error(self) -> StoreError {
        match self {
            Failure::Unavailable => unavailable(),
            Failure::Broken => broken(),
        }
    }
}

struct Chat {
    kind: ChatKind,
    members: Vec<UserId>,
    /// Per member: (delivered up to, read up to).
    marks: HashMap<UserId, (MessageId, MessageId)>,
}

#[derive(Default)]
struct State {
    chats: BTreeMap<ChatId, Chat>,
    /// Every message, oldest (lowest id) first.
    messages: Vec<Message>,
    by_client: HashMap<(UserId, String), usize>,
    foreign_audio: HashSet<AudioId>,
    last_seen: HashMap<UserId, Timestamp>,
    calls: Vec<CallRecord>,
    log: Vec<Op>,
    batches: Vec<Vec<NewMessage>>,
    failures: HashMap<Op, (Failure, usize)>,
}

/// An in-memory [`Store`]. Cheap to share (`Arc`); every method is safe to call
/// from the test while actors use it.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Calls of these operations wait for a permit (see [`MemoryStore::stall`]).
    gates: Mutex<HashMap<Op, Arc<Semaphore>>>,
    called: Notify,
}

impl MemoryStore {
    pub fn new() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding it has failed already.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a chat with these members (in this order).
    pub fn add_chat(&self, chat: ChatId, kind: ChatKind, members: &[UserId]) {
        let marks = members
            .iter()
            .map(|&m| (m, (MessageId(0), MessageId(0))))
            .collect();
        self.state().chats.insert(
            chat,
            Chat {
                kind,
                members: members.to_vec(),
                marks,
            },
        );
    }

    /// Replaces a chat's members (someone left or joined); marks of those who stay are kept.
    pub fn set_members(&self, chat: ChatId, members: &[UserId]) {
        let mut st = self.state();
        let c = st
            .chats
            .get_mut(&chat)
            .expect("no such chat in the memory store");
        c.members = members.to_vec();
        c.marks.retain(|u, _| members.contains(u));
        for &m in members {
            c.marks.entry(m).or_insert((MessageId(0), MessageId(0)));
        }
    }

    /// Audio that is someone else's: a message naming it is rejected, as `src/db` does.
    pub fn foreign_audio(&self, audio: AudioId) {
        self.state().foreign_audio.insert(audio);
    }

    /// The next `times` calls of `op` fail with `failure`.
    pub fn fail(&self, op: Op, failure: Failure, times: usize) {
        self.state().failures.insert(op, (failure, times));
    }

    /// Calls of `op` from now wait, each for one permit of the returned semaphore
    /// (`add_permits(n)` lets n through; [`MemoryStore::unstall`] lets all through).
    pub fn stall(&self, op: Op) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        self.gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(op, gate.clone());
        gate
    }

    /// Lets every waiting and later call of `op` through.
    pub fn unstall(&self, op: Op) {
        if let Some(g) = self
            .gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&op)
        {
            g.close();
        }
    }

    /// Every store call so far, in the order they were made.
    pub fn log(&self) -> Vec<Op> {
        self.state().log.clone()
    }

    /// How many calls of `op` were made.
    pub fn calls(&self, op: Op) -> usize {
        self.state().log.iter().filter(|&&o| o == op).count()
    }

    /// Waits until `op` has been called at least `n` times.
    pub async fn called(&self, op: Op, n: usize) {
        let wait = async {
            loop {
                let notified = self.called.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.calls(op) >= n {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(PATIENCE, wait).await.is_err() {
            panic!(
                "{op:?} was called {} times, expected {n}; calls: {:?}",
                self.calls(op),
                self.log()
            );
        }
    }

    /// Each `insert_messages` call's batch, in call order.
    pub fn batches(&self) -> Vec<Vec<NewMessage>> {
        self.state().batches.clone()
    }

    /// Every stored message, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        self.state().messages.clone()
    }

    /// Every call record written.
    pub fn call_records(&self) -> Vec<CallRecord> {
        self.state().calls.clone()
    }

    pub fn last_seen(&self, user: UserId) -> Option<Timestamp> {
        self.state().last_seen.get(&user).copied()
    }

    /// `(delivered up to, read up to)` of `user` in `chat`.
    pub fn marks(&self, user: UserId, chat: ChatId) -> Option<(MessageId, MessageId)> {
        self.state()
            .chats
            .get(&chat)
            .and_then(|c| c.marks.get(&user).copied())
    }

    /// Stores a message as if sent earlier (the writer's path, without the writer).
    pub fn seed(&self, chat: ChatId, sender: UserId, content: &str) -> Message {
        let mut st = self.state();
        let client_id = format!("seed-{}", st.messages.len());
        let m = self.store_one(
            &mut st,
            &NewMessage {
                chat_id: chat,
                sender_id: sender,
                client_id,
                kind: MessageKind::Text,
                content: content.into(),
                audio_id: None,
                encrypted: false,
                e2ee: None,
            },
        );
        match m {
            Inserted::Fresh(m) => m,
            _ => panic!("seeding a message failed"),
        }
    }

    /// Logs the call, then fails it or waits at its gate when told to.
    async fn enter(&self, op: Op) -> Result<(), StoreError> {
        let failure = {
            let mut st = self.state();
            st.log.push(op);
            match st.failures.get_mut(&op) {
                Some((f, n)) if *n > 0 => {
                    *n -= 1;
                    Some(*f)
                }
                _ => None,
            }
        };
        self.called.notify_waiters();
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&op)
            .cloned();
        if let Some(gate) = gate {
            // A closed gate (unstalled) lets everyone through.
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
        }
        match failure {
            Some(f) => Err(f.error()),
            None => Ok(()),
        }
    }

    fn store_one(&self, st: &mut State, m: &NewMessage) -> Inserted {
        let key = (m.sender_id, m.client_id.clone());
        if let Some(&i) = st.by_client.get(&key) {
            return Inserted::Existing(st.messages[i].clone());
        }
        if m.audio_id.is_some_and(|a| st.foreign_audio.contains(&a)) {
            return Inserted::Rejected {
                code: crate::error_code::ErrorCode::Forbidden,
                message: "this audio is not yours to send here, or it was sent already".into(),
            };
        }
        let id = MessageId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let message = Message {
            id,
            chat_id: m.chat_id,
            sender_id: m.sender_id,
            client_id: m.client_id.clone(),
            kind: m.kind,
            content: m.content.clone(),
            audio: None,
            encrypted: m.encrypted,
            e2ee: m.e2ee.clone(),
            created_at: Timestamp::now(),
            status: MessageStatus::Sent,
        };
        st.by_client.insert(key, st.messages.len());
        st.messages.push(message.clone());
        Inserted::Fresh(message)
    }

    /// Messages in `user`'s chats with id > `after` that `keep` accepts, oldest first.
    fn visible(
        st: &State,
        user: UserId,
        after: MessageId,
        limit: u32,
        keep: impl Fn(&Message, &Chat) -> bool,
    ) -> Vec<Message> {
        st.messages
            .iter()
            .filter(|m| m.id > after)
            .filter(|m| {
                st.chats
                    .get(&m.chat_id)
                    .is_some_and(|c| c.members.contains(&user) && keep(m, c))
            })
            .take(limit as usize)
            .cloned()
            .collect()
    }

    fn undelivered_to(st: &State, user: UserId, after: MessageId, limit: u32) -> Vec<Message> {
        Self::visible(st, user, after, limit, |m, c| {
            m.sender_id != user && c.marks.get(&user).is_some_and(|(d, _)| m.id > *d)
        })
    }

    fn contacts_in(st: &State, user: UserId) -> Vec<UserId> {
        let set: BTreeSet<UserId> = st
            .chats
            .values()
            .filter(|c| c.members.contains(&user))
            .flat_map(|c| c.members.iter().copied())
            .filter(|&u| u != user)
            .collect();
        set.into_iter().collect()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn chat_members(&self, chat: ChatId) -> Result<Option<ChatMembers>, StoreError> {
        self.enter(Op::ChatMembers).await?;
        Ok(self.state().chats.get(&chat).map(|c| ChatMembers {
            chat,
            kind: c.kind,
            members: c.members.clone(),
        }))
    }

    async fn insert_messages(&self, batch: &[NewMessage]) -> Result<Vec<Inserted>, StoreError> {
        self.state().batches.push(batch.to_vec());
        self.enter(Op::InsertMessages).await?;
        let mut st = self.state();
        Ok(batch.iter().map(|m| self.store_one(&mut st, m)).collect())
    }

    async fn mark_delivered(
        &self,
        batch: &[(UserId, Vec<MessageId>)],
    ) -> Result<Vec<Vec<Receipt>>, StoreError> {
        self.enter(Op::MarkDelivered).await?;
        let mut st = self.state();
        let mut answered: HashSet<(UserId, MessageId)> = HashSet::new();
        let mut out = Vec::with_capacity(batch.len());
        for (reader, ids) in batch {
            let mut grouped: BTreeMap<(ChatId, UserId), Vec<MessageId>> = BTreeMap::new();
            let mut top: HashMap<ChatId, MessageId> = HashMap::new();
            let wanted: BTreeSet<MessageId> = ids.iter().copied().collect();
            for m in st.messages.iter().filter(|m| wanted.contains(&m.id)) {
                let Some(chat) = st.chats.get(&m.chat_id) else {
                    continue;
                };
                let Some(&(delivered, _)) = chat.marks.get(reader) else {
                    continue;
                };
                if m.sender_id == *reader || m.id <= delivered || !answered.insert((*reader, m.id))
                {
                    continue;
                }
                grouped
                    .entry((m.chat_id, m.sender_id))
                    .or_default()
                    .push(m.id);
                let t = top.entry(m.chat_id).or_insert(m.id);
                *t = (*t).max(m.id);
            }
            for (chat, up) in top {
                if let Some(mark) = st
                    .chats
                    .get_mut(&chat)
                    .and_then(|c| c.marks.get_mut(reader))
                {
                    mark.0 = mark.0.max(up);
                }
            }
            out.push(
                grouped
                    .into_iter()
                    .map(|((chat_id, sender_id), message_ids)| Receipt {
                        chat_id,
                        sender_id,
                        message_ids,
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    async fn mark_read(
        &self,
        user: UserId,
        chat: ChatId,
        up_to: MessageId,
    ) -> Result<ReadOutcome, StoreError> {
        self.enter(Op::MarkRead).await?;
        let mut st = self.state();
        let Some(c) = st.chats.get_mut(&chat) else {
            return Ok(ReadOutcome::NotMember);
        };
        let notify: Vec<UserId> = c.members.iter().copied().filter(|&m| m != user).collect();
        let Some(mark) = c.marks.get_mut(&user) else {
            return Ok(ReadOutcome::NotMember);
        };
        if up_to <= mark.1 {
            return Ok(ReadOutcome::Unchanged);
        }
        mark.1 = up_to;
        mark.0 = mark.0.max(up_to);
        Ok(ReadOutcome::Advanced { up_to, notify })
    }

    async fn undelivered(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.enter(Op::Undelivered).await?;
        Ok(Self::undelivered_to(&self.state(), user, after, limit))
    }

    async fn messages_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        self.enter(Op::MessagesAfter).await?;
        Ok(Self::visible(&self.state(), user, after, limit, |_, _| {
            true
        }))
    }

    async fn is_member(&self, user: UserId, chat: ChatId) -> Result<bool, StoreError> {
        self.enter(Op::IsMember).await?;
        Ok(self
            .state()
            .chats
            .get(&chat)
            .is_some_and(|c| c.members.contains(&user)))
    }

    async fn direct_chat(&self, a: UserId, b: UserId) -> Result<Option<ChatId>, StoreError> {
        self.enter(Op::DirectChat).await?;
        Ok(self
            .state()
            .chats
            .iter()
            .find(|(_, c)| {
                c.kind == ChatKind::Direct && c.members.contains(&a) && c.members.contains(&b)
            })
            .map(|(id, _)| *id))
    }

    async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
        self.enter(Op::Contacts).await?;
        Ok(Self::contacts_in(&self.state(), user))
    }

    async fn contacts_of(&self, users: &[UserId]) -> Result<Vec<Vec<UserId>>, StoreError> {
        self.enter(Op::ContactsOf).await?;
        let st = self.state();
        Ok(users.iter().map(|&u| Self::contacts_in(&st, u)).collect())
    }

    async fn with_undelivered(&self, users: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        self.enter(Op::WithUndelivered).await?;
        let st = self.state();
        Ok(users
            .iter()
            .copied()
            .filter(|&u| !Self::undelivered_to(&st, u, MessageId(0), 1).is_empty())
            .collect())
    }

    async fn set_last_seen(&self, user: UserId, at: Timestamp) -> Result<(), StoreError> {
        self.enter(Op::SetLastSeen).await?;
        self.state().last_seen.insert(user, at);
        Ok(())
    }

    async fn newest_message_id(&self) -> Result<MessageId, StoreError> {
        self.enter(Op::NewestMessageId).await?;
        Ok(self.state().messages.last().map_or(MessageId(0), |m| m.id))
    }

    async fn record_call(&self, call: &CallRecord) -> Result<Option<Message>, StoreError> {
        self.enter(Op::RecordCall).await?;
        let mut st = self.state();
        st.calls.push(call.clone());
        let duration_ms = call
            .answered_at
            .map(|a| (call.ended_at.0 - a.0).num_milliseconds().max(0));
        let content = serde_json::json!({
            "outcome": call.reason,
            "video": call.video,
            "callerId": call.caller,
            "durationMs": duration_ms,
        })
        .to_string();
        let inserted = self.store_one(
            &mut st,
            &NewMessage {
                chat_id: call.chat_id,
                sender_id: call.caller,
                client_id: format!("call:{}", call.call_id),
                kind: MessageKind::Call,
                content,
                audio_id: None,
                encrypted: false,
                e2ee: None,
            },
        );
        Ok(match inserted {
            Inserted::Fresh(m) | Inserted::Existing(m) => Some(m),
            Inserted::Rejected { .. } => None,
        })
    }
}

/// One frame a fake session was handed.
#[derive(Debug, Clone)]
pub struct Frame {
    pub json: serde_json::Value,
    /// Set for `message:received` (what a session uses to drop a duplicate).
    pub message: Option<MessageId>,
}

impl Frame {
    pub fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or_default()
    }

    pub fn data(&self) -> &serde_json::Value {
        &self.json["data"]
    }

    /// The `ref` it answers, if any.
    pub fn reference(&self) -> Option<&str> {
        self.json["ref"].as_str()
    }

    /// The error code of an `error` frame, as the client reads it off the wire (so
    /// tests do not depend on how codes are typed inside the server).
    pub fn error_code(&self) -> Option<&str> {
        (self.event() == "error")
            .then(|| self.data()["code"].as_str())
            .flatten()
    }
}

#[derive(Default)]
struct Inbox {
    frames: Mutex<Vec<Frame>>,
    arrived: Notify,
}

/// A stand-in for a session: it takes `Deliver` like a session and records each
/// frame, decoded, for the test to read.
pub struct FakeSession {
    inbox: Arc<Inbox>,
}

impl Actor for FakeSession {
    type Context = Context<Self>;
}

impl Handler<Deliver> for FakeSession {
    type Result = ();

    fn handle(&mut self, d: Deliver, _: &mut Context<Self>) {
        let json = serde_json::from_str(&d.frame).unwrap_or_else(|e| {
            panic!(
                "a session was handed a frame that is not JSON ({e}): {}",
                d.frame
            )
        });
        self.inbox
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Frame {
                json,
                message: d.message,
            });
        self.inbox.arrived.notify_waiters();
    }
}

/// Answered once every `Deliver` queued before it has been recorded.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for FakeSession {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {}
}

/// A running fake session and its handle (what rooms and calls are given).
#[derive(Clone)]
pub struct Fake {
    pub handle: SessionHandle,
    addr: Addr<FakeSession>,
    inbox: Arc<Inbox>,
}

impl Fake {
    /// Starts a fake session of `user` (not listed anywhere; see [`Fake::connect`]).
    pub fn start(id: SessionId, user: UserId) -> Fake {
        let inbox = Arc::new(Inbox::default());
        let addr = FakeSession {
            inbox: inbox.clone(),
        }
        .start();
        Fake {
            handle: SessionHandle::new(id, user, addr.clone().recipient()),
            addr,
            inbox,
        }
    }

    /// Starts a fake session and lists it in `shared`'s session directory, as the
    /// presence registry does for a registered session.
    pub fn connect(shared: &Shared, id: u64, user: UserId) -> Fake {
        let fake = Fake::start(SessionId(id), user);
        shared.bus.directory().insert(fake.handle.clone());
        fake
    }

    /// Takes it out of `shared`'s session directory (the session closed).
    pub fn disconnect(&self, shared: &Shared) {
        shared
            .bus
            .directory()
            .remove(self.handle.user, self.handle.id);
    }

    pub fn user(&self) -> UserId {
        self.handle.user
    }

    /// Every frame recorded so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.inbox
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many frames were recorded so far.
    pub fn count(&self) -> usize {
        self.inbox
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The event names recorded so far.
    pub fn events(&self) -> Vec<String> {
        self.frames().iter().map(|f| f.event().to_owned()).collect()
    }

    /// Waits until at least `n` frames were recorded; all of them.
    pub async fn wait_frames(&self, n: usize) -> Vec<Frame> {
        let wait = async {
            loop {
                let notified = self.inbox.arrived.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.count() >= n {
                    return self.frames();
                }
                notified.await;
            }
        };
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(frames) => frames,
            Err(_) => panic!(
                "session {} of user {} got {} frames, expected {n}: {:?}",
                self.handle.id,
                self.handle.user,
                self.frames().len(),
                self.events()
            ),
        }
    }

    /// Waits until a frame that `pred` accepts was recorded after the `seen` first
    /// ones; the first such.
    pub async fn wait_until(
        &self,
        seen: usize,
        what: &str,
        pred: impl Fn(&Frame) -> bool,
    ) -> Frame {
        let wait = async {
            loop {
                let notified = self.inbox.arrived.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(f) = self.frames().into_iter().skip(seen).find(|f| pred(f)) {
                    return f;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(frame) => frame,
            Err(_) => panic!(
                "session {} of user {} got no {what}: {:?}",
                self.handle.id,
                self.handle.user,
                self.events()
            ),
        }
    }

    /// Waits for the next frame after the `seen` first ones.
    pub async fn next_frame(&self, seen: usize) -> Frame {
        self.wait_frames(seen + 1).await.swap_remove(seen)
    }

    /// Every frame queued for it so far, once recorded (nothing in flight is missed).
    pub async fn settled(&self) -> Vec<Frame> {
        self.addr.send(Flush).await.expect("the fake session runs");
        self.frames()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CAT: UserId = UserId(3);

    fn new_message(chat: ChatId, sender: UserId, client_id: &str) -> NewMessage {
        NewMessage {
            chat_id: chat,
            sender_id: sender,
            client_id: client_id.into(),
            kind: MessageKind::Text,
            content: "hi".into(),
            audio_id: None,
            encrypted: false,
            e2ee: None,
        }
    }

    fn ids(ms: &[Message]) -> Vec<u64> {
        ms.iter().map(|m| m.id.0).collect()
    }

    #[actix::test]
    async fn the_memory_store_keeps_the_rules_the_actors_rely_on() {
        let s = MemoryStore::new();
        s.add_chat(ChatId(1), ChatKind::Direct, &[ANN, BOB]);
        s.add_chat(ChatId(2), ChatKind::Group, &[ANN, BOB, CAT]);
        let out = s
            .insert_messages(&[
                new_message(ChatId(1), ANN, "a"),
                new_message(ChatId(2), BOB, "b"),
                new_message(ChatId(1), ANN, "a"),
            ])
            .await
            .expect("stored");
        let got: Vec<(u64, bool)> = out
            .iter()
            .map(|o| match o {
                Inserted::Fresh(m) => (m.id.0, true),
                Inserted::Existing(m) => (m.id.0, false),
                Inserted::Rejected { .. } => (0, false),
            })
            .collect();
        assert_eq!(
            got,
            [(1, true), (2, true), (1, false)],
            "ids grow; clientId is idempotent"
        );
        assert_eq!(
            ids(&s.undelivered(BOB, MessageId(0), 10).await.expect("ok")),
            [1]
        );
        assert_eq!(
            ids(&s.undelivered(CAT, MessageId(0), 10).await.expect("ok")),
            [2]
        );
        assert_eq!(
            ids(&s.messages_after(ANN, MessageId(1), 10).await.expect("ok")),
            [2]
        );
        assert_eq!(
            s.with_undelivered(&[ANN, BOB, CAT]).await.expect("ok"),
            [ANN, BOB, CAT]
        );
        let receipts = s
            .mark_delivered(&[(BOB, vec![MessageId(1), MessageId(2)])])
            .await
            .expect("ok");
        assert_eq!(receipts[0].len(), 1, "one's own message is no receipt");
        assert_eq!(receipts[0][0].sender_id, ANN);
        assert!(s
            .undelivered(BOB, MessageId(0), 10)
            .await
            .expect("ok")
            .is_empty());
        assert!(matches!(
            s.mark_read(CAT, ChatId(1), MessageId(1)).await,
            Ok(ReadOutcome::NotMember)
        ));
        assert!(matches!(
            s.mark_read(CAT, ChatId(2), MessageId(2)).await,
            Ok(ReadOutcome::Advanced { notify, .. }) if notify == [ANN, BOB]
        ));
        assert!(matches!(
            s.mark_read(CAT, ChatId(2), MessageId(2)).await,
            Ok(ReadOutcome::Unchanged)
        ));
        assert_eq!(s.direct_chat(BOB, ANN).await.expect("ok"), Some(ChatId(1)));
        assert_eq!(s.direct_chat(BOB, CAT).await.expect("ok"), None);
        assert_eq!(s.contacts(CAT).await.expect("ok"), [ANN, BOB]);
        assert_eq!(s.newest_message_id().await.expect("ok"), MessageId(2));
        s.foreign_audio(AudioId(5));
        let mut audio = new_message(ChatId(1), ANN, "v");
        audio.audio_id = Some(AudioId(5));
        assert!(matches!(
            s.insert_messages(&[audio]).await.expect("ok")[0],
            Inserted::Rejected { .. }
        ));
    }

    #[actix::test]
    async fn the_memory_store_fails_and_stalls_when_told() {
        let s = MemoryStore::new();
        s.fail(Op::IsMember, Failure::Unavailable, 1);
        assert!(s
            .is_member(ANN, ChatId(1))
            .await
            .is_err_and(|e| is_unavailable(&e)));
        assert_eq!(
            s.is_member(ANN, ChatId(1)).await.ok(),
            Some(false),
            "once only"
        );
        let gate = s.stall(Op::Contacts);
        let s2 = s.clone();
        let call = actix::spawn(async move { s2.contacts(ANN).await });
        s.called(Op::Contacts, 1).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!call.is_finished(), "stalled");
        gate.add_permits(1);
        assert!(call.await.expect("task").is_ok());
        assert_eq!(s.log(), [Op::IsMember, Op::IsMember, Op::Contacts]);
    }
}
