//! Sign-in sessions as the HTTP and WebSocket gates see them: is the session a token
//! names still live? Answered from memory, so authenticating a request costs no
//! database round trip once this process knows the session.
//!
//! - A cache maps sid → live (for whom) or revoked. A miss loads the row once
//!   (`auth_session_state`); a sid with no row counts as revoked. The cache is an LRU
//!   of bounded size: an entry that falls out is just loaded again.
//! - Revoked is final: once a sid is known revoked nothing marks it live again, so a
//!   slow load racing a revocation cannot resurrect it.
//! - Every node polls the revocation log (`auth_sessions_revoked_since`) once a
//!   second, against the database's clock, re-reading an overlap window so a
//!   revocation committed late is still seen (seeing one twice is harmless). It marks
//!   those sids revoked and closes this node's WebSockets of them with 4001. A node
//!   therefore notices any revocation — by another node, or by `parley admin` in
//!   another process — within about a second, with or without Redis.
//! - A revocation made here applies here at once as well (`revoked`).
//! - `last_seen_at` is written in batches every `TOUCH_EVERY` for the sessions seen
//!   since (requests, and open sockets), never once per request.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::NaiveDateTime;
use lru::LruCache;
use parley_actors::{AuthSessionId, Realtime, UserId};

use super::jwt::Bearer;
use crate::db::{Db, DbError};

/// Sessions kept in memory: far more than sign-ins active on one node at once, and
/// a few MiB at most.
const CACHE_ENTRIES: usize = 100_000;

/// How often the revocation log is read.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// How far back each read of the log reaches before the previous one: a revocation
/// stamped at one instant may commit a little later, after a poll that ran between.
const OVERLAP: Duration = Duration::from_secs(5);

/// How often `last_seen_at` is written.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// How often rows that can no longer sign anything in are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Revoked rows are kept this long (then a token naming one finds no row: still revoked).
const KEEP_REVOKED: Duration = Duration::from_secs(24 * 3600);

/// What this process knows of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Live(UserId),
    Revoked,
}

/// Why a bearer was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Signed out, revoked, capped away, or never existed here.
    #[error("the session was revoked")]
    Revoked,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The sid → state cache, without I/O (unit-tested on its own).
pub struct SessionCache {
    entries: Mutex<LruCache<AuthSessionId, Known>>,
}

