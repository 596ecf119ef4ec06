//! The image workers: at most `limits.image_workers` images are decoded or encoded
//! at once, each on a blocking thread (never on the async runtime, where it would
//! stall every request and WebSocket of that worker), and at most
//! `limits.image_queue` more wait; past that an upload is told to come back (503)
//! instead of queueing without bound. The upload rate already bounds how much of
//! this one user can ask for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

/// No worker is free and the queue is full.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

#[derive(Clone)]
pub struct ImagePool {
    workers: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    queue: usize,
}

/// A place in the queue, given back however the wait ends (done or dropped).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ImagePool {
    pub fn new(workers: usize, queue: usize) -> ImagePool {
        ImagePool {
            workers: Arc::new(Semaphore::new(workers.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            queue,
        }
    }

    /// Runs `job` on a blocking thread when a worker is free; `Busy` at once when
    /// `queue` jobs are waiting already.
    pub async fn run<T, F>(&self, job: F) -> Result<T, Busy>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = match self.workers.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let _place = Waiting(self.waiting.clone());
                self.workers
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Busy)?
            }
        };
        // The permit moves into the thread: a client that goes away mid-job does not
        // free a worker that is still busy.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_worker_one_waiting_then_busy() {
        let pool = ImagePool::new(1, 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || rx.recv().ok()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 2).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(pool.run(|| 3).await, Err(Busy));
        tx.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(Some(())));
        assert_eq!(queued.await.unwrap(), Ok(2));
        // Everything given back: the queue takes jobs again.
        assert_eq!(pool.run(|| 4).await, Ok(4));
    }
}
