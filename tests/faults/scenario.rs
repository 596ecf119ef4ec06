//! The traffic most fault cases run: a ring of users, each sending numbered messages
//! into the direct chat with the next one, and the final reconciliation.

use std::time::{Duration, Instant};

use crate::peer::{Ctl, Peer, PeerCfg, PeerLog};
use crate::reconcile::{reconcile, Report};
use crate::support::{chat_members, message_rows, Parley, Secrets, User};

pub struct Ring {
    pub users: Vec<User>,
    /// chats[i]: users[i] and users[(i + 1) % n]; users[i] sends there.
    pub chats: Vec<u64>,
}

impl Ring {
    pub async fn create(p: &Parley, n: usize, prefix: &str, secrets: &Secrets) -> Ring {
        let mut users = Vec::new();
        for i in 0..n {
            users.push(p.register(&format!("{prefix}{i}"), secrets).await);
        }
        let mut chats = Vec::new();
        for i in 0..n {
            chats.push(p.direct_chat(&users[i], &users[(i + 1) % n]).await);
        }
        Ring { users, chats }
    }

    /// The peer of user `i`: sends `total` messages into chats[i].
    pub fn peer(&self, i: usize, urls: Vec<String>, total: usize) -> PeerCfg {
        let n = self.users.len();
        let u = &self.users[i];
        let mut c = PeerCfg::new(&u.username, u.id, &u.token, urls);
        c.chat = Some(self.chats[i]);
        c.member_chats = vec![self.chats[i], self.chats[(i + n - 1) % n]];
        c.total = total;
        c
    }
}

pub fn spawn_all(cfgs: Vec<PeerCfg>, ctl: &Ctl) -> Vec<Peer> {
    cfgs.into_iter().map(|c| Peer::spawn(c, ctl)).collect()
}

pub fn total_acked(peers: &[Peer]) -> usize {
    peers.iter().map(|p| p.snapshot().acked_count()).sum()
}

pub async fn wait_acked(peers: &[Peer], n: usize, limit: Duration) {
    let t = Instant::now();
    while total_acked(peers) < n {
        assert!(
            t.elapsed() < limit,
            "only {} of {n} acknowledged in {limit:?}",
            total_acked(peers)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reconciles the logs against the database and checks it clean.
pub async fn reconcile_db(case: &str, db_url: &str, logs: &[PeerLog]) -> Report {
    let rows = message_rows(db_url).await;
    let members = chat_members(db_url).await;
    let report = reconcile(logs, &rows, &members, true);
    for l in logs {
        assert!(l.fatal.is_empty(), "{case}: {}: {:?}", l.name, l.fatal);
    }
    report.assert_clean(case);
    report
}

/// When traffic flowed again after `t`: the latest of the peers' first ack after it
/// (peers with nothing left to send after `t` are not counted).
pub fn recovery_after(logs: &[PeerLog], t: Instant) -> Duration {
    logs.iter()
        .filter_map(|l| l.acks_after(t))
        .map(|a| a - t)
        .max()
        .unwrap_or_default()
}
