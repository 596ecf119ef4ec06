//! Password hashing: PBKDF2-HMAC-SHA256, a random 16-byte salt, stored as a PHC
//! string that carries its iteration count (`$pbkdf2-sha256$i=600000,l=32$…`), so the
//! count can be raised later and old hashes are rehashed on the next login.
//!
//! Hashing costs ~150 ms of a core at 600,000 iterations: it runs on tokio's blocking
//! pool, at most `hash_concurrency` at once, and at most `hash_queue` more may wait;
//! past that a request is told to come back (503) instead of queueing without bound,
//! so a login storm cannot starve messaging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pbkdf2::password_hash::phc::PasswordHash;
use pbkdf2::password_hash::{CustomizedPasswordHasher, PasswordVerifier};
use pbkdf2::{Params, Pbkdf2};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password checks in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Result of checking a password against a stored hash.
pub enum Verified {
    /// Correct; `rehash` carries a new hash when the stored one is weaker than configured.
    Yes {
        rehash: Option<String>,
    },
    No,
}

/// The CPU priority a hashing thread ended up with, read back from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// `SCHED_IDLE`: runs only on a core nothing else wants (what the login-storm
    /// figures were measured with).
    Idle,
    /// `SCHED_IDLE` was refused, nice 19 was not.
    Nice19,
    /// Both were refused (a syscall filter): hashing competes with messaging.
    Normal,
}

#[derive(Clone)]
pub struct Hasher {
    iterations: u32,
    jobs: std::sync::mpsc::Sender<Job>,
    in_flight: Arc<AtomicUsize>,
    /// Most checks running or waiting at once: `concurrency + queue`.
    limit: usize,
    busy_delay: Duration,
    priority: Priority,
}

type Job = Box<dyn FnOnce() + Send>;

/// A place in the hashing queue, taken before any other work is done for a
/// request, so a request that would be refused costs nothing (no database query).
pub struct Admission {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A hash of a password nobody has, so an unknown account costs the same time as a
/// wrong password (no user enumeration by timing).
const DUMMY_PASSWORD: &str = "parley-dummy-password-for-timing";

impl Hasher {
    /// Starts `concurrency` hashing threads at the lowest CPU priority, each busy at
    /// most `duty_percent` of the time: they use what the messaging path leaves, so
    /// a login storm cannot slow chats down much.
    pub fn new(iterations: u32, concurrency: usize, queue: usize) -> Hasher {
        Hasher::with_duty(iterations, concurrency, queue, 100)
    }

