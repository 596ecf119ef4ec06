//! In-process nodes linked by one in-memory [`Hub`] (what the cluster seam's
//! tests run on), and [`Fake`] sessions registered with a node's presence.

use std::sync::Arc;
use std::time::Duration;

use super::{settings, Fake, PATIENCE};
use crate::cluster::{Hub, Local};
use crate::ids::{SessionId, UserId};
use crate::messages::{SessionClosed, SessionOpened};
use crate::realtime::Realtime;
use crate::store::Store;

/// A node of the in-memory cluster `hub`, over `store`, with [`settings`].
pub fn node(hub: &Arc<Hub>, store: Arc<dyn Store>) -> Realtime {
    Realtime::start_on(store, settings(), Arc::new(Local::on(hub)))
}

/// A fake session `id` of `user`, registered with `node`'s presence with
/// `contacts`; returns once presence has listed it.
pub async fn open(node: &Realtime, id: u64, user: UserId, contacts: &[UserId]) -> Fake {
    let fake = Fake::start(SessionId(id), user);
    let (listed, on_listed) = tokio::sync::oneshot::channel();
    node.presence.do_send(SessionOpened {
        handle: fake.handle.clone(),
        contacts: contacts.to_vec(),
        listed,
    });
    tokio::time::timeout(PATIENCE, on_listed)
        .await
        .expect("listed in time")
        .expect("listed");
    fake
}

/// Tells `node`'s presence that `session` closed.
pub fn close(node: &Realtime, session: &Fake) {
    node.presence.do_send(SessionClosed {
        user: session.handle.user,
        session: session.handle.id,
    });
}

/// Lets every queued actor message run (nothing in these tests waits on I/O), so
/// a test can assert that something did not happen.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// What a session does on `client:state`: records it and tells the node's
/// visibility task.
pub fn report_visible(node: &Realtime, session: &Fake, visible: bool) {
    if session.handle.set_visible(visible) {
        node.shared.visibility.touch(session.handle.user);
    }
}
