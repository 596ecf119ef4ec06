//! The Web Push engine: `PushSink` for the realtime core, and everything after.
//!
//! `offer` (called on a room's arbiter) only appends to a bounded queue, dropping
//! the oldest offer when it is full, and wakes the dispatcher. The dispatcher (a
//! task on the main runtime, never an arbiter's message path) takes offers in
//! batches and, per batch, asks which users have a visible session anywhere, which
//! muted the chat, and the database (one query) for their subscriptions; then it
//! hands one job per subscription to that subscription's sender.
//!
//! Each subscription has at most one send in flight; a newer job for it waits in a
//! one-place slot (replacing an older waiting one: the push service would keep only
//! the newest per `Topic` anyway). So a push service that hangs holds one of the
//! `push.workers` permits for at most `push.timeout_ms` per attempt, and never
//! delays anyone else's pushes beyond that permit.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley_actors::push::{PushEvent, PushOffer, PushSink};
use parley_actors::{ChatId, Realtime, UserId};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::{Notify, Semaphore};

use super::endpoint::{check_url, GuardedResolver};
use super::payload;
use super::vapid::VapidKey;
use crate::config::PushSettings;
use crate::db::push::{PushChat, PushTarget};
use crate::db::Db;

/// Offers taken from the queue at once (one subscription query for all of them).
const BATCH: usize = 256;
/// `TTL` of a call push: a ring is pointless after a minute.
const CALL_TTL_SECS: u64 = 60;
/// The first retry waits this long, doubling each time.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// No retry waits longer, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// How long a notification's names (chat title, sender) are reused.
const NAMES_TTL: Duration = Duration::from_secs(60);
/// Names remembered at most (then the stale ones, or all, are forgotten).
const NAMES_MAX: usize = 10_000;

/// The counters `/metrics` shows.
#[derive(Debug, Default)]
pub struct PushStats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// One push to one subscription.
struct Job {
    target: PushTarget,
    payload: Arc<Vec<u8>>,
    ttl: u64,
    topic: String,
}

pub struct PushEngine {
    queue: Mutex<VecDeque<PushOffer>>,
    capacity: usize,
    wake: Notify,
    stats: PushStats,
    /// Subscriptions with a send in flight, and the job waiting behind it.
    in_flight: Mutex<HashMap<u64, Option<Job>>>,
    /// Requests in flight per push service (host): a dead or slow service holds at
    /// most half of `push.workers`, so pushes to the others keep going.
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// (chat, sender) → names and when they were read ([`PushEngine::names`]).
    names: Mutex<HashMap<(ChatId, UserId), (Instant, PushChat)>>,
    permits: Arc<Semaphore>,
    client: reqwest::Client,
    key: Arc<VapidKey>,
    subject: String,
    settings: PushSettings,
    db: Db,
    realtime: Realtime,
}

impl PushSink for PushEngine {
    fn offer(&self, offer: PushOffer) {
        if offer.users.is_empty() {
            return;
        }
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= self.capacity {
                q.pop_front();
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(offer);
        }
        self.wake.notify_one();
    }
}

