//! The in-memory [`Store`] of the test kit: it follows the rules of `src/db` where
//! the actors depend on them (ids grow, `(sender, clientId)` is idempotent,
//! delivered/read are per-member watermarks, a call leaves a `call` message, an
//! upload is claimed once by its uploader's message in its chat), logs
//! every call and can be told to fail or stall. It does not check what only the
//! routes check (e.g. group sizes).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore};

use super::PATIENCE;
use crate::attachment::{self, MediaInfo, MediaKind};
use crate::error_code::ErrorCode;
use crate::ids::{ChangeId, ChatId, MediaId, MessageId, UserId};
use crate::protocol::MessageKind;
use crate::store::{
    reply_preview, AudioInfo, CallRecord, Change, ChangeKind, ChangeTarget, ChatKind, ChatMembers,
    Edit, EditBody, Inserted, Message, MessageStatus, NewMessage, ReactOutcome, Reaction,
    ReadOutcome, Receipt, ReplyTo, Store, StoreError, REACTION_USERS_LISTED,
};
use crate::time::Timestamp;

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
    ChangeTarget,
    EditMessage,
    DeleteMessage,
    React,
    ChangesAfter,
    LastChanges,
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

/// An upload as `POST /api/media` leaves it.
struct Upload {
    uploader: UserId,
    chat: ChatId,
    info: MediaInfo,
    encrypted: bool,
    /// The message that claimed it.
    message: Option<MessageId>,
}

#[derive(Default)]
struct State {
    chats: BTreeMap<ChatId, Chat>,
    /// Every message, oldest (lowest id) first.
    messages: Vec<Message>,
    by_client: HashMap<(UserId, String), usize>,
    /// Uploads still stored (a delete for everyone removes its message's).
    uploads: HashMap<MediaId, Upload>,
    last_seen: HashMap<UserId, Timestamp>,
    calls: Vec<CallRecord>,
    log: Vec<Op>,
    batches: Vec<Vec<NewMessage>>,
    failures: HashMap<Op, (Failure, usize)>,
    /// Every change, oldest first (ids from 1).
    changes: Vec<Change>,
    /// (message, user, emoji), in the order added.
    reactions: Vec<(MessageId, UserId, String)>,
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

    /// An upload by `uploader` into `chat`, not yet sent, as `POST /api/media` stores
    /// it: an image (640 × 480, with a thumbnail), a voice message or a file; an
    /// `encrypted` one is opaque bytes, stored as a file whatever `kind` says.
    pub fn add_upload(
        &self,
        id: MediaId,
        uploader: UserId,
        chat: ChatId,
        kind: MediaKind,
        encrypted: bool,
    ) {
        let kind = if encrypted { MediaKind::File } else { kind };
        let image = kind == MediaKind::Image;
        let (mime, name) = match kind {
            MediaKind::Image => ("image/png", "photo.png"),
            MediaKind::Audio => ("audio/webm", "voice.webm"),
            MediaKind::File => ("application/octet-stream", "notes.pdf"),
        };
        let info = MediaInfo {
            media_id: id,
            kind,
            mime: mime.into(),
            bytes: 1234,
            name: name.into(),
            url: attachment::media_url(id),
            width: image.then_some(640),
            height: image.then_some(480),
            thumbnail_url: image.then(|| attachment::thumbnail_url(id)),
            duration_ms: (kind == MediaKind::Audio).then_some(1500),
        };
        self.state().uploads.insert(
            id,
            Upload {
                uploader,
                chat,
                info,
                encrypted,
                message: None,
            },
        );
    }

