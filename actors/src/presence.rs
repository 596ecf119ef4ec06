//! The presence registry: who is online. It is the only writer of the session
//! directory. A user's first session makes them online (`user:online` to everyone
//! who shares a chat with them); their last session closing makes them offline
//! (`user:offline` with `lastSeenAt`, which is also stored). Contacts are loaded by
//! the session before it registers, so the registry never waits on the database
//! and online/offline for one user are always sent in the order they happened.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::cluster::Transition;
use crate::directory::{Deliver, SessionHandle};
use crate::ids::{SessionId, UserId};
use crate::protocol::{self, ServerEvent};
use crate::time::Timestamp;
use crate::Shared;

/// A session is ready to receive: make it reachable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionOpened {
    pub handle: SessionHandle,
    pub contacts: Vec<UserId>,
    /// Told once the whole cluster routes this user's messages here (at once
    /// without Redis): a catch-up that ran earlier could miss a message another
    /// node stored and did not route here.
    pub listed: tokio::sync::oneshot::Sender<()>,
}

/// A session has ended; idempotent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed {
    pub user: UserId,
    pub session: SessionId,
}

/// A user now shares a chat with more people (a chat was created): they hear of
/// each other's presence from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContactsAdded {
    pub user: UserId,
    pub contacts: Vec<UserId>,
}

pub struct PresenceRegistry {
    shared: Arc<Shared>,
    /// The contacts of each online user, as loaded when they came online.
    contacts: HashMap<UserId, Vec<UserId>>,
}

impl PresenceRegistry {
    pub fn new(shared: Arc<Shared>) -> PresenceRegistry {
        PresenceRegistry {
            shared,
            contacts: HashMap::new(),
        }
    }
}

impl Actor for PresenceRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16 * 1024);
    }
}

impl Handler<SessionOpened> for PresenceRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionOpened, _: &mut Context<Self>) {
        let user = msg.handle.user;
        let first = self.shared.bus.directory().insert(msg.handle);
        let mut listed = Some(msg.listed);
        if first {
            match self.shared.bus.cluster() {
                // Online for the whole cluster only if no other node has them.
                Some(c) => c.presence(Transition::Online {
                    user,
                    contacts: msg.contacts.clone(),
                    listed: listed.take(),
                }),
                None => {
                    let d = Deliver::frame(protocol::encode(
                        &ServerEvent::UserOnline { user_id: user },
                        None,
                    ));
                    self.shared.bus.to_users(&msg.contacts, &d, None);
                }
            }
            self.contacts.insert(user, msg.contacts);
        }
        if let Some(listed) = listed {
            match self.shared.bus.cluster() {
                // The user's first session's listing may still be on its way.
                Some(c) => c.presence(Transition::Barrier { listed }),
                None => {
                    let _ = listed.send(());
                }
            }
        }
    }
}

/// Redis lost track of this node (an outage, or it was reaped): list every local
/// user again, announcing those who are online nowhere else.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reannounce {
    /// Sessions are then sent every message newer than this.
    pub replay_after: crate::ids::MessageId,
}

impl Handler<Reannounce> for PresenceRegistry {
    type Result = ();

    fn handle(&mut self, msg: Reannounce, _: &mut Context<Self>) {
        if let Some(c) = self.shared.bus.cluster() {
            // Sessions hold live messages from before their users are listed again.
            crate::cluster::hold_sessions(&self.shared, msg.replay_after);
            for (user, contacts) in &self.contacts {
                c.presence(Transition::Online {
                    user: *user,
                    contacts: contacts.clone(),
                    listed: None,
                });
            }
            c.presence(Transition::Resync {
                after: msg.replay_after,
            });
        }
    }
}

impl Handler<SessionClosed> for PresenceRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, ctx: &mut Context<Self>) {
        if !self.shared.bus.directory().remove(msg.user, msg.session) {
            return;
        }
        let at = Timestamp::now();
        let contacts = self.contacts.remove(&msg.user).unwrap_or_default();
        if let Some(c) = self.shared.bus.cluster() {
            // Offline (and last seen) only when no other node has them either.
            c.presence(Transition::Offline {
                user: msg.user,
                contacts,
                at,
            });
            return;
        }
        let d = Deliver::frame(protocol::encode(
            &ServerEvent::UserOffline {
                user_id: msg.user,
                last_seen_at: at,
            },
            None,
        ));
        self.shared.bus.to_users(&contacts, &d, None);
        let store = self.shared.store.clone();
        let user = msg.user;
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
