//! The connect lanes. A session coming online needs its user's contacts (before it
//! registers, so presence can be announced) and then to know whether anything waits
//! for it (after it registers, so nothing stored in between is missed). Done per
//! connection, those two queries were most of MySQL's work during a wave of
//! connects (after a deploy, every client at once). So, as the writer lanes do for
//! messages, each lane runs one query at a time for everyone who asked while the
//! previous one ran: no timer, a lone connect goes out at once, a wave shares its
//! queries. Only users with something undelivered then page through it themselves.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::ids::{ChangeId, UserId};
use crate::store::{Store, StoreError};

/// Most users in one batch query (the `IN` list of `src/db`).
const MAX_BATCH: usize = 512;
/// Requests that may queue in one lane; further connects wait for room.
const QUEUE: usize = 16_384;

type Job<T> = (UserId, oneshot::Sender<Result<T, StoreError>>);

#[derive(Clone)]
pub struct Arrivals {
    contacts: mpsc::Sender<Job<Vec<UserId>>>,
    waiting: mpsc::Sender<Job<bool>>,
    /// The newest change each user can see, for `ready.lastChange`.
    last_change: mpsc::Sender<Job<ChangeId>>,
}

impl Arrivals {
    /// Starts both lanes on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> Arrivals {
        let (contacts, rx) = mpsc::channel(QUEUE);
        let s = store.clone();
        tokio::spawn(run_lane(rx, move |users: Vec<UserId>| {
            let s = s.clone();
            async move { s.contacts_of(&users).await }
        }));
        let (last_change, rx) = mpsc::channel(QUEUE);
        let s = store.clone();
        tokio::spawn(run_lane(rx, move |users: Vec<UserId>| {
            let s = s.clone();
            async move { s.last_changes(&users).await }
        }));
        let (waiting, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run_lane(rx, move |users: Vec<UserId>| {
            let s = store.clone();
            async move {
                let found: HashSet<UserId> =
                    s.with_undelivered(&users).await?.into_iter().collect();
                Ok(users.iter().map(|u| found.contains(u)).collect())
            }
        }));
        Arrivals {
            contacts,
            waiting,
            last_change,
        }
    }

    /// Users who share at least one chat with `user`.
    pub async fn contacts(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
        ask(&self.contacts, user).await
    }

    /// Whether messages from others wait undelivered for `user`.
    pub async fn has_undelivered(&self, user: UserId) -> Result<bool, StoreError> {
        ask(&self.waiting, user).await
    }

    /// The newest change visible to `user` (0 when none).
    pub async fn last_change(&self, user: UserId) -> Result<ChangeId, StoreError> {
        ask(&self.last_change, user).await
    }
}

async fn ask<T>(lane: &mpsc::Sender<Job<T>>, user: UserId) -> Result<T, StoreError> {
    let stopped = || StoreError::other("the connect lane stopped");
    let (tx, rx) = oneshot::channel();
    lane.send((user, tx)).await.map_err(|_| stopped())?;
    rx.await.map_err(|_| stopped())?
}

/// Answers every queued request with one call of `batch` (one result per user, in
/// order); a failed batch fails each of its requests with the same error.
async fn run_lane<T, F, Fut>(mut rx: mpsc::Receiver<Job<T>>, batch: F)
where
    F: Fn(Vec<UserId>) -> Fut,
    Fut: Future<Output = Result<Vec<T>, StoreError>>,
{
    let mut jobs: Vec<Job<T>> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let users: Vec<UserId> = jobs.iter().map(|(u, _)| *u).collect();
        match batch(users).await {
            Ok(results) if results.len() == jobs.len() => {
                for ((_, reply), r) in jobs.drain(..).zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            Ok(_) => {
                for (_, reply) in jobs.drain(..) {
                    let _ = reply.send(Err(StoreError::other("connect batch count mismatch")));
                }
            }
            Err(e) => {
                for (_, reply) in jobs.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