    /// `None` when the upload is gone (never made, or deleted with its message), else
    /// the message that claimed it, if any.
    pub fn upload_claim(&self, id: MediaId) -> Option<Option<MessageId>> {
        self.state().uploads.get(&id).map(|u| u.message)
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
                media_id: None,
                encrypted: false,
                e2ee: None,
                reply_to: None,
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
        let reply_to = match m.reply_to {
            None => None,
            Some(r) => match st
                .messages
                .iter()
                .find(|o| o.id == r && o.chat_id == m.chat_id)
            {
                Some(o) => Some(ReplyTo {
                    id: o.id,
                    sender_id: o.sender_id,
                    kind: o.kind,
                    preview: reply_preview(o.kind, o.encrypted, o.deleted, &o.content),
                    deleted: o.deleted,
                }),
                None => {
                    return Inserted::Rejected {
                        code: ErrorCode::InvalidData,
                        message: "replyToId is not a message of this chat".into(),
                    }
                }
            },
        };
        if let Some(media) = m.media_id {
            let Some(up) = st.uploads.get(&media).filter(|u| {
                u.uploader == m.sender_id && u.chat == m.chat_id && u.message.is_none()
            }) else {
                return Inserted::Rejected {
                    code: ErrorCode::Forbidden,
                    message: attachment::NOT_YOURS.into(),
                };
            };
            let refused =
                attachment::refusal(m.kind.media_kind(), m.encrypted, up.info.kind, up.encrypted);
            if let Some(message) = refused {
                return Inserted::Rejected {
                    code: ErrorCode::InvalidData,
                    message,
                };
            }
        }
        let id = MessageId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let media = m.media_id.and_then(|media| {
            let up = st.uploads.get_mut(&media)?;
            up.message = Some(id);
            Some(up.info.clone())
        });
        let audio = media
            .as_ref()
            .filter(|_| m.kind == MessageKind::Audio)
            .map(AudioInfo::of);
        let message = Message {
            id,
            chat_id: m.chat_id,
            sender_id: m.sender_id,
            client_id: m.client_id.clone(),
            kind: m.kind,
            content: m.content.clone(),
            audio,
            media,
            encrypted: m.encrypted,
            e2ee: m.e2ee.clone(),
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            created_at: Timestamp::now(),
            status: MessageStatus::Sent,
        };
        let message = Message {
            reply_to,
            ..message
        };
        st.by_client.insert(key, st.messages.len());
        st.messages.push(message.clone());
        Inserted::Fresh(message)
    }

    /// `m` with its current reactions, as a read shows it.
    fn read(st: &State, m: &Message) -> Message {
        let mut m = m.clone();
        let mut reactions: Vec<Reaction> = Vec::new();
        for (id, user, emoji) in &st.reactions {
            if *id != m.id {
                continue;
            }
            match reactions.iter_mut().find(|r| &r.emoji == emoji) {
                Some(r) => {
                    r.count += 1;
                    if r.user_ids.len() < REACTION_USERS_LISTED {
                        r.user_ids.push(*user);
                    }
                }
                None => reactions.push(Reaction {
                    emoji: emoji.clone(),
                    count: 1,
                    user_ids: vec![*user],
                }),
            }
        }
        m.reactions = reactions;
        m
    }

