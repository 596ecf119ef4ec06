//! Which users have a visible session (issue 20): Web Push goes only to users
//! with none. Each local session's flag lives on its [`SessionHandle`]
//! (`client:state`; never reported = visible), so "does this user have a visible
//! session here?" is one directory read, with no allocation, on the message path.
//!
//! Other nodes learn of it through the cluster seam, as *hidden here* marks: a
//! node marks a user when it hosts them and all their sessions there are hidden,
//! and unmarks them otherwise. Default-visible sessions (script clients, the
//! bench) thus cost the cluster nothing on connect. One task per node writes the
//! marks: sessions only flag the user as *touched* (a set insert), and the task,
//! after a short coalescing window, compares each touched user's state now with
//! what it last wrote and sends only the differences, in one batch. A client
//! flipping its state 10,000 times a second (after the event rate limit) costs at
//! most one pipelined write per window for its user, and none if it ends where it
//! started.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::directory::SessionDirectory;
use crate::ids::UserId;

/// How long touched users are gathered before the task writes their marks.
pub const COALESCE: Duration = Duration::from_millis(50);
/// How long the task waits after the cluster failed before it tries again.
const RETRY: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The users whose mark may have to change, and the marks last written.
#[derive(Default)]
pub struct Visibility {
    touched: Mutex<HashSet<UserId>>,
    /// The users this node has marked hidden in the cluster.
    marked: Mutex<HashSet<UserId>>,
    wake: tokio::sync::Notify,
}

impl Visibility {
    /// A session of `user` changed its state: the task looks again.
    pub(crate) fn touch(&self, user: UserId) {
        if lock(&self.touched).insert(user) {
            self.wake.notify_one();
        }
    }

    /// A session of `user` opened or closed: only matters if `user` is marked.
    pub(crate) fn touch_if_marked(&self, user: UserId) {
        if lock(&self.marked).contains(&user) {
            self.touch(user);
        }
    }

    /// The cluster may have lost the marks (Redis restarted, this node was reaped):
    /// write every one again.
    pub(crate) fn resync(&self) {
        let all: Vec<UserId> = lock(&self.marked).drain().collect();
        if all.is_empty() {
            return;
        }
        lock(&self.touched).extend(all);
        self.wake.notify_one();
    }

    /// Whether this node has marked `user` hidden (tests).
    pub fn is_marked(&self, user: UserId) -> bool {
        lock(&self.marked).contains(&user)
    }

