//! The message write path. Rooms hand new messages to one of a few writer lanes;
//! each lane takes everything that queued while its previous INSERT was running and
//! stores it as one multi-row INSERT, then reports back to each room in order.
//!
//! Latency bound: a message waits at most for the batch ahead of it in its lane
//! (one round trip, plus its own) — there is no timer; under light load a batch is
//! one message and goes out at once, under heavy load batches grow (up to
//! `MAX_BATCH`) and the per-message cost of a durable commit is shared.
//! Order: a chat always maps to the same lane and a lane runs one batch at a time,
//! so messages of a chat are stored (and get ids) in the order the room sent them.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::ids::{ChatId, MessageId, UserId};
use crate::store::{Inserted, NewMessage, Receipt, Store, StoreError};

/// Most messages in one INSERT.
pub const MAX_BATCH: usize = 256;
/// Messages that may wait in one lane before senders are told to slow down.
pub const LANE_QUEUE: usize = 8192;

/// A stored batch's outcomes for one requester, in the order it asked.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Persisted<T: Send + 'static> {
    pub outcomes: Outcomes<T>,
}

type Outcomes<T> = Vec<(T, Result<Inserted, StoreError>)>;

/// One message to store and where to report it.
pub struct Job<T: Send + 'static> {
    pub message: NewMessage,
    pub tag: T,
    pub reply: Recipient<Persisted<T>>,
}

pub struct Writer<T: Send + 'static> {
    lanes: Arc<Vec<mpsc::Sender<Job<T>>>>,
}

impl<T: Send + 'static> Clone for Writer<T> {
    fn clone(&self) -> Self {
        Writer {
            lanes: self.lanes.clone(),
        }
    }
}

impl<T: Send + 'static> Writer<T> {
    /// Starts `lanes` writer tasks on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>, lanes: usize) -> Writer<T> {
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                tokio::spawn(run_lane(store.clone(), rx));
                tx
            })
            .collect();
        Writer {
            lanes: Arc::new(lanes),
        }
    }

    /// Queues a message without waiting; gives the job back when its lane is full.
    pub fn submit(&self, chat: ChatId, job: Job<T>) -> Result<(), Box<Job<T>>> {
        let lane = &self.lanes[(chat.0 as usize) % self.lanes.len()];
        lane.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => {
                Box::new(j)
            }
        })
    }
}

async fn run_lane<T: Send + 'static>(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job<T>>) {
    let mut jobs: Vec<Job<T>> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch: Vec<NewMessage> = jobs.iter().map(|j| j.message.clone()).collect();
        let results = store.insert_messages(&batch).await;
        let mut outcomes: Vec<Result<Inserted, StoreError>> = match results {
            Ok(v) if v.len() == jobs.len() => v.into_iter().map(Ok).collect(),
            Ok(v) => {
                let e =
                    StoreError::other(format!("{} outcomes for {} messages", v.len(), jobs.len()));
                vec![Err(e); jobs.len()]
            }
            Err(e) => vec![Err(e); jobs.len()],
        };
        // Group consecutive jobs for the same requester into one report, keeping order.
        let mut current: Option<(Recipient<Persisted<T>>, Outcomes<T>)> = None;
        for (job, outcome) in jobs.drain(..).zip(outcomes.drain(..)) {
            match &mut current {
                Some((reply, items)) if *reply == job.reply => items.push((job.tag, outcome)),
                _ => {
                    if let Some((reply, items)) = current.take() {
                        reply.do_send(Persisted { outcomes: items });
                    }
                    current = Some((job.reply, vec![(job.tag, outcome)]));
                }
            }
        }
        if let Some((reply, items)) = current.take() {
            reply.do_send(Persisted { outcomes: items });
        }
    }
}

/// Most receipt requests the lane holds to choose from (the rest wait in its queue).
const MAX_RECEIPT_PENDING: usize = 1024;
/// Most message ids in one store call. A call is also the unit that fails together.
const RECEIPT_CALL_IDS: usize = 2048;
/// Receipt requests one user may have queued or running at once (all sessions);
/// beyond it they are refused (`unavailable`, retry), so a user flooding receipts
/// cannot make the server hold an unbounded pile of waiting requests.
pub const RECEIPTS_PER_USER: usize = 64;

/// A delivery receipt request and where its receipts go.
type ReceiptJob = (
    UserId,
    Vec<MessageId>,
    tokio::sync::oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
);

/// The receipt write path: `message:delivered` from every session goes through one
/// lane that marks many requests per store call, so a receipt per message does not
/// cost a durable commit per message.
///
/// Isolation: a call holds at most `RECEIPT_CALL_IDS` ids: the oldest request waiting,
/// then the smallest others, so one reader's floods of large requests neither delay
/// ordinary ones by more than a call nor share a statement with all of them, and no
/// request waits forever; a call that fails is retried request by request, so only a
/// request that fails by itself gets the error.
#[derive(Clone)]
pub struct Receipts {
    tx: mpsc::Sender<ReceiptJob>,
    outstanding: Arc<dashmap::DashMap<UserId, usize>>,
}