    fn log_change(
        st: &mut State,
        chat_id: ChatId,
        message_id: MessageId,
        what: ChangeKind,
    ) -> ChangeId {
        let id = ChangeId(st.changes.len() as u64 + 1);
        st.changes.push(Change {
            id,
            chat_id,
            message_id,
            what,
        });
        id
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
            .map(|m| Self::read(st, m))
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
            admins: Vec::new(),
            blocked: false,
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
                media_id: None,
                encrypted: false,
                e2ee: None,
                reply_to: None,
            },
        );
        Ok(match inserted {
            Inserted::Fresh(m) | Inserted::Existing(m) => Some(m),
            Inserted::Rejected { .. } => None,
        })
    }

    async fn change_target(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<ChangeTarget>, StoreError> {
        self.enter(Op::ChangeTarget).await?;
        let st = self.state();
        let Some(m) = st.messages.iter().find(|m| m.id == id) else {
            return Ok(None);
        };
        let Some(chat) = st
            .chats
            .get(&m.chat_id)
            .filter(|c| c.members.contains(&user))
        else {
            return Ok(None);
        };
        Ok(Some(ChangeTarget {
            members: ChatMembers {
                chat: m.chat_id,
                kind: chat.kind,
                members: chat.members.clone(),
                admins: Vec::new(),
                blocked: false,
            },
            sender_id: m.sender_id,
            kind: m.kind,
            encrypted: m.encrypted,
            deleted: m.deleted,
            created_at: m.created_at,
        }))
    }

    async fn edit_message(&self, edit: &Edit) -> Result<Option<(Message, ChangeId)>, StoreError> {
        self.enter(Op::EditMessage).await?;
        let mut st = self.state();
        let Some(i) = st
            .messages
            .iter()
            .position(|m| m.id == edit.message && m.sender_id == edit.editor && !m.deleted)
        else {
            return Ok(None);
        };
        {
            let m = &mut st.messages[i];
            match &edit.body {
                EditBody::Text(t) => m.content = t.clone(),
                EditBody::Envelope(e) => m.e2ee = Some(e.clone()),
            }
            m.edited_at = Some(Timestamp::now());
        }
        let m = Self::read(&st, &st.messages[i]);
        let change = Self::log_change(
            &mut st,
            m.chat_id,
            m.id,
            ChangeKind::Edited(Box::new(m.clone())),
        );
        Ok(Some((m, change)))
    }

    async fn delete_message(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<ChangeId>, StoreError> {
        self.enter(Op::DeleteMessage).await?;
        let mut st = self.state();
        let Some(i) = st
            .messages
            .iter()
            .position(|m| m.id == id && m.sender_id == user && !m.deleted)
        else {
            return Ok(None);
        };
        let chat = {
            let m = &mut st.messages[i];
            m.deleted = true;
            m.content.clear();
            m.e2ee = None;
            m.audio = None;
            m.media = None;
            m.chat_id
        };
        // The upload goes with it (src/db removes the row and the files).
        st.uploads.retain(|_, u| u.message != Some(id));
        st.reactions.retain(|(m, _, _)| *m != id);
        Ok(Some(Self::log_change(
            &mut st,
            chat,
            id,
            ChangeKind::Deleted,
        )))
    }

    async fn react(
        &self,
        user: UserId,
        id: MessageId,
        emoji: &str,
        active: bool,
        max_distinct: u32,
    ) -> Result<ReactOutcome, StoreError> {
        self.enter(Op::React).await?;
        let mut st = self.state();
        let Some(m) = st.messages.iter().find(|m| m.id == id) else {
            return Ok(ReactOutcome::Deleted);
        };
        if m.deleted {
            return Ok(ReactOutcome::Deleted);
        }
        let chat = m.chat_id;
        let has = |st: &State| {
            st.reactions
                .iter()
                .any(|(m, u, e)| *m == id && *u == user && e == emoji)
        };
        if active == has(&st) {
            return Ok(ReactOutcome::Unchanged);
        }
        if active {
            let mine = st
                .reactions
                .iter()
                .filter(|(m, u, _)| *m == id && *u == user)
                .count() as u32;
            if mine >= max_distinct {
                return Ok(ReactOutcome::TooMany);
            }
            st.reactions.push((id, user, emoji.to_owned()));
        } else {
            st.reactions
                .retain(|(m, u, e)| !(*m == id && *u == user && e == emoji));
        }
        let count = st
            .reactions
            .iter()
            .filter(|(m, _, e)| *m == id && e == emoji)
            .count() as u32;
        let what = ChangeKind::Reaction {
            user,
            emoji: emoji.to_owned(),
            active,
            count,
        };
        let change = Self::log_change(&mut st, chat, id, what);
        Ok(ReactOutcome::Changed { change, count })
    }

    async fn changes_after(
        &self,
        user: UserId,
        after: ChangeId,
        limit: u32,
    ) -> Result<Vec<Change>, StoreError> {
        self.enter(Op::ChangesAfter).await?;
        let st = self.state();
        Ok(st
            .changes
            .iter()
            .filter(|c| c.id > after)
            .filter(|c| {
                st.chats
                    .get(&c.chat_id)
                    .is_some_and(|ch| ch.members.contains(&user))
            })
            .take(limit as usize)
            .map(|c| match &c.what {
                // A replayed edit shows the message as it is now.
                ChangeKind::Edited(_) => Change {
                    what: ChangeKind::Edited(
                        st.messages
                            .iter()
                            .find(|m| m.id == c.message_id)
                            .map(|m| Box::new(Self::read(&st, m)))
                            .expect("an edited message exists"),
                    ),
                    ..c.clone()
                },
                _ => c.clone(),
            })
            .collect())
    }

    async fn last_changes(&self, users: &[UserId]) -> Result<Vec<ChangeId>, StoreError> {
        self.enter(Op::LastChanges).await?;
        let st = self.state();
        Ok(users
            .iter()
            .map(|u| {
                st.changes
                    .iter()
                    .rev()
                    .find(|c| {
                        st.chats
                            .get(&c.chat_id)
                            .is_some_and(|ch| ch.members.contains(u))
                    })
                    .map_or(ChangeId(0), |c| c.id)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            media_id: None,
            encrypted: false,
            e2ee: None,
            reply_to: None,
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
    }

    /// The code a message naming `media` was refused with, or `None` when stored.
    async fn refused(s: &MemoryStore, m: NewMessage) -> Option<ErrorCode> {
        match &s.insert_messages(&[m]).await.expect("ok")[0] {
            Inserted::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn carrying(
        sender: UserId,
        client_id: &str,
        kind: MessageKind,
        media: u64,
        encrypted: bool,
    ) -> NewMessage {
        NewMessage {
            kind,
            media_id: Some(MediaId(media)),
            content: String::new(),
            encrypted,
            ..new_message(ChatId(1), sender, client_id)
        }
    }

    #[actix::test]
    async fn the_memory_store_claims_an_upload_once_by_the_rules_of_src_db() {
        use MessageKind::{Audio, File, Image};
        let s = MemoryStore::new();
        s.add_chat(ChatId(1), ChatKind::Direct, &[ANN, BOB]);
        s.add_chat(ChatId(2), ChatKind::Group, &[ANN, BOB, CAT]);
        s.add_upload(MediaId(1), ANN, ChatId(1), MediaKind::Image, false);
        s.add_upload(MediaId(2), ANN, ChatId(2), MediaKind::Image, false);
        s.add_upload(MediaId(3), ANN, ChatId(1), MediaKind::File, true);
        s.add_upload(MediaId(4), ANN, ChatId(1), MediaKind::Audio, false);
        for (why, m, code) in [
            (
                "someone else's",
                carrying(BOB, "b", Image, 1, false),
                ErrorCode::Forbidden,
            ),
            (
                "another chat's",
                carrying(ANN, "a", Image, 2, false),
                ErrorCode::Forbidden,
            ),
            (
                "no such upload",
                carrying(ANN, "a", Image, 99, false),
                ErrorCode::Forbidden,
            ),
            (
                "an image as a file",
                carrying(ANN, "a", File, 1, false),
                ErrorCode::InvalidData,
            ),
            (
                "plaintext in an encrypted message",
                carrying(ANN, "a", Image, 1, true),
                ErrorCode::InvalidData,
            ),
            (
                "an encrypted upload in plaintext",
                carrying(ANN, "a", File, 3, false),
                ErrorCode::InvalidData,
            ),
        ] {
            assert_eq!(refused(&s, m).await, Some(code), "{why}");
        }
        assert!(s.messages().is_empty(), "nothing refused is stored");
        assert_eq!(s.upload_claim(MediaId(1)), Some(None));
        assert_eq!(
            refused(&s, carrying(ANN, "img", Image, 1, false)).await,
            None
        );
        assert_eq!(
            refused(&s, carrying(ANN, "again", Image, 1, false)).await,
            Some(ErrorCode::Forbidden),
            "claimed once"
        );
        assert_eq!(
            refused(&s, carrying(ANN, "sealed", Image, 3, true)).await,
            None
        );
        assert_eq!(
            refused(&s, carrying(ANN, "voice", Audio, 4, false)).await,
            None
        );
        let stored = s.messages();
        assert_eq!(stored.len(), 3);
        let image = stored[0].media.as_ref().expect("media");
        assert_eq!(
            (image.kind, image.width, image.height),
            (MediaKind::Image, Some(640), Some(480))
        );
        assert!(
            stored[0].audio.is_none(),
            "audio is for audio messages only"
        );
        let voice = &stored[2];
        assert_eq!(voice.audio.as_ref().map(|a| a.audio_id.0), Some(4));
        assert_eq!(voice.media.as_ref().map(|m| m.kind), Some(MediaKind::Audio));
        assert_eq!(s.upload_claim(MediaId(1)), Some(Some(stored[0].id)));
        s.delete_message(ANN, stored[0].id).await.expect("ok");
        assert_eq!(s.upload_claim(MediaId(1)), None, "deleted with its message");
        assert!(s.messages()[0].media.is_none());
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
