//! The realtime half of Parley: session, room, presence and call actors. It knows
//! nothing of MySQL: persistence comes in through the `Store` trait.

pub mod bus;
pub mod call;
pub mod directory;
pub mod e2ee;
pub mod ids;
pub mod metrics;
pub mod presence;
pub mod protocol;
pub mod room;
pub mod session;
pub mod store;
pub mod time;
pub mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;

pub use bus::Bus;
pub use directory::{Deliver, SessionDirectory};
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
    pub fn start(store: Arc<dyn Store>, settings: RealtimeSettings) -> Realtime {
        let shared = Arc::new(Shared {
            store: store.clone(),
            bus: Bus::new(SessionDirectory::default()),
            metrics: Metrics::default(),
            settings,
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
        Realtime {
            shared,
            rooms,
            presence,
            calls,
            next_session: Arc::new(AtomicU64::new(1)),
        }
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

    /// Tells the presence registry that these users now share a chat.
    pub fn contacts_added(&self, members: &[UserId]) {
        for &u in members {
            self.presence.do_send(presence::ContactsAdded {
                user: u,
                contacts: members.to_vec(),
            });
        }
    }

    /// Sends `event` to every session of each of `users`.
    pub fn notify_users(&self, users: &[UserId], event: &protocol::ServerEvent<'_>) {
        let d = Deliver::frame(protocol::encode(event, None));
        self.shared.bus.to_users(users, &d, None);
    }
}
