//! The realtime half of Parley: session, room, presence and call actors. It knows
//! nothing of MySQL: persistence comes in through the `Store` trait.

pub mod arrivals;
pub mod bus;
pub mod call;
pub mod cluster;
pub mod directory;
pub mod e2ee;
pub mod error_code;
pub mod ids;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod room;
pub mod session;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

pub use bus::Bus;
pub use directory::{Deliver, SessionDirectory};
pub use error_code::ErrorCode;
pub use ids::{AudioId, CallId, ChatId, MessageId, SessionId, UserId};
pub use metrics::Metrics;
pub use session::{RealtimeSettings, Session};
pub use store::Store;
pub use time::Timestamp;

/// What every realtime actor shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub bus: Bus,
    pub metrics: Metrics,
    pub settings: RealtimeSettings,
    /// Set on shutdown: sessions answer new events with `shutting_down`.
    pub(crate) draining: AtomicBool,
    /// `message:send` frames accepted and not yet answered (ack or error).
    pub(crate) in_flight: AtomicUsize,
    /// Every live session, registered or not, so shutdown can reach them all.
    pub(crate) sessions: dashmap::DashMap<SessionId, Addr<Session>>,
    pub(crate) receipts: writer::Receipts,
    /// Contacts and "anything waiting?" for sessions coming online, in batches.
    pub(crate) arrivals: arrivals::Arrivals,
    /// Open sessions per user in this process (registered or not).
    pub(crate) per_user: dashmap::DashMap<UserId, usize>,
    /// One clock for every session's rate limiter: making a clock reads CPUID, which
    /// traps to the hypervisor on a VM (tens of µs per connection); cloning one is free.
    pub(crate) clock: governor::clock::DefaultClock,
}

impl Shared {
    pub(crate) fn post_answered(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

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
    pub(crate) rooms: Addr<room::RoomDirectory>,
    pub(crate) presence: Addr<presence::PresenceRegistry>,
    pub(crate) calls: Addr<call::CallDirectory>,
    next_session: Arc<AtomicU64>,
}

impl Realtime {
    /// Starts the registry, directories, room arbiters and writer lanes. Call it inside
    /// the actix system, before the HTTP server, so every worker shares them.
    pub fn start(
        store: Arc<dyn Store>,
        settings: RealtimeSettings,
        cluster: Option<cluster::ClusterSettings>,
    ) -> Result<Realtime, cluster::anyhow_like::Error> {
        let cluster = cluster.as_ref().map(cluster::Cluster::new).transpose()?;
        let (cluster, tasks) = match cluster {
            Some((c, t)) => (Some(c), Some(t)),
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            store: store.clone(),
            bus: Bus::new(SessionDirectory::default(), cluster.clone()),
            metrics: Metrics::default(),
            settings,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            sessions: dashmap::DashMap::new(),
            receipts: writer::Receipts::start(store.clone()),
            arrivals: arrivals::Arrivals::start(store.clone()),
            per_user: dashmap::DashMap::new(),
            clock: governor::clock::DefaultClock::default(),
        });
        let writer = writer::Writer::start(store, shared.settings.writer_lanes);
        let arbiters = (0..shared.settings.room_arbiters)
            .map(|_| Arbiter::new().handle())
            .collect();
        let rooms =
            room::RoomDirectory::new(shared.clone(), writer, arbiters, shared.settings.room_idle)
                .start();
        let presence = presence::PresenceRegistry::new(shared.clone()).start();
        let calls = call::CallDirectory::new(shared.clone()).start();
        if let (Some(c), Some(t)) = (cluster, tasks) {
            let wiring = cluster::Wiring {
                shared: shared.clone(),
                presence: presence.clone(),
                calls: calls.clone(),
            };
            cluster::start(c, t, wiring);
        }
        Ok(Realtime {
            shared,
            rooms,
            presence,
            calls,
            next_session: Arc::new(AtomicU64::new(1)),
        })
    }

    /// Whether Redis answers (true when there is no Redis: nothing to wait for).
    pub fn cluster_up(&self) -> bool {
        self.shared.bus.cluster().is_none_or(|c| c.is_up())
    }

    /// A new session actor for `user`, to be started by the WebSocket upgrade.
    pub fn session(&self, user: UserId) -> Session {
        let id = SessionId(self.next_session.fetch_add(1, Ordering::Relaxed));
        Session::new(id, user, self.clone())
    }

    pub fn is_online(&self, user: UserId) -> bool {
        self.shared.bus.directory().is_online(user)
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
        let open: Vec<Addr<Session>> = self
            .shared
            .sessions
            .iter()
            .map(|e| e.value().clone())
            .collect();
        tracing::info!(sessions = open.len(), "closing WebSockets with 1001");
        for s in open {
            s.do_send(session::Close {
                code: 1001,
                reason: "server restarting; reconnect".into(),
            });
        }
        while !self.shared.sessions.is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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
            self.presence.do_send(presence::ContactsAdded {
                user: u,
                contacts: members.to_vec(),
            });
        }
    }

    /// The members of `chat` changed (someone left): this node's room, if one runs,
    /// loads them again before it judges or fans out anything else. Rooms on other
    /// nodes catch up within `MEMBERS_REFRESH` (they reload while in use).
    pub fn members_changed(&self, chat: ChatId) {
        self.rooms.do_send(room::MembersChanged { chat });
    }

    /// Sends `event` to every session of each of `users`.
    pub fn notify_users(&self, users: &[UserId], event: &protocol::ServerEvent<'_>) {
        let d = Deliver::frame(protocol::encode(event, None));
        self.shared.bus.to_users(users, &d, None);
    }
}
