//! Test fixtures for the cluster seam: in-process nodes linked by one in-memory
//! `Hub`, a store that keeps only what presence needs, and stand-in sessions that
//! record what they are sent. (The general actor test kit is `testing.rs`; this
//! file holds only what the seam's tests need.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_trait::async_trait;

use crate::cluster::{Hub, Local};
use crate::directory::{Deliver, SessionHandle};
use crate::ids::{ChatId, MessageId, SessionId, UserId};
use crate::messages::{SessionClosed, SessionOpened};
use crate::realtime::Realtime;
use crate::settings::RealtimeSettings;
use crate::store::{
    CallRecord, ChatKind, ChatMembers, Inserted, Message, NewMessage, ReadOutcome, Receipt, Store,
    StoreError,
};
use crate::time::Timestamp;

/// A store with contacts, last-seen times, direct chats and call records;
/// everything else is empty.
#[derive(Default)]
pub struct SeamStore {
    pub contacts: Mutex<HashMap<UserId, Vec<UserId>>>,
    pub last_seen: Mutex<HashMap<UserId, Timestamp>>,
    pub direct: Mutex<HashMap<ChatId, [UserId; 2]>>,
    pub calls: Mutex<Vec<CallRecord>>,
}

impl SeamStore {
    pub fn with_direct_chat(self, chat: ChatId, a: UserId, b: UserId) -> SeamStore {
        self.direct.lock().expect("lock").insert(chat, [a, b]);
        self
    }

    pub fn last_seen(&self, user: UserId) -> Option<Timestamp> {
        self.last_seen.lock().expect("lock").get(&user).copied()
    }
}

#[async_trait]
impl Store for SeamStore {
    async fn chat_members(&self, chat: ChatId) -> Result<Option<ChatMembers>, StoreError> {
        Ok(self
            .direct
            .lock()
            .expect("lock")
            .get(&chat)
            .map(|m| ChatMembers {
                chat,
                kind: ChatKind::Direct,
                members: m.to_vec(),
            }))
    }
    async fn insert_messages(&self, _: &[NewMessage]) -> Result<Vec<Inserted>, StoreError> {
        Ok(Vec::new())
    }
    async fn mark_delivered(
        &self,
        batch: &[(UserId, Vec<MessageId>)],
    ) -> Result<Vec<Vec<Receipt>>, StoreError> {
        Ok(vec![Vec::new(); batch.len()])
    }
    async fn mark_read(
        &self,
        _: UserId,
        _: ChatId,
        _: MessageId,
    ) -> Result<ReadOutcome, StoreError> {
        Ok(ReadOutcome::NotMember)
    }
    async fn undelivered(
        &self,
        _: UserId,
        _: MessageId,
        _: u32,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(Vec::new())
    }
    async fn messages_after(
        &self,
        _: UserId,
        _: MessageId,
        _: u32,
    ) -> Result<Vec<Message>, StoreError> {
        Ok(Vec::new())
    }
    async fn is_member(&self, _: UserId, _: ChatId) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn direct_chat(&self, a: UserId, b: UserId) -> Result<Option<ChatId>, StoreError> {
        Ok(self
            .direct
            .lock()
            .expect("lock")
            .iter()
            .find(|(_, m)| m.contains(&a) && m.contains(&b))
            .map(|(c, _)| *c))
    }
    async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
        Ok(self
            .contacts
            .lock()
            .expect("lock")
            .get(&user)
            .cloned()
            .unwrap_or_default())
    }
    async fn contacts_of(&self, users: &[UserId]) -> Result<Vec<Vec<UserId>>, StoreError> {
        let map = self.contacts.lock().expect("lock");
        Ok(users
            .iter()
            .map(|u| map.get(u).cloned().unwrap_or_default())
            .collect())
    }
    async fn with_undelivered(&self, _: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        Ok(Vec::new())
    }
    async fn set_last_seen(&self, user: UserId, at: Timestamp) -> Result<(), StoreError> {
        self.last_seen.lock().expect("lock").insert(user, at);
        Ok(())
    }
    async fn newest_message_id(&self) -> Result<MessageId, StoreError> {
        Ok(MessageId(0))
    }
    async fn record_call(&self, call: &CallRecord) -> Result<Option<Message>, StoreError> {
        self.calls.lock().expect("lock").push(call.clone());
        Ok(None)
    }
}

