//! Delivery to users wherever they are connected. Today every session is in this
//! process and the bus is the session directory; with Redis (several nodes) the same
//! calls also publish for the other nodes, so callers never care where a user is.

use crate::directory::{Deliver, SessionDirectory};
use crate::ids::{SessionId, UserId};

#[derive(Clone)]
pub struct Bus {
    directory: SessionDirectory,
}

impl Bus {
    pub fn new(directory: SessionDirectory) -> Bus {
        Bus { directory }
    }

    pub fn directory(&self) -> &SessionDirectory {
        &self.directory
    }

    /// Every session of `user`, except the one named by `skip`.
    pub fn to_user(&self, user: UserId, d: &Deliver, skip: Option<SessionId>) {
        self.directory.deliver_to_user(user, d, skip);
    }

    pub fn to_users(&self, users: &[UserId], d: &Deliver, skip: Option<SessionId>) {
        for &u in users {
            self.to_user(u, d, skip);
        }
    }
}
