//! Stand-in sessions: they take `Deliver` like a session and record every frame,
//! decoded, for the test to read and wait on.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::Notify;

use super::PATIENCE;
use crate::directory::{Deliver, SessionHandle};
use crate::ids::{MessageId, SessionId, UserId};
use crate::Shared;

/// One frame a fake session was handed.
#[derive(Debug, Clone)]
pub struct Frame {
    pub json: serde_json::Value,
    /// Set for `message:received` (what a session uses to drop a duplicate).
    pub message: Option<MessageId>,
}

impl Frame {
    pub fn event(&self) -> &str {
        self.json["event"].as_str().unwrap_or_default()
    }

    pub fn data(&self) -> &serde_json::Value {
        &self.json["data"]
    }

    /// The `ref` it answers, if any.
    pub fn reference(&self) -> Option<&str> {
        self.json["ref"].as_str()
    }

    /// The error code of an `error` frame, as the client reads it off the wire (so
    /// tests do not depend on how codes are typed inside the server).
    pub fn error_code(&self) -> Option<&str> {
        (self.event() == "error")
            .then(|| self.data()["code"].as_str())
            .flatten()
    }
}

#[derive(Default)]
struct Inbox {
    frames: Mutex<Vec<Frame>>,
    arrived: Notify,
}

/// A stand-in for a session: it takes `Deliver` like a session and records each
/// frame, decoded, for the test to read.
pub struct FakeSession {
    inbox: Arc<Inbox>,
}

impl Actor for FakeSession {
    type Context = Context<Self>;
}

impl Handler<Deliver> for FakeSession {
    type Result = ();

    fn handle(&mut self, d: Deliver, _: &mut Context<Self>) {
        let json = serde_json::from_str(&d.frame).unwrap_or_else(|e| {
            panic!(
                "a session was handed a frame that is not JSON ({e}): {}",
                d.frame
            )
        });
        self.inbox
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Frame {
                json,
                message: d.message,
            });
        self.inbox.arrived.notify_waiters();
    }
}

/// Answered once every `Deliver` queued before it has been recorded.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for FakeSession {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {}
}

/// A running fake session and its handle (what rooms and calls are given).
#[derive(Clone)]
pub struct Fake {
    pub handle: SessionHandle,
    addr: Addr<FakeSession>,
    inbox: Arc<Inbox>,
}

impl Fake {
    /// Starts a fake session of `user` (not listed anywhere; see [`Fake::connect`]).
    pub fn start(id: SessionId, user: UserId) -> Fake {
        let inbox = Arc::new(Inbox::default());
        let addr = FakeSession {
            inbox: inbox.clone(),
        }
        .start();
        Fake {
            handle: SessionHandle::new(id, user, addr.clone().recipient()),
            addr,
            inbox,
        }
    }

    /// Starts a fake session and lists it in `shared`'s session directory, as the
    /// presence registry does for a registered session.
    pub fn connect(shared: &Shared, id: u64, user: UserId) -> Fake {
        let fake = Fake::start(SessionId(id), user);
        shared.bus.directory().insert(fake.handle.clone());
        fake
    }

    /// Takes it out of `shared`'s session directory (the session closed).
    pub fn disconnect(&self, shared: &Shared) {
        shared
            .bus
            .directory()
            .remove(self.handle.user, self.handle.id);
    }

    pub fn user(&self) -> UserId {
        self.handle.user
    }

    /// Every frame recorded so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.inbox
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many frames were recorded so far.
    pub fn count(&self) -> usize {
        self.inbox
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The event names recorded so far.
    pub fn events(&self) -> Vec<String> {
        self.frames().iter().map(|f| f.event().to_owned()).collect()
    }

    /// Waits until at least `n` frames were recorded; all of them.
    pub async fn wait_frames(&self, n: usize) -> Vec<Frame> {
        let wait = async {
            loop {
                let notified = self.inbox.arrived.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.count() >= n {
                    return self.frames();
                }
                notified.await;
            }
        };
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(frames) => frames,
            Err(_) => panic!(
                "session {} of user {} got {} frames, expected {n}: {:?}",
                self.handle.id,
                self.handle.user,
                self.frames().len(),
                self.events()
            ),
        }
    }

    /// Waits until a frame that `pred` accepts was recorded after the `seen` first
    /// ones; the first such.
    pub async fn wait_until(
        &self,
        seen: usize,
        what: &str,
        pred: impl Fn(&Frame) -> bool,
    ) -> Frame {
        let wait = async {
            loop {
                let notified = self.inbox.arrived.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(f) = self.frames().into_iter().skip(seen).find(|f| pred(f)) {
                    return f;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(frame) => frame,
            Err(_) => panic!(
                "session {} of user {} got no {what}: {:?}",
                self.handle.id,
                self.handle.user,
                self.events()
            ),
        }
    }

    /// Every frame of `event` recorded so far.
    pub fn frames_of(&self, event: &str) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| f.event() == event)
            .collect()
    }

    /// Waits until at least `n` frames of `event` were recorded; all of them.
    pub async fn wait_for(&self, event: &str, n: usize) -> Vec<Frame> {
        let wait = async {
            loop {
                let notified = self.inbox.arrived.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let of = self.frames_of(event);
                if of.len() >= n {
                    return of;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(PATIENCE, wait).await {
            Ok(frames) => frames,
            Err(_) => panic!(
                "session {} of user {} got {} {event}, expected {n}: {:?}",
                self.handle.id,
                self.handle.user,
                self.frames_of(event).len(),
                self.events()
            ),
        }
    }

    /// Waits for the next frame after the `seen` first ones.
    pub async fn next_frame(&self, seen: usize) -> Frame {
        self.wait_frames(seen + 1).await.swap_remove(seen)
    }

    /// Every frame queued for it so far, once recorded (nothing in flight is missed).
    pub async fn settled(&self) -> Vec<Frame> {
        self.addr.send(Flush).await.expect("the fake session runs");
        self.frames()
    }
}
