//! Delivery to users wherever they are connected. Local sessions are reached through
//! the session directory; the same call hands the frame to the cluster seam, which
//! carries it to the other nodes that host a recipient (nothing at all on one node:
//! `Local` returns after one atomic load; see `cluster/redis.rs` for the cost with
//! Redis).

use std::sync::Arc;

use crate::cluster::{Cluster, ClusterError};
use crate::directory::{Deliver, SessionDirectory, SessionHandle};
use crate::ids::UserId;

/// Longest an HTTP answer waits for the cluster to say who is online elsewhere.
pub const ONLINE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Clone)]
pub struct Bus {
    directory: SessionDirectory,
    cluster: Arc<dyn Cluster>,
}

impl Bus {
    pub fn new(directory: SessionDirectory, cluster: Arc<dyn Cluster>) -> Bus {
        Bus { directory, cluster }
    }

    pub fn directory(&self) -> &SessionDirectory {
        &self.directory
    }

    pub fn cluster(&self) -> &Arc<dyn Cluster> {
        &self.cluster
    }

    /// Every session of `user` on every node, except `skip`.
    pub fn to_user(&self, user: UserId, d: &Deliver, skip: Option<&SessionHandle>) {
        self.to_users(&[user], d, skip);
    }

    pub fn to_users(&self, users: &[UserId], d: &Deliver, skip: Option<&SessionHandle>) {
        let local_skip = skip.filter(|s| s.is_local()).map(|s| s.id);
        for &u in users {
            self.directory.deliver_to_user(u, d, local_skip);
        }
        self.cluster
            .to_users(users, d, skip.filter(|s| !s.is_local()));
    }

    /// Whether each of `users` has a session on some node: this node's directory
    /// answers first; only those not here are asked of the cluster (one round trip
    /// with Redis, none on one node). Unknown counts as offline: Redis down, or
    /// slower than [`ONLINE_WAIT`] (an HTTP answer never hangs on presence).
    pub async fn online(&self, users: &[UserId]) -> Vec<bool> {
        let cluster = self.cluster.clone();
        self.here_then_elsewhere(
            users,
            |u| self.directory.is_online(u),
            "online",
            |ask| async move { cluster.online_elsewhere(&ask).await },
        )
        .await
    }

    /// Whether each of `users` has a *visible* session (`client:state`) on some
    /// node: this node's directory first (no allocation per user found here), then
    /// one cluster round trip for the rest. Unknown (Redis down or slower than
    /// [`ONLINE_WAIT`]) counts as not visible: a push is sent rather than lost.
    pub async fn visible(&self, users: &[UserId]) -> Vec<bool> {
        let cluster = self.cluster.clone();
        self.here_then_elsewhere(
            users,
            |u| self.directory.has_visible_session(u),
            "visible",
            |ask| async move { cluster.visible_elsewhere(&ask).await },
        )
        .await
    }

    /// `here` for each user; those it says no to are asked of the cluster with
    /// `elsewhere` (skipped on one node or while the cluster is down), bounded by
    /// [`ONLINE_WAIT`]: no answer in time leaves them `false`.
    async fn here_then_elsewhere<F, Fut>(
        &self,
        users: &[UserId],
        here: impl Fn(UserId) -> bool,
        what: &'static str,
        elsewhere: F,
    ) -> Vec<bool>
    where
        F: FnOnce(Vec<UserId>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<bool>, ClusterError>>,
    {
        let mut found: Vec<bool> = users.iter().map(|u| here(*u)).collect();
        let ask: Vec<UserId> = users
            .iter()
            .zip(&found)
            .filter(|(_, here)| !**here)
            .map(|(u, _)| *u)
            .collect();
        if ask.is_empty() || !self.cluster.is_up() {
            return found;
        }
        match tokio::time::timeout(ONLINE_WAIT, elsewhere(ask)).await {
            Err(_) => tracing::debug!(what, "the cluster did not answer in time"),
            Ok(Err(e)) => tracing::debug!(what, error = %e, "asking the cluster"),
            Ok(Ok(answers)) => {
                let mut answers = answers.into_iter();
                for f in found.iter_mut().filter(|f| !**f) {
                    *f = answers.next().unwrap_or(false);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use async_trait::async_trait;
    use bytestring::ByteString;

    use super::*;
    use crate::cluster::{ClusterError, Inbox, Local, Reservation};
    use crate::directory::RemoteRoute;
    use crate::ids::{CallId, SessionId};
    use crate::messages::CallEvent;

    /// A cluster that is up but never answers who is online (a stalled Redis);
    /// everything else as one node.
    struct Stalled(Local);

    impl RemoteRoute for Stalled {
        fn to_session(&self, node: &Arc<str>, session: SessionId, frame: ByteString) {
            self.0.to_session(node, session, frame)
        }
    }

    #[async_trait]
    impl Cluster for Stalled {
        fn node(&self) -> &Arc<str> {
            self.0.node()
        }
        fn is_up(&self) -> bool {
            true
        }
        fn start(&self, inbox: Inbox) {
            self.0.start(inbox)
        }
        async fn join(&self, user: UserId) -> Result<bool, ClusterError> {
            self.0.join(user).await
        }
        async fn leave(&self, user: UserId) -> Result<bool, ClusterError> {
            self.0.leave(user).await
        }
        async fn online_elsewhere(&self, _: &[UserId]) -> Result<Vec<bool>, ClusterError> {
            std::future::pending().await
        }
        async fn set_hidden_here(&self, changes: &[(UserId, bool)]) -> Result<(), ClusterError> {
            self.0.set_hidden_here(changes).await
        }
        async fn visible_elsewhere(&self, _: &[UserId]) -> Result<Vec<bool>, ClusterError> {
            std::future::pending().await
        }
        async fn reserve_call(
            &self,
            call: &CallId,
            caller: UserId,
            callee: UserId,
        ) -> Result<Reservation, ClusterError> {
            self.0.reserve_call(call, caller, callee).await
        }
        async fn release_call(&self, call: &CallId, parties: [UserId; 2]) {
            self.0.release_call(call, parties).await
        }
        async fn call_node(&self, call: &CallId) -> Option<Arc<str>> {
            self.0.call_node(call).await
        }
        async fn busy_call_node(&self, user: UserId) -> Option<Arc<str>> {
            self.0.busy_call_node(user).await
        }
        fn to_users(&self, users: &[UserId], d: &Deliver, skip: Option<&SessionHandle>) {
            self.0.to_users(users, d, skip)
        }
        fn forward_call(
            &self,
            node: &Arc<str>,
            session: &SessionHandle,
            reference: Option<&str>,
            event: &CallEvent,
        ) {
            self.0.forward_call(node, session, reference, event)
        }
        fn session_gone(&self, node: &Arc<str>, user: UserId, session: SessionId) {
            self.0.session_gone(node, user, session)
        }

        fn chat_changed(&self, chat: crate::ids::ChatId) {
            self.0.chat_changed(chat)
        }
    }

    #[tokio::test]
    async fn a_stalled_cluster_makes_presence_unknown_in_bounded_time_not_a_hang() {
        let bus = Bus::new(SessionDirectory::default(), Arc::new(Stalled(Local::new())));
        let t = Instant::now();
        let online = bus.online(&[UserId(1), UserId(2)]).await;
        assert_eq!(online, vec![false, false], "unknown counts as offline");
        let took = t.elapsed();
        assert!(took >= ONLINE_WAIT, "it did ask the cluster: {took:?}");
        assert!(took < ONLINE_WAIT * 4, "bounded: {took:?}");
    }
}