    /// `new`, with each hashing thread resting after a hash so that it is busy at
    /// most `duty_percent` of the time (100: no rest). On two cores a hashing thread
    /// that never rests tripled messaging p99 during a login storm even at the
    /// lowest priority (the cores share more than the scheduler can divide); at 50%
    /// the storm costs under 2×, at the price of half the peak login rate.
    pub fn with_duty(
        iterations: u32,
        concurrency: usize,
        queue: usize,
        duty_percent: u8,
    ) -> Hasher {
        let duty_percent = duty_percent.clamp(1, 100);
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let (report, reports) = std::sync::mpsc::channel::<Priority>();
        for n in 0..concurrency.max(1) {
            let rx = rx.clone();
            let report = report.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("parley-hash-{n}"))
                .spawn(move || {
                    let _ = report.send(lower_priority());
                    drop(report);
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => {
                                let t = std::time::Instant::now();
                                job();
                                // Rest so hashing stays within its share of a core.
                                if let Some(rest) = rest_after(t.elapsed(), duty_percent) {
                                    std::thread::sleep(rest);
                                }
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        drop(report);
        // Read back at start, once: a sandbox that refuses the calls (a syscall filter
        // such as systemd's @resources) would otherwise leave hashing at normal
        // priority without a word, and the login-storm figures would not hold. Every
        // thread asks the same kernel the same thing, so the worst answer of all
        // threads is logged, one line. (Microseconds: the threads only make two calls.)
        let mut priority = Priority::Idle;
        for got in reports.iter().take(concurrency.max(1)) {
            if got != Priority::Idle && priority != Priority::Normal {
                priority = got;
            }
        }
        match priority {
            Priority::Idle => tracing::debug!("hashing threads run at SCHED_IDLE"),
            lowered => tracing::warn!(
                priority = ?lowered,
                "the hashing threads could not take SCHED_IDLE: a login storm will slow \
                 messaging. Under systemd, allow sched_setscheduler and setpriority in \
                 SystemCallFilter (the shipped parley.service does)"
            ),
        }
        Hasher {
            iterations,
            jobs: tx,
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit: concurrency.max(1) + queue,
            busy_delay: Duration::ZERO,
            priority,
        }
    }

    /// The priority the hashing threads got at start (the worst of them).
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// How long a refused request waits before it is told `Busy` (see `admit_paced`).
    pub fn with_busy_delay(mut self, delay: Duration) -> Hasher {
        self.busy_delay = delay;
        self
    }

    /// `admit`, but a refusal is answered only after the busy delay. A client that
    /// retries at once (a login storm) is then paced to a few thousand requests a
    /// second instead of tens of thousands — which, answered instantly, took a core
    /// from messaging — while its 503 still comes well within a second. Waiting is
    /// a timer, not a thread.
    pub async fn admit_paced(&self) -> Result<Admission, HashError> {
        let admitted = self.admit();
        if admitted.is_err() && !self.busy_delay.is_zero() {
            tokio::time::sleep(self.busy_delay).await;
        }
        admitted
    }

    /// Takes a place in the queue, or `Busy` at once when it is full.
    pub fn admit(&self) -> Result<Admission, HashError> {
        let ahead = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let admission = Admission {
            in_flight: self.in_flight.clone(),
        };
        if ahead >= self.limit {
            return Err(HashError::Busy);
        }
        Ok(admission)
    }

    pub async fn hash(&self, _: &Admission, password: String) -> Result<String, HashError> {
        let iterations = self.iterations;
        self.run(move || hash_with(iterations, &password)).await?
    }

    /// Checks `password` against `stored`; `None` checks against a dummy hash and
    /// always answers `No`, taking as long as a real check.
    pub async fn verify(
        &self,
        _: &Admission,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, HashError> {
        let iterations = self.iterations;
        self.run(move || {
            let real = stored.is_some();
            let stored = match stored {
                Some(s) => s,
                None => hash_with(iterations, DUMMY_PASSWORD)?,
            };
            let parsed: PasswordHash = stored
                .parse()
                .map_err(|e| HashError::Failed(format!("stored hash unreadable: {e}")))?;
            if !real
                || Pbkdf2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_err()
            {
                return Ok(Verified::No);
            }
            let weaker = Params::try_from(&parsed)
                .map(|p| p.rounds() < iterations)
                .unwrap_or(true);
            let rehash = if weaker {
                Some(hash_with(iterations, &password)?)
            } else {
                None
            };
            Ok(Verified::Yes { rehash })
        })
        .await?
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| HashError::Failed("the hashing threads stopped".into()))?;
        rx.await
            .map_err(|_| HashError::Failed("a hashing thread dropped its job".into()))
    }
}

/// `SCHED_IDLE` for the calling thread (Linux scheduling is per thread): it runs
/// only on a core nothing else wants, and yields the moment a messaging thread
/// wakes. Nice 19 was not enough on two cores: messaging p99 tripled during a login
/// storm, as a woken worker still waited for the hashing thread's time slice.
/// Falls back to nice 19 where `SCHED_IDLE` is refused. Returns what the kernel says
/// the thread has now (read back, not assumed from the return codes).
fn lower_priority() -> Priority {
    // SAFETY: sched_setscheduler reads a local param struct; sched_getscheduler,
    // setpriority and getpriority only their integer arguments; gettid has none;
    // errno is this thread's own.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        let _ = libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        if libc::sched_getscheduler(0) == libc::SCHED_IDLE {
            return Priority::Idle;
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        // getpriority's -1 is also a valid nice value: errno tells them apart.
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if nice >= 19 && *libc::__errno_location() == 0 {
            Priority::Nice19
        } else {
            Priority::Normal
        }
    }
}

/// How long to rest after `busy` so that busy time is `duty_percent` of the whole.
fn rest_after(busy: Duration, duty_percent: u8) -> Option<Duration> {
    (duty_percent < 100).then(|| busy * u32::from(100 - duty_percent) / u32::from(duty_percent))
}

fn hash_with(iterations: u32, password: &str) -> Result<String, HashError> {
    let params = Params::new(iterations).map_err(|e| HashError::Failed(e.to_string()))?;
    let salt = pbkdf2::password_hash::generate_salt();
    let hash: PasswordHash = Pbkdf2::default()
        .hash_password_customized(password.as_bytes(), &salt, None, None, params)
        .map_err(|e| HashError::Failed(e.to_string()))?;
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_carry_their_iterations() {
        let h = Hasher::new(1000, 2, 8);
        let a = h.admit().unwrap();
        let stored = h.hash(&a, "correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$pbkdf2-sha256$i=1000"), "{stored}");
        assert!(matches!(
            h.verify(&a, "correct horse".into(), Some(stored.clone()))
                .await
                .unwrap(),
            Verified::Yes { rehash: None }
        ));
        assert!(matches!(
            h.verify(&a, "wrong horse".into(), Some(stored.clone()))
                .await
                .unwrap(),
            Verified::No
        ));
        assert!(matches!(
            h.verify(&a, "correct horse".into(), None).await.unwrap(),
            Verified::No
        ));
        // Raising the count rehashes on the next successful check.
        let stronger = Hasher::new(2000, 2, 8);
        let b = stronger.admit().unwrap();
        match stronger
            .verify(&b, "correct horse".into(), Some(stored))
            .await
            .unwrap()
        {
            Verified::Yes { rehash: Some(new) } => {
                assert!(new.starts_with("$pbkdf2-sha256$i=2000"))
            }
            _ => panic!("expected a rehash"),
        }
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_frees_on_drop() {
        let h = Hasher::new(1000, 1, 1);
        let first = h.admit().unwrap();
        let second = h.admit().unwrap();
        assert!(matches!(h.admit(), Err(HashError::Busy)));
        drop(first);
        let third = h.admit().unwrap();
        drop((second, third));
    }

    #[tokio::test]
    async fn a_paced_refusal_waits_the_busy_delay_and_frees_its_place() {
        let h = Hasher::new(1000, 1, 0).with_busy_delay(Duration::from_millis(80));
        let held = h.admit().unwrap();
        let t = std::time::Instant::now();
        assert!(matches!(h.admit_paced().await, Err(HashError::Busy)));
        assert!(t.elapsed() >= Duration::from_millis(80));
        drop(held);
        let t = std::time::Instant::now();
        let again = h.admit_paced().await.unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(80),
            "an admission is not delayed"
        );
        drop(again);
    }

    #[test]
    fn hashing_threads_read_back_the_lowest_priority() {
        // Unprivileged threads may always move to SCHED_IDLE (no filter in unit tests).
        assert_eq!(Hasher::new(1000, 2, 0).priority(), Priority::Idle);
    }

    #[test]
    fn the_rest_keeps_hashing_to_its_duty() {
        let ms = Duration::from_millis;
        assert_eq!(rest_after(ms(150), 100), None);
        assert_eq!(rest_after(ms(150), 50), Some(ms(150)));
        assert_eq!(rest_after(ms(100), 25), Some(ms(300)));
    }

    #[tokio::test]
    async fn salts_differ() {
        let h = Hasher::new(1000, 2, 8);
        let adm = h.admit().unwrap();
        let a = h.hash(&adm, "same password".into()).await.unwrap();
        let b = h.hash(&adm, "same password".into()).await.unwrap();
        assert_ne!(a, b);
    }
}
