//! The presence registry: who is online. It is the only writer of the session
//! directory, and the one place that announces presence, on one node or many. A
//! user's first session anywhere makes them online (`user:online` to everyone who
//! shares a chat with them); their last session anywhere closing makes them
//! offline (`user:offline` with `lastSeenAt`, which is also stored). "First" and
//! "last anywhere" are the cluster seam's answers (`Cluster::join`/`leave`),
//! applied in the order the sessions opened and closed, so online/offline for one
//! user are always sent in the order they happened. Contacts are loaded by the
//! session before it registers, so the registry never waits on the database.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::asap::asap;
use crate::cluster::ClusterError;
use crate::directory::Deliver;
use crate::ids::{MessageId, UserId};
use crate::messages::{to_every_session, Control, Hold, Resync};
pub use crate::messages::{
    ContactsAdded, ContactsRemoved, Reannounce, Reaped, SessionClosed, SessionOpened,
};
use crate::protocol::{self, ServerEvent};
use crate::shared::Shared;
use crate::time::Timestamp;

/// A presence change of this node, applied to the cluster in the order it happened.
enum Step {
    Online {
        user: UserId,
        contacts: Vec<UserId>,
        /// Told once the cluster lists the user here (or the attempt failed).
        listed: Option<oneshot::Sender<()>>,
    },
    /// Told once every step queued before it has been applied: a session whose
    /// user is already listed (or being listed) here waits on it.
    Listed(oneshot::Sender<()>),
    Offline {
        user: UserId,
        contacts: Vec<UserId>,
        at: Timestamp,
    },
    /// After re-registering: every local session is sent again what was stored
    /// after `after`, so what was stored while this node's users were unknown to
    /// the cluster (and so not routed here) arrives.
    Resync { after: MessageId },
}

pub struct PresenceRegistry {
    shared: Arc<Shared>,
    /// The contacts of each online user, as loaded when they came online.
    contacts: HashMap<UserId, Vec<UserId>>,
    steps: VecDeque<Step>,
    /// A step is waiting for the cluster's answer; the rest wait behind it.
    applying: bool,
    /// `pump` is running (an answer that came at once continues its loop rather
    /// than starting another: no recursion however long the queue).
    pumping: bool,
}

impl PresenceRegistry {
    pub fn new(shared: Arc<Shared>) -> PresenceRegistry {
        PresenceRegistry {
            shared,
            contacts: HashMap::new(),
            steps: VecDeque::new(),
            applying: false,
            pumping: false,
        }
    }

    /// Applies queued steps in order until one must wait for the cluster.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.pumping {
            return;
        }
        self.pumping = true;
        while !self.applying {
            let Some(step) = self.steps.pop_front() else {
                break;
            };
            let cluster = self.shared.bus.cluster().clone();
            match step {
                Step::Listed(listed) => {
                    let _ = listed.send(());
                }
                Step::Resync { after } => {
                    to_every_session(&self.shared.sessions, || Control::Resync(Resync { after }));
                }
                Step::Online {
                    user,
                    contacts,
                    listed,
                } => {
                    self.applying = true;
                    let joined = async move { cluster.join(user).await };
                    asap(self, ctx, joined, move |this, first, ctx| {
                        this.applying = false;
                        if let Some(listed) = listed {
                            let _ = listed.send(());
                        }
                        if announce(first) {
                            this.announce_online(user, &contacts);
                        }
                        this.pump(ctx);
                    });
                }
                Step::Offline { user, contacts, at } => {
                    self.applying = true;
                    let left = async move { cluster.leave(user).await };
                    asap(self, ctx, left, move |this, last, ctx| {
                        this.applying = false;
                        if announce(last) {
                            this.announce_offline(user, &contacts, at, ctx);
                        }
                        this.pump(ctx);
                    });
                }
            }
        }
        self.pumping = false;
    }

    fn announce_online(&self, user: UserId, contacts: &[UserId]) {
        let d = Deliver::frame(protocol::encode(
            &ServerEvent::UserOnline { user_id: user },
            None,
        ));
        self.shared.bus.to_users(contacts, &d, None);
    }

    fn announce_offline(
        &self,
        user: UserId,
        contacts: &[UserId],
        at: Timestamp,
        ctx: &mut Context<Self>,
    ) {
        let d = Deliver::frame(protocol::encode(
            &ServerEvent::UserOffline {
                user_id: user,
                last_seen_at: at,
            },
            None,
        ));
        self.shared.bus.to_users(contacts, &d, None);
        let store = self.shared.store.clone();
        ctx.spawn(
            async move {
                if let Err(e) = store.set_last_seen(user, at).await {
                    tracing::warn!(%user, error = %e, "storing last seen");
                }
            }
            .into_actor(self),
        );
    }
}

/// Whether the cluster's answer means "announce it": yes when it says first/last
/// anywhere, and when it cannot tell (say it to whoever can hear: this node).
fn announce(answer: Result<bool, ClusterError>) -> bool {
    answer.unwrap_or(true)
}

impl Actor for PresenceRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16 * 1024);
    }
}

impl Handler<SessionOpened> for PresenceRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionOpened, ctx: &mut Context<Self>) {
        let user = msg.handle.user;
        let first = self.shared.bus.directory().insert(msg.handle);
        // A new session counts as visible: a user marked hidden here is not any more.
        self.shared.visibility.touch_if_marked(user);
        if first {
            // First here; online for everyone only if no other node has them.
            self.contacts.insert(user, msg.contacts.clone());
            self.steps.push_back(Step::Online {
                user,
                contacts: msg.contacts,
                listed: Some(msg.listed),
            });
        } else {
            // The user's first session's listing may still be on its way.
            self.steps.push_back(Step::Listed(msg.listed));
        }
        self.pump(ctx);
    }
}

