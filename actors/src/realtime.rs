//! The handle the HTTP layer holds: starts the actors and answers the questions
//! the routes ask of them (who is online, may this user open a socket, drain).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::bus::Bus;
use crate::call::CallDirectory;
use crate::cluster::{self, Cluster, ClusterSettings, Inbox};
use crate::directory::{Deliver, SessionDirectory};
use crate::ids::{AuthSessionId, ChatId, UserId};
use crate::messages::{Close, ContactsAdded, ContactsRemoved, Control};
use crate::metrics::Metrics;
use crate::presence::PresenceRegistry;
use crate::protocol;
use crate::room::{MembersChanged, RoomDirectory};
use crate::settings::RealtimeSettings;
use crate::shared::Shared;
use crate::store::Store;
use crate::writer::Writer;

/// The close code of a socket whose sign-in was revoked (private use range 4000+).
pub const REVOKED_CLOSE_CODE: u16 = 4001;

/// Why a WebSocket may not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenRefused {
    TooManySessions,
    ServerFull,
}

/// The handle to the running actors (cheap to clone; one per application).
#[derive(Clone)]
pub struct Realtime {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rooms: Addr<RoomDirectory>,
    pub(crate) presence: Addr<PresenceRegistry>,
    pub(crate) calls: Addr<CallDirectory>,
    pub(crate) next_session: Arc<AtomicU64>,
}

impl Realtime {
    /// Starts the registry, directories, room arbiters and writer lanes, on Redis
    /// when `cluster` is set, else as a node of its own. Call it inside the actix
    /// system, before the HTTP server, so every worker shares them.
    pub fn start(
        store: Arc<dyn Store>,
        settings: RealtimeSettings,
        cluster: Option<ClusterSettings>,
    ) -> Realtime {
        let cluster = cluster::connect(cluster.as_ref());
        Realtime::start_on(store, settings, cluster)
    }

