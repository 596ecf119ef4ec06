//! Where each user's live sessions are. The presence registry is the only writer
//! (it owns the 0→1 and 1→0 transitions); rooms, calls and receipts read it to fan
//! out without a round trip through a central actor on every message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;
use dashmap::DashMap;
use smallvec::SmallVec;

use crate::ids::{MessageId, SessionId, UserId};
use crate::session::Session;

/// One encoded frame for a session. `message` is set for `message:received`, so a
/// session catching up after connect can drop a live copy it already sent.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frame: ByteString,
    pub message: Option<MessageId>,
}

impl Deliver {
    pub fn frame(frame: ByteString) -> Deliver {
        Deliver {
            frame,
            message: None,
        }
    }
}

/// How other actors reach one session.
#[derive(Clone)]
pub struct SessionHandle {
    pub id: SessionId,
    pub user: UserId,
    addr: Addr<Session>,
    /// Set when a frame could not be queued: the session closes itself (the client
    /// reconnects and `sync`s) instead of being buffered without bound.
    overflow: Arc<AtomicBool>,
}

impl SessionHandle {
    pub(crate) fn new(id: SessionId, user: UserId, addr: Addr<Session>) -> SessionHandle {
        SessionHandle {
            id,
            user,
            addr,
            overflow: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Queues a frame without waiting; a full mailbox marks the session for closing.
    pub fn deliver(&self, d: Deliver) {
        match self.addr.try_send(d) {
            Ok(()) => {}
            Err(SendError::Full(_)) => {
                if !self.overflow.swap(true, Ordering::AcqRel) {
                    tracing::warn!(session = %self.id, user = %self.user, "session mailbox full; closing it");
                }
            }
            Err(SendError::Closed(_)) => {}
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.overflow.load(Ordering::Acquire)
    }

    pub fn addr(&self) -> &Addr<Session> {
        &self.addr
    }
}

#[derive(Clone, Default)]
pub struct SessionDirectory {
    map: Arc<DashMap<UserId, SmallVec<[SessionHandle; 2]>>>,
}

impl SessionDirectory {
    /// Adds a session; true when it is the user's first.
    pub(crate) fn insert(&self, handle: SessionHandle) -> bool {
        let mut entry = self.map.entry(handle.user).or_default();
        let first = entry.is_empty();
        if !entry.iter().any(|h| h.id == handle.id) {
            entry.push(handle);
        }
        first
    }

    /// Removes a session (idempotent); true when it was the user's last.
    pub(crate) fn remove(&self, user: UserId, session: SessionId) -> bool {
        let mut last = false;
        let mut had = false;
        if let Some(mut entry) = self.map.get_mut(&user) {
            let before = entry.len();
            entry.retain(|h| h.id != session);
            had = entry.len() < before;
            last = entry.is_empty();
        }
        if last {
            self.map.remove_if(&user, |_, v| v.is_empty());
        }
        had && last
    }

    pub fn is_online(&self, user: UserId) -> bool {
        self.map.get(&user).is_some_and(|v| !v.is_empty())
    }

    /// Calls `f` for each live session of `user`.
    pub fn for_each(&self, user: UserId, mut f: impl FnMut(&SessionHandle)) {
        if let Some(entry) = self.map.get(&user) {
            for h in entry.iter() {
                f(h);
            }
        }
    }

    /// Sends `d` to every session of `user`, except `skip`.
    pub fn deliver_to_user(&self, user: UserId, d: &Deliver, skip: Option<SessionId>) {
        self.for_each(user, |h| {
            if Some(h.id) != skip {
                h.deliver(d.clone());
            }
        });
    }

    pub fn sessions_of(&self, user: UserId) -> SmallVec<[SessionHandle; 2]> {
        self.map.get(&user).map(|e| e.clone()).unwrap_or_default()
    }

    /// How many users have at least one session here.
    pub fn online_users(&self) -> usize {
        self.map.len()
    }
}
