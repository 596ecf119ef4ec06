//! What every realtime actor shares, in a module of its own so that the actors
//! depend on it and it depends on none of them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::arrivals::Arrivals;
use crate::bus::Bus;
use crate::ids::{AuthSessionId, SessionId, UserId};
use crate::messages::LiveSessions;
use crate::metrics::Metrics;
use crate::push::PushSlot;
use crate::settings::RealtimeSettings;
use crate::store::Store;
use crate::visibility::Visibility;
use crate::writer::Receipts;

/// What every realtime actor shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub bus: Bus,
    pub metrics: Metrics,
    pub settings: RealtimeSettings,
    /// Web Push: offers for users without a visible session (issue 20).
    pub push: PushSlot,
    /// Which users are hidden here, as told to the cluster (`visibility.rs`).
    pub visibility: Arc<Visibility>,
    /// Set on shutdown: sessions answer new events with `shutting_down`.
    pub(crate) draining: AtomicBool,
    /// `message:send` frames accepted and not yet answered (ack or error).
    pub(crate) in_flight: AtomicUsize,
    /// Every live session, registered or not, so shutdown can reach them all.
    pub(crate) sessions: LiveSessions,
    pub(crate) receipts: Receipts,
    /// Contacts and "anything waiting?" for sessions coming online, in batches.
    pub(crate) arrivals: Arrivals,
    /// Open sessions per user in this process (registered or not).
    pub(crate) per_user: dashmap::DashMap<UserId, usize>,
    /// The sessions of this process opened with each sign-in, so that revoking one
    /// closes its sockets (`Realtime::close_auth_sessions`) without a scan.
    pub(crate) by_auth: dashmap::DashMap<AuthSessionId, smallvec::SmallVec<[SessionId; 2]>>,
    /// One clock for every session's rate limiter: making a clock reads CPUID, which
    /// traps to the hypervisor on a VM (tens of µs per connection); cloning one is free.
    pub(crate) clock: governor::clock::DefaultClock,
}

impl Shared {
    pub fn new(store: Arc<dyn Store>, bus: Bus, settings: RealtimeSettings) -> Shared {
        let visibility = Arc::new(Visibility::default());
        tokio::spawn(
            visibility
                .clone()
                .run(bus.directory().clone(), bus.cluster().clone()),
        );
        Shared {
            store: store.clone(),
            bus,
            metrics: Metrics::default(),
            settings,
            push: PushSlot::default(),
            visibility,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            sessions: LiveSessions::default(),
            receipts: Receipts::start(store.clone()),
            arrivals: Arrivals::start(store),
            per_user: dashmap::DashMap::new(),
            by_auth: dashmap::DashMap::new(),
            clock: governor::clock::DefaultClock::default(),
        }
    }

    pub(crate) fn post_answered(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