    /// Writes marks for as long as the process runs.
    pub(crate) async fn run(
        self: Arc<Self>,
        directory: SessionDirectory,
        cluster: Arc<dyn Cluster>,
    ) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(COALESCE).await;
            let touched: Vec<UserId> = lock(&self.touched).drain().collect();
            let changes: Vec<(UserId, bool)> = {
                let marked = lock(&self.marked);
                touched
                    .iter()
                    .filter_map(|&u| {
                        let hidden = directory.is_online(u) && !directory.has_visible_session(u);
                        (hidden != marked.contains(&u)).then_some((u, hidden))
                    })
                    .collect()
            };
            if changes.is_empty() {
                continue;
            }
            match cluster.set_hidden_here(&changes).await {
                Ok(()) => {
                    let mut marked = lock(&self.marked);
                    for (u, hidden) in changes {
                        if hidden {
                            marked.insert(u);
                        } else {
                            marked.remove(&u);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "writing visibility marks; retrying");
                    lock(&self.touched).extend(changes.iter().map(|(u, _)| *u));
                    tokio::time::sleep(RETRY).await;
                    self.wake.notify_one();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Hub;
    use crate::testing::{close, node, open, report_visible, settle, MemoryStore};

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CYD: UserId = UserId(3);

    #[actix::test]
    async fn visibility_is_known_across_two_in_memory_nodes() {
        let hub = Arc::new(Hub::default());
        let store = MemoryStore::new();
        let a = node(&hub, store.clone());
        let b = node(&hub, store.clone());
        let ann = open(&a, 1, ANN, &[]).await;
        let bob = open(&b, 1, BOB, &[]).await;

        // Never reported counts as visible, here and from the other node; cyd is offline.
        assert_eq!(a.visible_users(&[ANN, BOB, CYD]).await, [true, true, false]);

        // Ann hides her only session: not visible anywhere, and marked for the others.
        report_visible(&a, &ann, false);
        assert_eq!(a.visible_users(&[ANN]).await, [false], "here at once");
        settle().await;
        assert!(a.shared.visibility.is_marked(ANN));
        assert_eq!(b.visible_users(&[ANN]).await, [false]);

        // A hostile client flipping its state ends where it stops.
        for i in 0..10_000 {
            report_visible(&b, &bob, i % 2 == 1);
        }
        settle().await;
        assert!(!b.shared.visibility.is_marked(BOB), "ended visible");
        assert_eq!(a.visible_users(&[BOB]).await, [true]);
        report_visible(&b, &bob, false);
        settle().await;
        assert_eq!(a.visible_users(&[BOB]).await, [false]);

        // A new session of bob's counts as visible: the mark goes.
        let bob_laptop = open(&b, 2, BOB, &[]).await;
        settle().await;
        assert!(!b.shared.visibility.is_marked(BOB));
        assert_eq!(a.visible_users(&[BOB]).await, [true]);
        report_visible(&b, &bob_laptop, false);
        settle().await;
        assert_eq!(a.visible_users(&[BOB]).await, [false], "both hidden");

        // Ann's visible session on b makes her visible, wherever asked.
        let ann_b = open(&b, 3, ANN, &[]).await;
        assert_eq!(a.visible_users(&[ANN]).await, [true]);
        assert_eq!(b.visible_users(&[ANN]).await, [true]);
        close(&b, &ann_b);

        // Bob leaves b: his mark is taken off (he would otherwise come back hidden).
        close(&b, &bob);
        close(&b, &bob_laptop);
        settle().await;
        assert!(!b.shared.visibility.is_marked(BOB));
        assert_eq!(a.visible_users(&[BOB]).await, [false], "offline");
        let bob_again = open(&b, 4, BOB, &[]).await;
        assert_eq!(a.visible_users(&[BOB]).await, [true]);
        drop(bob_again);
    }
}

/// The same across two nodes on a private redis-server (skipped, with a note, when
/// `redis-server` is not installed).
#[cfg(test)]
mod on_redis {
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use super::*;
    use crate::cluster::{redis::Redis, ClusterSettings, RedisPrimary, RedisSource};
    use crate::realtime::Realtime;
    use crate::testing::{close, open, report_visible, settings, MemoryStore};

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);

    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn redis_server() -> Option<(Server, u16)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some((server, port))
    }

    async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f().await {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[actix::test]
    async fn visibility_crosses_two_redis_nodes_and_a_leaving_node_unmarks() {
        let Some((_server, port)) = redis_server() else {
            eprintln!("redis-server is not installed: skipped");
            return;
        };
        let cluster = ClusterSettings {
            redis: RedisPrimary::new(&RedisSource::Url(format!("redis://127.0.0.1:{port}")))
                .expect("a valid url"),
            prefix: "vis".into(),
            node_ttl: Duration::from_secs(3),
        };
        let store = MemoryStore::new();
        let start = || {
            let c: Arc<dyn Cluster> = Redis::new(&cluster);
            Realtime::start_on(store.clone(), settings(), c)
        };
        let a = start();
        let b = start();
        let ann = open(&a, 1, ANN, &[]).await;
        let bob = open(&b, 1, BOB, &[]).await;
        assert_eq!(a.visible_users(&[ANN, BOB]).await, [true, true]);

        report_visible(&b, &bob, false);
        until("bob hidden, seen from a", async || {
            a.visible_users(&[BOB]).await == [false]
        })
        .await;
        assert_eq!(b.visible_users(&[BOB]).await, [false]);
        report_visible(&b, &bob, true);
        until("bob visible again", async || {
            a.visible_users(&[BOB]).await == [true]
        })
        .await;

        // Hidden on b, visible on a: visible.
        report_visible(&b, &bob, false);
        let bob_a = open(&a, 2, BOB, &[]).await;
        until("b's mark written", async || {
            b.shared.visibility.is_marked(BOB)
        })
        .await;
        assert_eq!(b.visible_users(&[BOB]).await, [true], "through a");
        close(&a, &bob_a);
        until("bob only on b, hidden", async || {
            b.visible_users(&[BOB]).await == [false]
        })
        .await;

        // Leaving b takes the mark: coming back visible is visible.
        close(&b, &bob);
        until("b unmarked bob", async || {
            !b.shared.visibility.is_marked(BOB)
        })
        .await;
        let _again = open(&b, 3, BOB, &[]).await;
        assert_eq!(a.visible_users(&[BOB]).await, [true]);
        drop(ann);
    }
}