impl SessionCache {
    pub fn new(capacity: usize) -> SessionCache {
        SessionCache {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<AuthSessionId, Known>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, sid: AuthSessionId) -> Option<Known> {
        self.lock().get(&sid).copied()
    }

    /// Records what was loaded for `sid`, unless it is known revoked meanwhile;
    /// returns what the cache now holds.
    pub fn learn(&self, sid: AuthSessionId, known: Known) -> Known {
        let mut entries = self.lock();
        if entries.get(&sid) == Some(&Known::Revoked) {
            return Known::Revoked;
        }
        entries.put(sid, known);
        known
    }

    pub fn revoke(&self, sids: &[AuthSessionId]) {
        let mut entries = self.lock();
        for &sid in sids {
            entries.put(sid, Known::Revoked);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The sessions of this process (app data; cheap to clone).
#[derive(Clone)]
pub struct AuthSessions {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    realtime: Realtime,
    cache: SessionCache,
    /// Sessions used since the last `last_seen_at` write.
    seen: Mutex<HashSet<AuthSessionId>>,
    max_per_user: usize,
    token_ttl: Duration,
}

impl AuthSessions {
    pub fn new(db: Db, realtime: Realtime, max_per_user: usize, token_ttl: Duration) -> Self {
        AuthSessions {
            inner: Arc::new(Inner {
                db,
                realtime,
                cache: SessionCache::new(CACHE_ENTRIES),
                seen: Mutex::new(HashSet::new()),
                max_per_user: max_per_user.max(1),
                token_ttl,
            }),
        }
    }

    /// Starts following the revocation log and writing `last_seen_at` (call inside
    /// the actix system, once per process).
    pub fn start(&self) {
        actix_web::rt::spawn(self.clone().follow_revocations());
        actix_web::rt::spawn(self.clone().keep_rows());
    }

    /// Whether `bearer`'s session is live and theirs: from memory, or one query the
    /// first time this process meets the session.
    pub async fn admit(&self, bearer: Bearer) -> Result<(), SessionError> {
        let known = match self.inner.cache.get(bearer.sid) {
            Some(known) => known,
            None => {
                let state = self.inner.db.auth_session_state(bearer.sid).await?;
                let loaded = match state {
                    Some(s) if !s.revoked => Known::Live(s.user),
                    _ => Known::Revoked,
                };
                self.inner.cache.learn(bearer.sid, loaded)
            }
        };
        match known {
            Known::Live(user) if user == bearer.user => {
                self.saw(bearer.sid);
                Ok(())
            }
            // A sid of another user's: only a token of another database (restored,
            // or another deployment with the same secret) names one.
            _ => Err(SessionError::Revoked),
        }
    }

    fn saw(&self, sid: AuthSessionId) {
        let mut seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() < CACHE_ENTRIES {
            seen.insert(sid);
        }
    }

    /// A new sign-in of `user`: its row, and the oldest live ones past
    /// `auth.max_sessions_per_user` revoked (here at once, elsewhere by the log).
    pub async fn sign_in(
        &self,
        user: UserId,
        device: &str,
        source: Option<&str>,
    ) -> Result<AuthSessionId, DbError> {
        let (sid, evicted) = self
            .inner
            .db
            .create_auth_session_capped(user, device, source, self.inner.max_per_user)
            .await?;
        self.revoked(&evicted);
        self.inner.cache.learn(sid, Known::Live(user));
        Ok(sid)
    }

    /// Revokes `user`'s session `sid`; false when it is not theirs or already revoked.
    pub async fn revoke_one(&self, user: UserId, sid: AuthSessionId) -> Result<bool, DbError> {
        let done = self.inner.db.revoke_auth_session(user, sid).await?;
        if done {
            self.revoked(&[sid]);
        }
        Ok(done)
    }

    /// Revokes every live session of `user` but `keep` (all of them when `None`), in
    /// the database for every node and here at once; the ids it revoked.
    pub async fn revoke_user(
        &self,
        user: UserId,
        keep: Option<AuthSessionId>,
    ) -> Result<Vec<AuthSessionId>, DbError> {
        let ids = self.inner.db.revoke_auth_sessions(user, keep).await?;
        self.revoked(&ids);
        Ok(ids)
    }

    /// Applies revocations already in the database to this process: the cache, and
    /// this node's sockets of those sessions (closed with 4001).
    pub fn revoked(&self, sids: &[AuthSessionId]) {
        if sids.is_empty() {
            return;
        }
        self.inner.cache.revoke(sids);
        let closed = self.inner.realtime.close_auth_sessions(sids);
        if closed > 0 {
            tracing::info!(
                sessions = sids.len(),
                sockets = closed,
                "closed revoked sessions' sockets"
            );
        }
    }

    /// Polls the revocation log for as long as the process runs.
    async fn follow_revocations(self) {
        let db = &self.inner.db;
        let overlap = chrono::TimeDelta::from_std(OVERLAP).unwrap_or_default();
        let mut since: Option<NaiveDateTime> = None;
        let mut failing = false;
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let polled = async {
                let now = db.database_now().await?;
                let from = since.unwrap_or(now) - overlap;
                let rows = db.auth_sessions_revoked_since(from).await?;
                Ok::<_, DbError>((now, rows))
            }
            .await;
            match polled {
                Ok((now, rows)) => {
                    // Only a read that succeeded moves the mark: after an outage the
                    // next read covers all of it.
                    since = Some(now);
                    failing = false;
                    let sids: Vec<AuthSessionId> = rows.into_iter().map(|(s, _)| s).collect();
                    self.revoked(&sids);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read the session revocation log; retrying every second");
                    }
                    failing = true;
                }
            }
        }
    }

    /// Writes `last_seen_at` in batches and deletes rows that sign nothing in any more.
    async fn keep_rows(self) {
        let mut tick = tokio::time::interval(TOUCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.tick().await;
        let mut since_purge = PURGE_EVERY;
        loop {
            tick.tick().await;
            let mut ids: Vec<AuthSessionId> = {
                let mut seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::take(&mut *seen).into_iter().collect()
            };
            // A socket open for days is a device in use though it makes no requests.
            ids.extend(self.inner.realtime.open_auth_sessions());
            ids.sort_unstable();
            ids.dedup();
            if let Err(e) = self.inner.db.touch_auth_sessions(&ids).await {
                tracing::debug!(error = %e, "could not record when sessions were last seen");
            }
            since_purge += TOUCH_EVERY;
            if since_purge >= PURGE_EVERY {
                since_purge = Duration::ZERO;
                // A row last seen longer ago than a token lives was created longer
                // ago too: every token naming it has expired.
                let stale = self.inner.token_ttl + KEEP_REVOKED;
                if let Err(e) = self.inner.db.purge_auth_sessions(KEEP_REVOKED, stale).await {
                    tracing::debug!(error = %e, "could not purge old sessions");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: UserId = UserId(1);

    #[test]
    fn a_loaded_state_is_kept_and_revoked_wins_over_a_late_load() {
        let c = SessionCache::new(8);
        assert_eq!(c.get(AuthSessionId(1)), None);
        assert_eq!(
            c.learn(AuthSessionId(1), Known::Live(ANN)),
            Known::Live(ANN)
        );
        assert_eq!(c.get(AuthSessionId(1)), Some(Known::Live(ANN)));
        // A revocation arrives while a load that read the row before it is in flight.
        c.revoke(&[AuthSessionId(2)]);
        assert_eq!(c.learn(AuthSessionId(2), Known::Live(ANN)), Known::Revoked);
        assert_eq!(c.get(AuthSessionId(2)), Some(Known::Revoked));
        // A live session that is revoked stays revoked.
        c.revoke(&[AuthSessionId(1)]);
        assert_eq!(c.get(AuthSessionId(1)), Some(Known::Revoked));
        assert_eq!(c.learn(AuthSessionId(1), Known::Live(ANN)), Known::Revoked);
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_least_recently_used() {
        let c = SessionCache::new(3);
        for i in 1..=3 {
            c.learn(AuthSessionId(i), Known::Live(ANN));
        }
        // 1 is used again, so 2 is the one to go.
        assert!(c.get(AuthSessionId(1)).is_some());
        c.learn(AuthSessionId(4), Known::Live(ANN));
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.get(AuthSessionId(2)),
            None,
            "forgotten: loaded again on use"
        );
        assert!(c.get(AuthSessionId(1)).is_some());
        c.revoke(&(10..20).map(AuthSessionId).collect::<Vec<_>>());
        assert_eq!(c.len(), 3);
    }
}