    /// As [`Realtime::start`], as a node of the given cluster (tests link several
    /// in-process nodes through one `cluster::Hub`).
    pub fn start_on(
        store: Arc<dyn Store>,
        settings: RealtimeSettings,
        cluster: Arc<dyn Cluster>,
    ) -> Realtime {
        let directory = SessionDirectory::default();
        let shared = Arc::new(Shared::new(
            store.clone(),
            Bus::new(directory.clone(), cluster.clone()),
            settings,
        ));
        let writer = Writer::start(store.clone(), shared.settings.writer_lanes);
        let arbiters = (0..shared.settings.room_arbiters)
            .map(|_| Arbiter::new().handle())
            .collect();
        let rooms =
            RoomDirectory::new(shared.clone(), writer, arbiters, shared.settings.room_idle).start();
        let presence = PresenceRegistry::new(shared.clone()).start();
        let calls = CallDirectory::new(shared.clone()).start();
        cluster.start(Inbox {
            directory,
            sessions: shared.sessions.clone(),
            store,
            reannounce: presence.clone().recipient(),
            reaped: presence.clone().recipient(),
            calls: calls.clone().recipient(),
            gone: calls.clone().recipient(),
            rooms: rooms.clone().recipient(),
        });
        Realtime {
            shared,
            rooms,
            presence,
            calls,
            next_session: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Attaches the Web Push engine: from now on the room and the call actors offer
    /// it events for users without a visible session (`push.rs`).
    pub fn attach_push(&self, sink: Arc<dyn crate::push::PushSink>) {
        self.shared.push.attach(sink);
    }

    /// Whether the cluster answers (always on one node: nothing to wait for).
    pub fn cluster_up(&self) -> bool {
        self.shared.bus.cluster().is_up()
    }

    /// Whether `user` has a session on any node.
    pub async fn is_online(&self, user: UserId) -> bool {
        self.online(&[user]).await.first().copied().unwrap_or(false)
    }

    /// Whether each of `users` has a session on any node (one cluster round trip
    /// for the lot, none for users connected here).
    pub async fn online(&self, users: &[UserId]) -> Vec<bool> {
        self.shared.bus.online(users).await
    }

    /// Whether each of `users` has a visible session (`client:state`; a session
    /// that never reported counts as visible) on any node: this node's directory
    /// first, then one pipelined cluster round trip for the rest. The push engine
    /// asks it before sending (the core offers only users not visible *here*).
    pub async fn visible_users(&self, users: &[UserId]) -> Vec<bool> {
        self.shared.bus.visible(users).await
    }

    pub fn bus(&self) -> &Bus {
        &self.shared.bus
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Graceful shutdown: new events are refused (`shutting_down`), every accepted
    /// message is stored and answered, then every socket is closed with 1001 so its
    /// client reconnects (to another instance). Bounded by `deadline`.
    pub async fn drain(&self, deadline: Duration) {
        let until = Instant::now() + deadline;
        self.shared.draining.store(true, Ordering::Release);
        while self.shared.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let open: Vec<Recipient<Control>> = self
            .shared
            .sessions
            .iter()
            .map(|e| e.value().clone())
            .collect();
        tracing::info!(sessions = open.len(), "closing WebSockets with 1001");
        for s in open {
            s.do_send(Control::Close(Close {
                code: 1001,
                reason: "server restarting; reconnect".into(),
            }));
        }
        while !self.shared.sessions.is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Closes every WebSocket of this process opened with one of `sids` (revoked
    /// sign-ins) with close code 4001, so its client knows to sign in again rather
    /// than reconnect. Sids with no socket here are skipped: each node is told of
    /// every revocation and only acts on its own sockets. Returns how many it closed.
    pub fn close_auth_sessions(&self, sids: &[AuthSessionId]) -> usize {
        let mut closed = 0;
        for sid in sids {
            let Some(open) = self.shared.by_auth.get(sid).map(|o| o.clone()) else {
                continue;
            };
            for id in open {
                if let Some(s) = self.shared.sessions.get(&id) {
                    s.do_send(Control::Close(Close {
                        code: REVOKED_CLOSE_CODE,
                        reason: "session revoked".into(),
                    }));
                    closed += 1;
                }
            }
        }
        closed
    }

    /// The sign-ins that have a WebSocket open here (they count as seen).
    pub fn open_auth_sessions(&self) -> Vec<AuthSessionId> {
        self.shared.by_auth.iter().map(|e| *e.key()).collect()
    }

    /// Whether `user` may open one more WebSocket here, given the caps.
    pub fn may_open(&self, user: UserId, per_user: usize, total: usize) -> Result<(), OpenRefused> {
        if self.shared.sessions.len() >= total {
            return Err(OpenRefused::ServerFull);
        }
        if self
            .shared
            .per_user
            .get(&user)
            .is_some_and(|n| *n >= per_user)
        {
            return Err(OpenRefused::TooManySessions);
        }
        Ok(())
    }

    /// Accepted `message:send` frames not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Tells the presence registry that these users now share a chat.
    pub fn contacts_added(&self, members: &[UserId]) {
        for &u in members {
            self.presence.do_send(ContactsAdded {
                user: u,
                contacts: members.to_vec(),
            });
        }
    }

    /// `a` blocked `b`: neither hears of the other's presence from this node's
    /// registry any more (other nodes' from their next connect: contacts are
    /// loaded without blocked pairs).
    pub fn contacts_removed(&self, a: UserId, b: UserId) {
        self.presence.do_send(ContactsRemoved { a, b });
    }

    /// The members of `chat` changed (added, removed, left), or a block in a direct
    /// chat: every node's room for it, if one runs, loads them again before it
    /// judges or fans out anything else (this node's directly, the others' through
    /// the cluster's `M` frame, as fast as a message travels).
    pub fn members_changed(&self, chat: ChatId) {
        self.rooms.do_send(MembersChanged { chat });
        self.shared.bus.cluster().chat_changed(chat);
    }

    /// Sends a message stored outside the send path (a group's system message) to
    /// every session of each of `users`, as `message:received` (with its id, so a
    /// catch-up in progress keeps one copy).
    pub fn deliver_message(&self, users: &[UserId], message: &crate::store::Message) {
        let d = Deliver {
            frame: protocol::encode(&protocol::ServerEvent::MessageReceived(message), None),
            message: Some(message.id),
        };
        self.shared.bus.to_users(users, &d, None);
    }

    /// Sends `event` to every session of each of `users`.
    pub fn notify_users(&self, users: &[UserId], event: &protocol::ServerEvent<'_>) {
        let d = Deliver::frame(protocol::encode(event, None));
        self.shared.bus.to_users(users, &d, None);
    }
}