impl Handler<SessionClosed> for PresenceRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, ctx: &mut Context<Self>) {
        let last = self.shared.bus.directory().remove(msg.user, msg.session);
        self.shared.visibility.touch_if_marked(msg.user);
        if !last {
            return;
        }
        // Last here; offline (and last seen) only if no other node has them.
        self.steps.push_back(Step::Offline {
            user: msg.user,
            contacts: self.contacts.remove(&msg.user).unwrap_or_default(),
            at: Timestamp::now(),
        });
        self.pump(ctx);
    }
}

impl Handler<Reannounce> for PresenceRegistry {
    type Result = ();

    fn handle(&mut self, msg: Reannounce, ctx: &mut Context<Self>) {
        let after = msg.replay_after;
        // The cluster may have lost this node's visibility marks with its listing.
        self.shared.visibility.resync();
        // Sessions hold live messages from before their users are listed again.
        to_every_session(&self.shared.sessions, || Control::Hold(Hold { after }));
        for (user, contacts) in &self.contacts {
            self.steps.push_back(Step::Online {
                user: *user,
                contacts: contacts.clone(),
                listed: None,
            });
        }
        self.steps.push_back(Step::Resync { after });
        self.pump(ctx);
    }
}

impl Handler<Reaped> for PresenceRegistry {
    type Result = ();

    fn handle(&mut self, msg: Reaped, ctx: &mut Context<Self>) {
        // The user was on a dead node only: their contacts are not known here.
        let store = self.shared.store.clone();
        ctx.spawn(
            async move { store.contacts(msg.user).await.unwrap_or_default() }
                .into_actor(self)
                .map(move |contacts, this, ctx| {
                    this.announce_offline(msg.user, &contacts, msg.at, ctx)
                }),
        );
    }
}

impl Handler<ContactsAdded> for PresenceRegistry {
    type Result = ();

    fn handle(&mut self, msg: ContactsAdded, _: &mut Context<Self>) {
        if let Some(list) = self.contacts.get_mut(&msg.user) {
            for c in msg.contacts {
                if c != msg.user && !list.contains(&c) {
                    list.push(c);
                }
            }
        }
    }
}

impl Handler<ContactsRemoved> for PresenceRegistry {
    type Result = ();

    fn handle(&mut self, msg: ContactsRemoved, _: &mut Context<Self>) {
        for (user, other) in [(msg.a, msg.b), (msg.b, msg.a)] {
            if let Some(list) = self.contacts.get_mut(&user) {
                list.retain(|c| *c != other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::cluster::Hub;
    use crate::ids::UserId;
    use crate::testing::{close, node, open, settle, MemoryStore};

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);

    #[actix::test]
    async fn online_once_at_the_first_session_anywhere_offline_once_at_the_last() {
        let hub = Arc::new(Hub::default());
        let store = MemoryStore::new();
        let a = node(&hub, store.clone());
        let b = node(&hub, store.clone());

        let bob = open(&b, 1, BOB, &[ANN]).await;
        assert!(!a.is_online(ANN).await && !b.is_online(ANN).await);

        // ann's first session, on node A: bob (on B) hears it once.
        let ann_a = open(&a, 1, ANN, &[BOB]).await;
        bob.wait_for("user:online", 1).await;
        assert_eq!(bob.frames_of("user:online")[0].data()["userId"], 1);
        assert!(a.is_online(ANN).await, "here");
        assert!(b.is_online(ANN).await, "connected only to the other node");
        assert!(a.is_online(BOB).await, "connected only to the other node");

        // A second session, on the other node: nothing new to announce.
        let ann_b = open(&b, 2, ANN, &[BOB]).await;
        settle().await;
        assert_eq!(bob.frames_of("user:online").len(), 1);

        // The first closes: ann is still online on B.
        close(&a, &ann_a);
        settle().await;
        assert!(bob.frames_of("user:offline").is_empty());
        assert!(a.is_online(ANN).await, "still on B");
        assert!(store.last_seen(ANN).is_none());

        // The last closes anywhere: offline once, last seen stored.
        close(&b, &ann_b);
        bob.wait_for("user:offline", 1).await;
        settle().await;
        let offline = bob.frames_of("user:offline");
        assert_eq!(offline.len(), 1);
        assert_eq!(offline[0].data()["userId"], 1);
        assert!(offline[0].data()["lastSeenAt"].is_string());
        assert!(store.last_seen(ANN).is_some());
        assert!(!a.is_online(ANN).await && !b.is_online(ANN).await);
        // bob never heard of himself.
        assert!(bob
            .frames_of("user:online")
            .iter()
            .all(|e| e.data()["userId"] == 1));
    }

    #[actix::test]
    async fn one_node_announces_in_the_order_sessions_come_and_go() {
        let hub = Arc::new(Hub::default());
        let store = MemoryStore::new();
        let n = node(&hub, store.clone());
        let bob = open(&n, 1, BOB, &[ANN]).await;
        for round in 1..=3 {
            let first = open(&n, 10 + round * 2, ANN, &[BOB]).await;
            let second = open(&n, 11 + round * 2, ANN, &[BOB]).await;
            close(&n, &first);
            close(&n, &second);
            bob.wait_for("user:offline", round as usize).await;
        }
        settle().await;
        let seq = bob.events();
        assert_eq!(
            seq,
            [
                "user:online",
                "user:offline",
                "user:online",
                "user:offline",
                "user:online",
                "user:offline"
            ]
        );
        // A closed session is closed once: a second SessionClosed changes nothing.
        assert!(!n.is_online(ANN).await);
        assert!(n.is_online(BOB).await);
    }
}