/// Every frame a stand-in session was sent, decoded.
pub type Frames = Arc<Mutex<Vec<serde_json::Value>>>;

/// A stand-in for a session: records what it is sent.
pub struct FakeSession {
    frames: Frames,
}

impl Actor for FakeSession {
    type Context = Context<Self>;
}

impl Handler<Deliver> for FakeSession {
    type Result = ();

    fn handle(&mut self, d: Deliver, _: &mut Context<Self>) {
        let v = serde_json::from_str(&d.frame).expect("frames are JSON");
        self.frames.lock().expect("lock").push(v);
    }
}

/// The realtime settings the seam's tests run with (small: nothing here is load).
pub fn settings() -> RealtimeSettings {
    RealtimeSettings {
        ws_frame_bytes: 64 * 1024,
        outbound_bytes: 4 * 1024 * 1024,
        events_per_sec: 50,
        events_burst: 200,
        ping_interval: Duration::from_secs(10),
        client_timeout: Duration::from_secs(30),
        writer_lanes: 1,
        room_idle: crate::settings::ROOM_IDLE,
        room_arbiters: 1,
        ring_timeout: Duration::from_secs(45),
        signal_max_bytes: crate::settings::SIGNAL_MAX_BYTES,
    }
}

/// A node of the in-memory cluster `hub`.
pub fn node(hub: &Arc<Hub>, store: Arc<dyn Store>) -> Realtime {
    Realtime::start_on(store, settings(), Arc::new(Local::on(hub)))
}

/// A stand-in session of `user` registered with `node`'s presence, with `contacts`.
pub struct Opened {
    pub id: SessionId,
    pub user: UserId,
    pub frames: Frames,
    _addr: Addr<FakeSession>,
}

impl Opened {
    /// This session as the actors see it, on the node it was opened on.
    pub fn handle(&self) -> SessionHandle {
        SessionHandle::new(self.id, self.user, self._addr.clone().recipient())
    }
}

pub async fn open(node: &Realtime, id: u64, user: UserId, contacts: &[UserId]) -> Opened {
    let frames = Frames::default();
    let addr = FakeSession {
        frames: frames.clone(),
    }
    .start();
    let (listed, on_listed) = tokio::sync::oneshot::channel();
    node.presence.do_send(SessionOpened {
        handle: SessionHandle::new(SessionId(id), user, addr.clone().recipient()),
        contacts: contacts.to_vec(),
        listed,
    });
    tokio::time::timeout(Duration::from_secs(5), on_listed)
        .await
        .expect("listed in time")
        .expect("listed");
    Opened {
        id: SessionId(id),
        user,
        frames,
        _addr: addr,
    }
}

pub fn close(node: &Realtime, s: &Opened) {
    node.presence.do_send(SessionClosed {
        user: s.user,
        session: s.id,
    });
}

/// The frames of `event` that `frames` holds.
pub fn events(frames: &Frames, event: &str) -> Vec<serde_json::Value> {
    frames
        .lock()
        .expect("lock")
        .iter()
        .filter(|f| f["event"] == event)
        .cloned()
        .collect()
}

/// Waits until `frames` holds `n` frames of `event` (fails after 5 s).
pub async fn until_events(frames: &Frames, event: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while events(frames, event).len() < n {
        assert!(
            Instant::now() < deadline,
            "waited for {n} {event}; frames: {:?}",
            frames.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lets every queued actor message run (nothing in these tests waits on I/O).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}