impl PushEngine {
    /// Builds the engine and starts its dispatcher (on the current runtime).
    pub fn start(
        settings: PushSettings,
        key: Arc<VapidKey>,
        subject: String,
        db: Db,
        realtime: Realtime,
    ) -> anyhow::Result<Arc<PushEngine>> {
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout)
            .timeout(timeout)
            .https_only(!settings.allow_insecure_endpoints)
            .dns_resolver(Arc::new(GuardedResolver {
                allow_insecure: settings.allow_insecure_endpoints,
            }))
            .pool_max_idle_per_host(settings.workers.max(1))
            .user_agent(concat!("Parley/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let engine = Arc::new(PushEngine {
            queue: Mutex::new(VecDeque::new()),
            capacity: settings.queue.max(1),
            wake: Notify::new(),
            stats: PushStats::default(),
            in_flight: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(settings.workers.max(1))),
            client,
            key,
            subject,
            settings,
            db,
            realtime,
        });
        actix_web::rt::spawn(engine.clone().dispatch());
        Ok(engine)
    }

    pub fn stats(&self) -> &PushStats {
        &self.stats
    }

    /// Offers waiting for the dispatcher.
    pub fn queued(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    async fn dispatch(self: Arc<Self>) {
        loop {
            let batch: Vec<PushOffer> = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let n = q.len().min(BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            if let Err(e) = self.dispatch_batch(batch).await {
                tracing::warn!(error = %e, "push: a batch of offers was not sent");
            }
        }
    }

    async fn dispatch_batch(
        self: &Arc<Self>,
        batch: Vec<PushOffer>,
    ) -> Result<(), crate::db::DbError> {
        let mut users: Vec<UserId> = batch.iter().flat_map(|o| o.users.iter().copied()).collect();
        users.sort_unstable();
        users.dedup();
        let visible = self.visible_users(&users).await;
        let hidden: Vec<UserId> = users
            .iter()
            .zip(visible)
            .filter(|(_, v)| !v)
            .map(|(u, _)| *u)
            .collect();
        if hidden.is_empty() {
            return Ok(());
        }
        let targets = self.db.push_targets(&hidden).await?;
        if targets.is_empty() {
            return Ok(());
        }
        let mut by_user: HashMap<UserId, Vec<&PushTarget>> = HashMap::new();
        for t in &targets {
            by_user.entry(t.user).or_default().push(t);
        }
        // One query for the whole batch (not one per offer: with every recipient
        // hidden that was a query per message, competing with the message path).
        let subscribed: Vec<UserId> = by_user.keys().copied().collect();
        let muted = self.db.muted_chats_of(&subscribed).await?;
        let mut chats: HashMap<(ChatId, UserId), PushChat> = HashMap::new();
        for offer in batch {
            let (chat, from) = match &offer.event {
                PushEvent::Message { chat, sender, .. } => (*chat, *sender),
                PushEvent::Call { chat, caller, .. } => (*chat, *caller),
            };
            let wanted: Vec<UserId> = offer
                .users
                .iter()
                .copied()
                .filter(|u| by_user.contains_key(u) && *u != from)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let names = match chats.get(&(chat, from)) {
                Some(n) => n.clone(),
                None => {
                    let n = self.names(chat, from).await?;
                    chats.insert((chat, from), n.clone());
                    n
                }
            };
            let body = payload::build(&offer.event, &names, self.settings.include_content);
            let Ok(bytes) = serde_json::to_vec(&body) else {
                continue;
            };
            let payload = Arc::new(bytes);
            let ttl = match offer.event {
                PushEvent::Message { .. } => self.settings.ttl_secs,
                PushEvent::Call { .. } => CALL_TTL_SECS,
            };
            for user in wanted.iter().filter(|u| !muted.contains(&(chat, **u))) {
                for target in by_user.get(user).into_iter().flatten() {
                    self.enqueue(Job {
                        target: (*target).clone(),
                        payload: payload.clone(),
                        ttl,
                        // RFC 8030 §5.4: at most 32 URL-safe base64 characters.
                        topic: format!("chat-{}", chat.0),
                    });
                }
            }
        }
        Ok(())
    }

    /// Which of `users` have a visible session on some node (the offering node
    /// knew only its own sessions).
    async fn visible_users(&self, users: &[UserId]) -> Vec<bool> {
        self.realtime.visible_users(users).await
    }

    /// A notification's names (chat kind and title, sender), remembered for
    /// [`NAMES_TTL`]: a busy chat costs one query a minute, not one per batch. A
    /// rename shows in pushes within that minute.
    async fn names(&self, chat: ChatId, from: UserId) -> Result<PushChat, crate::db::DbError> {
        let now = Instant::now();
        {
            let cache = self.names.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, n)) = cache.get(&(chat, from)) {
                if now.duration_since(*at) < NAMES_TTL {
                    return Ok(n.clone());
                }
            }
        }
        let n = self.db.push_chat(chat, from).await?;
        let mut cache = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= NAMES_MAX {
            cache.retain(|_, (at, _)| now.duration_since(*at) < NAMES_TTL);
            if cache.len() >= NAMES_MAX {
                cache.clear();
            }
        }
        cache.insert((chat, from), (now, n.clone()));
        Ok(n)
    }

    /// Starts `job`'s send, or leaves it waiting behind the one in flight.
    fn enqueue(self: &Arc<Self>, job: Job) {
        let id = job.target.id;
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(&id) {
            Some(waiting) => {
                if waiting.replace(job).is_some() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                map.insert(id, None);
                drop(map);
                let engine = self.clone();
                actix_web::rt::spawn(async move { engine.run_subscription(id, job).await });
            }
        }
    }

    /// Sends `job`, then whatever waited behind it, then frees the subscription.
    async fn run_subscription(self: Arc<Self>, id: u64, mut job: Job) {
        loop {
            let gone = self.send(&job).await;
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let next = if gone {
                if let Some(Some(_)) = map.get(&id) {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                None
            } else {
                map.get_mut(&id).and_then(Option::take)
            };
            match next {
                Some(n) => job = n,
                None => {
                    map.remove(&id);
                    return;
                }
            }
        }
    }

    /// The semaphore of `endpoint`'s push service. Entries nobody holds are pruned
    /// when there are many (hosts come from users' subscriptions).
    fn host_slot(&self, endpoint: &str) -> Arc<Semaphore> {
        let host = reqwest::Url::parse(endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if hosts.len() >= 1024 && !hosts.contains_key(&host) {
            hosts.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let per_host = (self.settings.workers / 2).max(2);
        hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(per_host)))
            .clone()
    }

    /// One push with its retries. True when the subscription is gone (deleted).
    async fn send(&self, job: &Job) -> bool {
        let id = job.target.id;
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=self.settings.max_attempts.max(1) {
            let outcome = {
                // Only the request holds a permit, never a backoff wait.
                let host = self.host_slot(&job.target.endpoint);
                let Ok(_host) = host.acquire().await else {
                    return false;
                };
                let Ok(_permit) = self.permits.acquire().await else {
                    return false;
                };
                self.attempt(job).await
            };
            match outcome {
                Attempt::Delivered => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    self.record(&[id], &[]).await;
                    return false;
                }
                Attempt::Gone(status) => {
                    tracing::info!(
                        subscription = id,
                        status,
                        "push: subscription gone; deleted"
                    );
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = self.db.delete_push_subscription_by_id(id).await {
                        tracing::warn!(error = %e, subscription = id, "push: could not delete a gone subscription");
                    }
                    return true;
                }
                Attempt::Refused(why) => {
                    tracing::warn!(subscription = id, reason = %why, "push: refused; dropped");
                    break;
                }
                Attempt::Retry { after, why } => {
                    if attempt == self.settings.max_attempts {
                        tracing::info!(subscription = id, attempt, reason = %why, "push: giving up");
                        break;
                    }
                    let wait = after.unwrap_or(backoff).min(MAX_BACKOFF);
                    tracing::debug!(subscription = id, attempt, reason = %why, ?wait, "push: retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.record(&[], &[id]).await;
        false
    }

    async fn record(&self, ok: &[u64], failed: &[u64]) {
        if let Err(e) = self.db.record_push_outcomes(ok, failed).await {
            tracing::debug!(error = %e, "push: could not record an outcome");
        }
    }

    async fn attempt(&self, job: &Job) -> Attempt {
        // Again at send time: an IP-literal host never reaches the guarded resolver.
        let url = match check_url(&job.target.endpoint, self.settings.allow_insecure_endpoints) {
            Ok(u) => u,
            Err(why) => return Attempt::Refused(why.to_owned()),
        };
        let Ok(public) = p256::PublicKey::from_sec1_bytes(&job.target.p256dh) else {
            return Attempt::Refused("stored p256dh is not a P-256 point".into());
        };
        let Ok(auth) = <[u8; 16]>::try_from(job.target.auth.as_slice()) else {
            return Attempt::Refused("stored auth is not 16 bytes".into());
        };
        let auth = web_push_native::Auth::from(auth);
        let body = match web_push_native::encrypt(job.payload.to_vec(), &public, &auth) {
            Ok(b) => b,
            Err(e) => return Attempt::Refused(format!("encrypting: {e}")),
        };
        let origin = url.origin().ascii_serialization();
        let now = chrono::Utc::now().timestamp();
        let authorization = match self.key.authorization(&origin, &self.subject, now) {
            Ok(a) => a,
            Err(e) => return Attempt::Refused(e),
        };
        let sent = self
            .client
            .post(url)
            .header("TTL", job.ttl.to_string())
            .header("Urgency", "high")
            .header("Topic", &job.topic)
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(AUTHORIZATION, authorization)
            .body(body)
            .send()
            .await;
        let res = match sent {
            Ok(r) => r,
            Err(e) => {
                // Without the URL: it is the browser's capability.
                return Attempt::Retry {
                    after: None,
                    why: format!("{}", e.without_url()),
                };
            }
        };
        let status = res.status();
        if status.is_success() {
            Attempt::Delivered
        } else if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            Attempt::Gone(status.as_u16())
        } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retry {
                after: retry_after(res.headers()),
                why: format!("status {}", status.as_u16()),
            }
        } else {
            Attempt::Refused(format!("status {}", status.as_u16()))
        }
    }
}

enum Attempt {
    Delivered,
    Gone(u16),
    Retry {
        after: Option<Duration>,
        why: String,
    },
    Refused(String),
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.timestamp() - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(wait.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        h.insert(RETRY_AFTER, later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!((28..=30).contains(&d.as_secs()), "{d:?}");
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
