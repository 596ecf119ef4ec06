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

use pbkdf2::password_hash::phc::PasswordHash;
use pbkdf2::password_hash::{CustomizedPasswordHasher, PasswordVerifier};
use pbkdf2::{Params, Pbkdf2};
use tokio::sync::Semaphore;

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

#[derive(Clone)]
pub struct Hasher {
    iterations: u32,
    permits: Arc<Semaphore>,
    in_flight: Arc<AtomicUsize>,
    /// Most checks running or waiting at once: `concurrency + queue`.
    limit: usize,
}

/// A hash of a password nobody has, so an unknown account costs the same time as a
/// wrong password (no user enumeration by timing).
const DUMMY_PASSWORD: &str = "parley-dummy-password-for-timing";

impl Hasher {
    pub fn new(iterations: u32, concurrency: usize, queue: usize) -> Hasher {
        Hasher {
            iterations,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            in_flight: Arc::new(AtomicUsize::new(0)),
            limit: concurrency.max(1) + queue,
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let iterations = self.iterations;
        self.run(move || hash_with(iterations, &password)).await?
    }

    /// Checks `password` against `stored`; `None` checks against a dummy hash and
    /// always answers `No`, taking as long as a real check.
    pub async fn verify(
        &self,
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
        let ahead = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlightGuard(&self.in_flight);
        if ahead >= self.limit {
            return Err(HashError::Busy);
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| HashError::Failed(e.to_string()))
    }
}

struct InFlightGuard<'a>(&'a AtomicUsize);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
        let stored = h.hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$pbkdf2-sha256$i=1000"), "{stored}");
        assert!(matches!(
            h.verify("correct horse".into(), Some(stored.clone()))
                .await
                .unwrap(),
            Verified::Yes { rehash: None }
        ));
        assert!(matches!(
            h.verify("wrong horse".into(), Some(stored.clone()))
                .await
                .unwrap(),
            Verified::No
        ));
        assert!(matches!(
            h.verify("correct horse".into(), None).await.unwrap(),
            Verified::No
        ));
        // Raising the count rehashes on the next successful check.
        let stronger = Hasher::new(2000, 2, 8);
        match stronger
            .verify("correct horse".into(), Some(stored))
            .await
            .unwrap()
        {
            Verified::Yes { rehash: Some(new) } => {
                assert!(new.starts_with("$pbkdf2-sha256$i=2000"))
            }
            _ => panic!("expected a rehash"),
        }
    }

    #[tokio::test]
    async fn salts_differ() {
        let h = Hasher::new(1000, 2, 8);
        let a = h.hash("same password".into()).await.unwrap();
        let b = h.hash("same password".into()).await.unwrap();
        assert_ne!(a, b);
    }
}