/// One request counted against its user until it is answered (or abandoned).
struct Outstanding<'a> {
    map: &'a dashmap::DashMap<UserId, usize>,
    user: UserId,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.map.remove_if_mut(&self.user, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

impl Receipts {
    pub fn start(store: Arc<dyn Store>) -> Receipts {
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        tokio::spawn(run_receipts(store, rx));
        Receipts {
            tx,
            outstanding: Arc::new(dashmap::DashMap::new()),
        }
    }

    /// Marks `ids` delivered to `user`; resolves with the receipts to send.
    pub async fn mark(
        &self,
        user: UserId,
        ids: Vec<MessageId>,
    ) -> Result<Vec<Receipt>, StoreError> {
        {
            let mut n = self.outstanding.entry(user).or_insert(0);
            if *n >= RECEIPTS_PER_USER {
                return Err(StoreError::unavailable(format!(
                    "more than {RECEIPTS_PER_USER} receipt requests of one user waiting"
                )));
            }
            *n += 1;
        }
        let _counted = Outstanding {
            map: &self.outstanding,
            user,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Waiting for room in the queue slows receipts down instead of refusing them.
        self.tx
            .send((user, ids, tx))
            .await
            .map_err(|_| StoreError::other("the receipt writer stopped"))?;
        rx.await
            .map_err(|_| StoreError::other("the receipt writer stopped"))?
    }
}

async fn run_receipts(store: Arc<dyn Store>, mut rx: mpsc::Receiver<ReceiptJob>) {
    // Oldest first.
    let mut pending: VecDeque<ReceiptJob> = VecDeque::with_capacity(MAX_RECEIPT_PENDING);
    let mut arrived: Vec<ReceiptJob> = Vec::with_capacity(MAX_RECEIPT_PENDING);
    loop {
        if pending.is_empty() {
            if rx.recv_many(&mut arrived, MAX_RECEIPT_PENDING).await == 0 {
                return;
            }
        } else {
            // What arrived during the last call competes with what still waits.
            while pending.len() + arrived.len() < MAX_RECEIPT_PENDING {
                match rx.try_recv() {
                    Ok(job) => arrived.push(job),
                    Err(_) => break,
                }
            }
        }
        pending.extend(arrived.drain(..));
        let call = next_call(&mut pending);
        mark_call(&*store, call).await;
    }
}

/// The requests of the next store call: the oldest waiting one, then the smallest
/// others while the call has room for their ids; the rest keep their order.
fn next_call(pending: &mut VecDeque<ReceiptJob>) -> Vec<ReceiptJob> {
    let Some(oldest) = pending.pop_front() else {
        return Vec::new();
    };
    let mut ids = oldest.1.len();
    let mut by_size: Vec<usize> = (0..pending.len()).collect();
    by_size.sort_by_key(|&i| pending[i].1.len());
    let mut chosen = vec![false; pending.len()];
    for i in by_size {
        let n = pending[i].1.len();
        if ids + n > RECEIPT_CALL_IDS {
            break;
        }
        ids += n;
        chosen[i] = true;
    }
    let mut call = vec![oldest];
    let mut keep = VecDeque::with_capacity(pending.len());
    for (job, take) in pending.drain(..).zip(chosen) {
        if take {
            call.push(job);
        } else {
            keep.push_back(job);
        }
    }
    *pending = keep;
    call
}

/// One store call for `jobs`, each answered; on failure, each job again on its own.
async fn mark_call(store: &dyn Store, jobs: Vec<ReceiptJob>) {
    let batch: Vec<(UserId, Vec<MessageId>)> =
        jobs.iter().map(|(u, ids, _)| (*u, ids.clone())).collect();
    let err = match store.mark_delivered(&batch).await {
        Ok(results) if results.len() == jobs.len() => {
            for ((_, _, reply), r) in jobs.into_iter().zip(results) {
                let _ = reply.send(Ok(r));
            }
            return;
        }
        Ok(results) => StoreError::other(format!(
            "{} receipt lists for {} requests",
            results.len(),
            jobs.len()
        )),
        Err(e) => e,
    };
    if jobs.len() == 1 {
        for (_, _, reply) in jobs {
            let _ = reply.send(Err(err.clone()));
        }
        return;
    }
    tracing::warn!(requests = jobs.len(), error = %err.chain(), "a receipt batch failed; retrying its requests one by one");
    let mut down: Option<StoreError> = None;
    for (user, ids, reply) in jobs {
        // MySQL is unreachable, not this request at fault: the rest fail at once
        // instead of each waiting for its own failure.
        if let Some(e) = &down {
            let _ = reply.send(Err(e.clone()));
            continue;
        }
        let result = store
            .mark_delivered(&[(user, ids)])
            .await
            .and_then(|mut v| {
                v.pop()
                    .ok_or_else(|| StoreError::other("no receipt list for a request"))
            });
        if let Err(e) = &result {
            if e.is_unavailable() {
                down = Some(e.clone());
            }
        }
        let _ = reply.send(result);
    }
}
