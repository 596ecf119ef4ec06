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
                    StoreError::Other(format!("{} outcomes for {} messages", v.len(), jobs.len()));
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

/// Most receipt requests marked in one round trip.
const MAX_RECEIPT_BATCH: usize = 1024;

/// A delivery receipt request and where its receipts go.
type ReceiptJob = (
    UserId,
    Vec<MessageId>,
    tokio::sync::oneshot::Sender<Result<Vec<Receipt>, StoreError>>,
);

/// The receipt write path: `message:delivered` from every session goes through one
/// lane that marks everything queued meanwhile in one read and one write, so a
/// receipt per message does not cost a durable commit per message.
#[derive(Clone)]
pub struct Receipts {
    tx: mpsc::Sender<ReceiptJob>,
}

impl Receipts {
    pub fn start(store: Arc<dyn Store>) -> Receipts {
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        tokio::spawn(run_receipts(store, rx));
        Receipts { tx }
    }

    /// Marks `ids` delivered to `user`; resolves with the receipts to send.
    pub async fn mark(
        &self,
        user: UserId,
        ids: Vec<MessageId>,
    ) -> Result<Vec<Receipt>, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Waiting for room in the queue slows receipts down instead of refusing them.
        self.tx
            .send((user, ids, tx))
            .await
            .map_err(|_| StoreError::Other("the receipt writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Other("the receipt writer stopped".into()))?
    }
}

async fn run_receipts(store: Arc<dyn Store>, mut rx: mpsc::Receiver<ReceiptJob>) {
    let mut jobs: Vec<ReceiptJob> = Vec::with_capacity(MAX_RECEIPT_BATCH);
    while rx.recv_many(&mut jobs, MAX_RECEIPT_BATCH).await > 0 {
        let batch: Vec<(UserId, Vec<MessageId>)> =
            jobs.iter().map(|(u, ids, _)| (*u, ids.clone())).collect();
        match store.mark_delivered(&batch).await {
            Ok(results) if results.len() == jobs.len() => {
                for ((_, _, reply), r) in jobs.drain(..).zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            Ok(_) => {
                for (_, _, reply) in jobs.drain(..) {
                    let _ = reply.send(Err(StoreError::Other("receipt count mismatch".into())));
                }
            }
            Err(e) => {
                for (_, _, reply) in jobs.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
