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

/// How a frame reaches a session on another node: the cluster seam implements it
/// (defined here, not there, so the directory needs nothing of the cluster).
pub trait RemoteRoute: Send + Sync + 'static {
    fn to_session(&self, node: &Arc<str>, session: SessionId, frame: ByteString);
}

/// How other actors reach one session: in this process, or on another node (the
/// frame then travels through the cluster to that node, which hands it to the session).
#[derive(Clone)]
pub struct SessionHandle {
    pub id: SessionId,
    pub user: UserId,
    route: Route,
}

#[derive(Clone)]
enum Route {
    Local {
        /// A role, not a type: rooms, calls and tests hand frames to anything that
        /// takes `Deliver` (a session, or a stand-in in unit tests).
        addr: Recipient<Deliver>,
        /// Set when a frame could not be queued: the session closes itself (the
        /// client reconnects and `sync`s) instead of being buffered without bound.
        overflow: Arc<AtomicBool>,
        /// What the client last reported with `client:state` (issue 20); true until
        /// it reports: script clients and the bench are reading actively.
        visible: Arc<AtomicBool>,
    },
    Remote {
        node: Arc<str>,
        via: Arc<dyn RemoteRoute>,
    },
}

impl SessionHandle {
    pub fn new(id: SessionId, user: UserId, addr: Recipient<Deliver>) -> SessionHandle {
        SessionHandle {
            id,
            user,
            route: Route::Local {
                addr,
                overflow: Arc::new(AtomicBool::new(false)),
                visible: Arc::new(AtomicBool::new(true)),
            },
        }
    }

    /// A session of `user` on another node.
    pub fn remote(
        id: SessionId,
        user: UserId,
        node: Arc<str>,
        via: Arc<dyn RemoteRoute>,
    ) -> SessionHandle {
        SessionHandle {
            id,
            user,
            route: Route::Remote { node, via },
        }
    }

    /// Queues a frame without waiting; a full mailbox marks the session for closing.
    pub fn deliver(&self, d: Deliver) {
        match &self.route {
            Route::Local { addr, overflow, .. } => match addr.try_send(d) {
                Ok(()) => {}
                Err(SendError::Full(_)) => {
                    if !overflow.swap(true, Ordering::AcqRel) {
                        tracing::warn!(session = %self.id, user = %self.user, "session mailbox full; closing it");
                    }
                }
                Err(SendError::Closed(_)) => {}
            },
            Route::Remote { node, via } => via.to_session(node, self.id, d.frame),
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        match &self.route {
            Route::Local { overflow, .. } => overflow.load(Ordering::Acquire),
            Route::Remote { .. } => false,
        }
    }

    /// Whether the client shows the page (`client:state`); never reported counts
    /// as visible. A remote handle answers false: its node tracks it.
    pub fn is_visible(&self) -> bool {
        match &self.route {
            Route::Local { visible, .. } => visible.load(Ordering::Relaxed),
            Route::Remote { .. } => false,
        }
    }

    /// Records what the client reported; true when that changed anything. Every
    /// clone of the handle (the directory's included) sees it.
    pub fn set_visible(&self, now: bool) -> bool {
        match &self.route {
            Route::Local { visible, .. } => visible.swap(now, Ordering::Relaxed) != now,
            Route::Remote { .. } => false,
        }
    }

    /// The node of a remote session; `None` for one in this process.
    pub fn node(&self) -> Option<&Arc<str>> {
        match &self.route {
            Route::Local { .. } => None,
            Route::Remote { node, .. } => Some(node),
        }
    }

    /// The same connection (same node, same id).
    pub fn same(&self, other: &SessionHandle) -> bool {
        self.id == other.id && self.node() == other.node()
    }

    pub fn is_local(&self) -> bool {
        self.node().is_none()
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

    /// Whether `user` has a session here whose page is visible (`client:state`).
    /// On the message path for every member: one shard read lock, no allocation.
    pub fn has_visible_session(&self, user: UserId) -> bool {
        self.map
            .get(&user)
            .is_some_and(|v| v.iter().any(SessionHandle::is_visible))
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

    /// Every user with a session here.
    pub fn users(&self) -> Vec<UserId> {
        self.map.iter().map(|e| *e.key()).collect()
    }

    /// Sends `d` to the session `id` of this process, if it is here.
    pub fn deliver_to_session(&self, id: SessionId, d: Deliver) {
        for entry in self.map.iter() {
            if let Some(h) = entry.value().iter().find(|h| h.id == id) {
                h.deliver(d);
                return;
            }
        }
    }

    /// How many users have at least one session here.
    pub fn online_users(&self) -> usize {
        self.map.len()
    }
}
