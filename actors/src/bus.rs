//! Delivery to users wherever they are connected. Local sessions are reached through
//! the session directory; when Redis is configured and other nodes are alive, the
//! same call also hands the frame to the cluster, which publishes it once per node
//! that hosts one of the recipients (see `cluster.rs` for the why and the cost).

use std::sync::Arc;

use crate::cluster::Cluster;
use crate::directory::{Deliver, SessionDirectory, SessionHandle};
use crate::ids::UserId;

#[derive(Clone)]
pub struct Bus {
    directory: SessionDirectory,
    cluster: Option<Arc<Cluster>>,
}

impl Bus {
    pub fn new(directory: SessionDirectory, cluster: Option<Arc<Cluster>>) -> Bus {
        Bus { directory, cluster }
    }

    pub fn directory(&self) -> &SessionDirectory {
        &self.directory
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
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
        if let Some(c) = &self.cluster {
            c.to_users(users, d, skip.filter(|s| !s.is_local()));
        }
    }
}
