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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::protocol::MessageKind;
    use crate::testing::{self, Failure, MemoryStore, Op, PATIENCE};

    /// A job's tag and its message id, or its error's text.
    type Outcome = (u32, Result<MessageId, String>);

    /// Stands in for a room: records each report it gets, in order.
    #[derive(Default, Clone)]
    struct Reports(Arc<Mutex<Vec<Vec<Outcome>>>>);

    struct Requester(Reports);

    impl Actor for Requester {
        type Context = Context<Self>;
    }

    impl Handler<Persisted<u32>> for Requester {
        type Result = ();

        fn handle(&mut self, done: Persisted<u32>, _: &mut Context<Self>) {
            let report = done
                .outcomes
                .into_iter()
                .map(|(tag, r)| {
                    let r = match r {
                        Ok(Inserted::Fresh(m) | Inserted::Existing(m)) => Ok(m.id),
                        Ok(Inserted::Rejected { .. }) => Err("rejected".into()),
                        Err(e) => Err(e.to_string()),
                    };
                    (tag, r)
                })
                .collect();
            self.0 .0.lock().expect("not poisoned").push(report);
        }
    }

    impl Reports {
        fn start() -> (Reports, Recipient<Persisted<u32>>) {
            let reports = Reports::default();
            let addr = Requester(reports.clone()).start();
            (reports, addr.recipient())
        }

        fn all(&self) -> Vec<Vec<Outcome>> {
            self.0.lock().expect("not poisoned").clone()
        }

        /// Every outcome, flattened, once `n` have arrived.
        async fn wait(&self, n: usize) -> Vec<Outcome> {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                let flat: Vec<_> = self.all().into_iter().flatten().collect();
                if flat.len() >= n {
                    return flat;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} of {n} outcomes reported",
                    flat.len()
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    fn job(chat: u64, tag: u32, reply: &Recipient<Persisted<u32>>) -> Job<u32> {
        Job {
            message: NewMessage {
                chat_id: ChatId(chat),
                sender_id: UserId(1),
                client_id: format!("c{tag}"),
                kind: MessageKind::Text,
                content: format!("m{tag}"),
                media_id: None,
                encrypted: false,
                e2ee: None,
                reply_to: None,
            },
            tag,
            reply: reply.clone(),
        }
    }

    fn submit(writer: &Writer<u32>, chat: u64, tag: u32, reply: &Recipient<Persisted<u32>>) {
        assert!(writer.submit(ChatId(chat), job(chat, tag, reply)).is_ok());
    }

    #[actix::test]
    async fn what_queues_during_an_insert_goes_out_as_one_batch_and_one_report() {
        let store = MemoryStore::new();
        let gate = store.stall(Op::InsertMessages);
        let writer = Writer::start(store.clone(), 1);
        let (reports, reply) = Reports::start();
        submit(&writer, 1, 0, &reply);
        store.called(Op::InsertMessages, 1).await;
        for tag in 1..=4 {
            submit(&writer, 1, tag, &reply);
        }
        gate.add_permits(2);
        let outcomes = reports.wait(5).await;
        let sizes: Vec<usize> = store.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 4], "one INSERT for everything that waited");
        assert_eq!(store.calls(Op::InsertMessages), 2);
        let report_sizes: Vec<usize> = reports.all().iter().map(Vec::len).collect();
        assert_eq!(report_sizes, [1, 4], "one report per batch and requester");
        let tags: Vec<u32> = outcomes.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, [0, 1, 2, 3, 4]);
        let ids: Vec<u64> = outcomes
            .iter()
            .map(|(_, r)| r.as_ref().expect("stored").0)
            .collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
    }

    #[actix::test]
    async fn a_batch_is_capped() {
        let store = MemoryStore::new();
        let gate = store.stall(Op::InsertMessages);
        let writer = Writer::start(store.clone(), 1);
        let (reports, reply) = Reports::start();
        submit(&writer, 1, 0, &reply);
        store.called(Op::InsertMessages, 1).await;
        let n = MAX_BATCH as u32 + 10;
        for tag in 1..=n {
            submit(&writer, 1, tag, &reply);
        }
        store.unstall(Op::InsertMessages);
        drop(gate);
        reports.wait(n as usize + 1).await;
        let sizes: Vec<usize> = store.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, MAX_BATCH, 10]);
    }

    #[actix::test]
    async fn each_chat_keeps_its_order_across_lanes() {
        let store = MemoryStore::new();
        let lanes = 3;
        let writer = Writer::start(store.clone(), lanes);
        let (reports, reply) = Reports::start();
        let (other_reports, other_reply) = Reports::start();
        let mut sent: Vec<(u64, u32)> = Vec::new();
        for tag in 0..120u32 {
            let chat = u64::from(tag * 7 % 5) + 1;
            let to = if chat % 2 == 0 { &reply } else { &other_reply };
            submit(&writer, chat, tag, to);
            sent.push((chat, tag));
        }
        let n_even = sent.iter().filter(|(c, _)| c % 2 == 0).count();
        let mut outcomes = reports.wait(n_even).await;
        outcomes.extend(other_reports.wait(sent.len() - n_even).await);
        let id_of: HashMap<u32, u64> = outcomes
            .iter()
            .map(|(t, r)| (*t, r.as_ref().expect("stored").0))
            .collect();
        for chat in 1..=5u64 {
            let tags: Vec<u32> = sent
                .iter()
                .filter(|(c, _)| *c == chat)
                .map(|(_, t)| *t)
                .collect();
            let ids: Vec<u64> = tags.iter().map(|t| id_of[t]).collect();
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "chat {chat}: ids {ids:?} for tags {tags:?}"
            );
            // Reported to its requester in the order it was sent.
            let reported: Vec<u32> = if chat % 2 == 0 {
                &reports
            } else {
                &other_reports
            }
            .all()
            .into_iter()
            .flatten()
            .map(|(t, _)| t)
            .filter(|t| tags.contains(t))
            .collect();
            assert_eq!(reported, tags, "chat {chat}");
        }
        for batch in store.batches() {
            let lane = batch[0].chat_id.0 as usize % lanes;
            assert!(
                batch.iter().all(|m| m.chat_id.0 as usize % lanes == lane),
                "a batch holds one lane's chats"
            );
        }
    }

    #[actix::test]
    async fn a_failed_batch_answers_every_job_in_it_and_the_next_batch_proceeds() {
        let store = MemoryStore::new();
        let gate = store.stall(Op::InsertMessages);
        let writer = Writer::start(store.clone(), 1);
        let (first, first_reply) = Reports::start();
        let (second, second_reply) = Reports::start();
        submit(&writer, 1, 0, &first_reply);
        store.called(Op::InsertMessages, 1).await;
        // Queued behind the first INSERT: one batch, two requesters.
        submit(&writer, 1, 1, &first_reply);
        submit(&writer, 1, 2, &second_reply);
        submit(&writer, 1, 3, &first_reply);
        store.fail(Op::InsertMessages, Failure::Unavailable, 1);
        gate.add_permits(1);
        store.called(Op::InsertMessages, 2).await;
        submit(&writer, 1, 4, &second_reply);
        gate.add_permits(2);
        let a = first.wait(3).await;
        let b = second.wait(2).await;
        let sizes: Vec<usize> = store.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 3, 1]);
        assert!(a[0].1.is_ok());
        for (tag, r) in a[1..].iter().chain(&b[..1]) {
            let e = r.as_ref().expect_err("the failed batch");
            assert!(e.contains("unavailable"), "job {tag}: {e}");
        }
        assert_eq!(b[1].0, 4);
        assert_eq!(b[1].1, Ok(MessageId(2)), "the next batch is stored");
        // Reports keep order and group consecutive jobs of one requester.
        let grouped: Vec<Vec<u32>> = first
            .all()
            .iter()
            .map(|r| r.iter().map(|(t, _)| *t).collect())
            .collect();
        assert_eq!(grouped, [vec![0], vec![1], vec![3]]);
    }

    #[actix::test]
    async fn a_full_lane_gives_the_job_back() {
        let store = MemoryStore::new();
        let _gate = store.stall(Op::InsertMessages);
        let writer = Writer::start(store.clone(), 1);
        let (_reports, reply) = Reports::start();
        submit(&writer, 1, 0, &reply);
        store.called(Op::InsertMessages, 1).await;
        for tag in 1..=LANE_QUEUE as u32 {
            submit(&writer, 1, tag, &reply);
        }
        let back = writer
            .submit(ChatId(1), job(1, 99_999, &reply))
            .expect_err("the lane is full");
        assert_eq!(back.tag, 99_999);
    }

    fn receipt_ids(r: &[Receipt]) -> Vec<(ChatId, UserId, Vec<MessageId>)> {
        r.iter()
            .map(|r| (r.chat_id, r.sender_id, r.message_ids.clone()))
            .collect()
    }

    /// A store with ann's messages 1 and 2 in a group of ann, bob and cat, and
    /// bob's message 3.
    fn receipts_store() -> Arc<MemoryStore> {
        let store = MemoryStore::new();
        store.add_chat(
            ChatId(1),
            crate::store::ChatKind::Group,
            &[UserId(1), UserId(2), UserId(3)],
        );
        for (sender, text) in [(1, "a"), (1, "b"), (2, "c")] {
            store.seed(ChatId(1), UserId(sender), text);
        }
        store
    }

    #[actix::test]
    async fn receipts_of_readers_who_asked_meanwhile_share_one_store_call() {
        let store = receipts_store();
        let gate = store.stall(Op::MarkDelivered);
        let receipts = Receipts::start(store.clone());
        let first = {
            let r = receipts.clone();
            actix::spawn(async move { r.mark(UserId(2), vec![MessageId(1)]).await })
        };
        store.called(Op::MarkDelivered, 1).await;
        let later: Vec<_> = [
            (UserId(3), vec![MessageId(1), MessageId(2), MessageId(3)]),
            (UserId(2), vec![MessageId(2), MessageId(3)]),
        ]
        .into_iter()
        .map(|(u, ids)| {
            let r = receipts.clone();
            actix::spawn(async move { r.mark(u, ids).await })
        })
        .collect();
        // Let both reach the lane's queue before the first call returns.
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.unstall(Op::MarkDelivered);
        drop(gate);
        let first = first.await.expect("task").expect("marked");
        assert_eq!(
            receipt_ids(&first),
            [(ChatId(1), UserId(1), vec![MessageId(1)])]
        );
        let mut answers = Vec::new();
        for t in later {
            answers.push(t.await.expect("task").expect("marked"));
        }
        assert_eq!(store.calls(Op::MarkDelivered), 2, "one call for both");
        assert_eq!(
            receipt_ids(&answers[0]),
            [
                (ChatId(1), UserId(1), vec![MessageId(1), MessageId(2)]),
                (ChatId(1), UserId(2), vec![MessageId(3)]),
            ]
        );
        // Bob's own message 3 is no receipt for him to send.
        assert_eq!(
            receipt_ids(&answers[1]),
            [(ChatId(1), UserId(1), vec![MessageId(2)])]
        );
        assert_eq!(
            store.marks(UserId(2), ChatId(1)).map(|m| m.0),
            Some(MessageId(2))
        );
    }

    /// Two requests that will share one call, the lane held by a first one.
    async fn two_queued(
        store: &Arc<MemoryStore>,
        receipts: &Receipts,
    ) -> Vec<tokio::task::JoinHandle<Result<Vec<Receipt>, StoreError>>> {
        let gate = store.stall(Op::MarkDelivered);
        let r = receipts.clone();
        let head = actix::spawn(async move { r.mark(UserId(3), vec![MessageId(3)]).await });
        store.called(Op::MarkDelivered, 1).await;
        let mut tasks = vec![head];
        for (u, id) in [(UserId(2), 1), (UserId(3), 2)] {
            let r = receipts.clone();
            tasks.push(actix::spawn(
                async move { r.mark(u, vec![MessageId(id)]).await },
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(gate);
        tasks
    }

    #[actix::test]
    async fn a_failed_receipt_call_is_retried_request_by_request() {
        let store = receipts_store();
        let receipts = Receipts::start(store.clone());
        let tasks = two_queued(&store, &receipts).await;
        store.fail(Op::MarkDelivered, Failure::Broken, 1);
        // The head's call already decided it succeeds; the shared one fails.
        store.unstall(Op::MarkDelivered);
        for t in tasks {
            assert!(t.await.expect("task").is_ok(), "each alone succeeds");
        }
        assert_eq!(store.calls(Op::MarkDelivered), 1 + 1 + 2);
    }

    #[actix::test]
    async fn when_storage_is_down_the_rest_of_a_failed_call_fails_at_once() {
        let store = receipts_store();
        let receipts = Receipts::start(store.clone());
        let tasks = two_queued(&store, &receipts).await;
        store.fail(Op::MarkDelivered, Failure::Unavailable, 2);
        store.unstall(Op::MarkDelivered);
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("task"));
        }
        assert!(results[0].is_ok());
        assert!(results[1].as_ref().is_err_and(testing::is_unavailable));
        assert!(results[2].as_ref().is_err_and(testing::is_unavailable));
        assert_eq!(
            store.calls(Op::MarkDelivered),
            1 + 1 + 1,
            "no call for the last"
        );
    }

    #[actix::test]
    async fn one_user_may_not_pile_up_receipt_requests() {
        let store = receipts_store();
        let _gate = store.stall(Op::MarkDelivered);
        let receipts = Receipts::start(store.clone());
        let mut waiting = Vec::new();
        for _ in 0..RECEIPTS_PER_USER {
            let r = receipts.clone();
            waiting.push(actix::spawn(async move {
                r.mark(UserId(2), vec![MessageId(1)]).await
            }));
        }
        store.called(Op::MarkDelivered, 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let refused = receipts.mark(UserId(2), vec![MessageId(2)]).await;
        assert!(refused.is_err_and(|e| testing::is_unavailable(&e)));
        let other = {
            let r = receipts.clone();
            actix::spawn(async move { r.mark(UserId(3), vec![MessageId(1)]).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !other.is_finished(),
            "another user waits their turn, not refused"
        );
    }
}
