//! Where Redis is: one server named by a URL, or the primary that Sentinel names —
//! followed through a failover. Every use of Redis in a process (the cluster seam,
//! `/ws` tickets, known login sources, the readiness ping) takes its connections
//! here, so one process resolves the primary once and all of it moves together.
//!
//! With Sentinel, the primary is asked for with the `redis` crate's
//! [`SentinelClient`] (it asks the Sentinels in turn, then checks with `ROLE` that
//! the node named really is a primary), and a connection pool is made for that
//! address. The pool is *replaced* when another primary is named, rather than using
//! `deadpool-redis`'s Sentinel pool: its connections are not tied to an address, so
//! a pooled connection to a demoted primary passes the pool's `PING` recycle check
//! and then answers `READONLY`, and nothing could say which primary is in use
//! (`/api/ready` does). A new primary is looked for when
//! - a Sentinel announces `+switch-master` for our master name (one Sentinel at a
//!   time is listened to; the next is tried when it goes away),
//! - a command fails the way a lost or demoted primary fails (connection refused or
//!   dropped, timeout, `READONLY`, `MASTERDOWN`, `LOADING`): [`Conn`] reports it,
//! - and every [`POLL`] anyway, in case a switch happened while no Sentinel was
//!   listened to and nothing failed.
//!
//! Each switch bumps an *epoch* that users watch ([`RedisPrimary::epochs`]): the
//! cluster seam resubscribes and re-announces its node on it even when the new
//! primary answered at once, since Sentinel promotes a replica that may lack the
//! last writes (replication is asynchronous).

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_redis::redis::{
    self, aio::ConnectionLike, sentinel::SentinelClient, ConnectionInfo, ErrorKind, RedisError,
    RedisResult,
};
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};

use super::lock;

/// How often Sentinel is asked even when nothing suggested a switch.
const POLL: Duration = Duration::from_secs(5);
/// Longest wait for one resolution (Sentinels asked in turn, then `ROLE`).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait to connect to a Sentinel for its `+switch-master` events.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(1);
/// After a reported failure, the next one waits this long before asking again: a
/// burst of failing commands costs Sentinel a few questions a second, not one each.
const SUSPECT_PAUSE: Duration = Duration::from_millis(200);

/// How to reach Redis.
#[derive(Debug, Clone)]
pub enum RedisSource {
    /// One server (`redis.url`).
    Url(String),
    /// The primary Sentinel names `master_name` (`redis.sentinels`,
    /// `redis.master_name`); `node` carries the credentials and database used on it.
    Sentinel {
        sentinels: Vec<String>,
        master_name: String,
        username: Option<String>,
        password: Option<String>,
        db: i64,
    },
}

/// The primary in use: its address, a pool of connections to it, and a client for
/// pub/sub connections to it.
struct Link {
    addr: String,
    pool: deadpool_redis::Pool,
    client: redis::Client,
}

/// See the module docs.
pub struct RedisPrimary {
    link: Mutex<Option<Arc<Link>>>,
    /// Only with Sentinel: the resolver and what wakes the watcher.
    sentinel: Option<Resolver>,
    epoch: watch::Sender<u64>,
}

struct Resolver {
    client: tokio::sync::Mutex<SentinelClient>,
    suspect: Arc<Notify>,
}

impl std::fmt::Debug for RedisPrimary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPrimary")
            .field("primary", &self.primary())
            .field("sentinel", &self.sentinel.is_some())
            .finish()
    }
}

fn link_to(info: ConnectionInfo) -> RedisResult<Link> {
    let addr = info.addr.to_string();
    let client = redis::Client::open(info.clone())?;
    let pool = deadpool_redis::Config::from_connection_info(info)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .map_err(|e| {
            RedisError::from((ErrorKind::InvalidClientConfig, "pool", e.to_string()))
        })?;
    Ok(Link { addr, pool, client })
}

/// Whether `e` is how a lost or demoted primary answers (worth asking Sentinel).
fn points_elsewhere(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::ReadOnly | ErrorKind::MasterDown | ErrorKind::BusyLoadingError
        )
}

impl RedisPrimary {
    /// Parses `source`; with Sentinel, starts the watcher (on the current Tokio
    /// runtime) and asks for the primary on first use.
    pub fn new(source: &RedisSource) -> RedisResult<Arc<RedisPrimary>> {
        let (epoch, _) = watch::channel(0);
        match source {
            RedisSource::Url(url) => {
                let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?;
                Ok(Arc::new(RedisPrimary {
                    link: Mutex::new(Some(Arc::new(link_to(info)?))),
                    sentinel: None,
                    epoch,
                }))
            }
            RedisSource::Sentinel {
                sentinels,
                master_name,
                username,
                password,
                db,
            } => {
                let nodes: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
                let node = redis::sentinel::SentinelNodeConnectionInfo {
                    tls_mode: None,
                    redis_connection_info: Some(redis::RedisConnectionInfo {
                        db: *db,
                        username: username.clone(),
                        password: password.clone(),
                        ..Default::default()
                    }),
                };
                let client = SentinelClient::build(
                    nodes.clone(),
                    master_name.clone(),
                    Some(node),
                    redis::sentinel::SentinelServerType::Master,
                )?;
                let suspect = Arc::new(Notify::new());
                let primary = Arc::new(RedisPrimary {
                    link: Mutex::new(None),
                    sentinel: Some(Resolver {
                        client: tokio::sync::Mutex::new(client),
                        suspect: suspect.clone(),
                    }),
                    epoch,
                });
                tokio::spawn(watch_sentinels(
                    Arc::downgrade(&primary),
                    suspect,
                    nodes,
                    master_name.clone(),
                ));
                Ok(primary)
            }
        }
    }

    /// The primary in use (`host:port`), once one is known.
    pub fn primary(&self) -> Option<String> {
        lock(&self.link).as_ref().map(|l| l.addr.clone())
    }

    /// Whether the primary comes from Sentinel.
    pub fn is_sentinel(&self) -> bool {
        self.sentinel.is_some()
    }

    /// The switch count: changes whenever another primary is taken into use (never
    /// with a plain URL).
    pub fn epochs(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    fn suspect(&self, e: &RedisError) {
        if let Some(r) = &self.sentinel {
            if points_elsewhere(e) {
                r.suspect.notify_one();
            }
        }
    }

    async fn current(&self) -> RedisResult<Arc<Link>> {
        if let Some(l) = lock(&self.link).clone() {
            return Ok(l);
        }
        self.resolve().await?;
        lock(&self.link).clone().ok_or_else(|| {
            RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "no primary named by Sentinel yet",
            ))
        })
    }

    /// Asks Sentinel for the primary and switches to it if it is another one.
    async fn resolve(&self) -> RedisResult<()> {
        let Some(r) = &self.sentinel else {
            return Ok(());
        };
        // Held through the switch: two resolutions never race to install pools.
        let mut client = r.client.lock().await;
        let named = tokio::time::timeout(RESOLVE_TIMEOUT, client.async_get_client())
            .await
            .map_err(|_| {
                RedisError::from((ErrorKind::IoError, "sentinel", "no answer in time".into()))
            })??;
        let info = named.get_connection_info().clone();
        let addr = info.addr.to_string();
        if lock(&self.link).as_ref().is_some_and(|l| l.addr == addr) {
            return Ok(());
        }
        let link = Arc::new(link_to(info)?);
        let old = lock(&self.link).replace(link);
        match &old {
            Some(old) => {
                tracing::warn!(from = %old.addr, to = %addr, "redis primary switched (Sentinel)");
                // Nothing more is taken from it; connections in use end with their users.
                old.pool.close();
            }
            None => tracing::info!(primary = %addr, "redis primary found through Sentinel"),
        }
        drop(client);
        if old.is_some() {
            self.epoch.send_modify(|e| *e += 1);
        }
        Ok(())
    }

    /// A pooled connection to the primary (see [`Conn`]).
    pub async fn get(&self) -> RedisResult<Conn<'_>> {
        let got = async {
            let link = self.current().await?;
            link.pool.get().await.map_err(|e| {
                RedisError::from((ErrorKind::IoError, "redis pool", e.to_string()))
            })
        }
        .await;
        match got {
            Ok(inner) => Ok(Conn { inner, of: self }),
            Err(e) => {
                self.suspect(&e);
                Err(e)
            }
        }
    }

    /// A new pub/sub connection to the primary, and the epoch it belongs to.
    pub async fn pubsub(&self) -> RedisResult<(redis::aio::PubSub, u64)> {
        let epoch = *self.epoch.borrow();
        let made = async { self.current().await?.client.get_async_pubsub().await }.await;
        match made {
            Ok(ps) => Ok((ps, epoch)),
            Err(e) => {
                self.suspect(&e);
                Err(e)
            }
        }
    }
}

/// A pooled connection that tells its [`RedisPrimary`] when a command failed the
/// way a lost or demoted primary fails, so Sentinel is asked at once.
pub struct Conn<'a> {
    inner: deadpool_redis::Connection,
    of: &'a RedisPrimary,
}

impl Conn<'_> {
    fn check<T>(&self, r: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &r {
            self.of.suspect(e);
        }
        r
    }
}

impl ConnectionLike for Conn<'_> {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let r = self.inner.req_packed_command(cmd).await;
            self.check(r)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let r = self.inner.req_packed_commands(cmd, offset, count).await;
            self.check(r)
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

enum Woke {
    Event(Option<redis::Msg>),
    Suspect,
    Timer,
}

type Events = Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>;

/// Listens to one Sentinel's `+switch-master` at a time, wakes on reported
/// failures and every [`POLL`], and resolves each time. Ends with its primary.
async fn watch_sentinels(
    of: Weak<RedisPrimary>,
    suspect: Arc<Notify>,
    sentinels: Vec<String>,
    master_name: String,
) {
    let mut events: Option<Events> = None;
    let mut next = 0usize;
    loop {
        if events.is_none() && !sentinels.is_empty() {
            let url = &sentinels[next % sentinels.len()];
            next = next.wrapping_add(1);
            events = listen(url).await;
        }
        let wait = if events.is_some() {
            POLL
        } else {
            Duration::from_secs(1)
        };
        let woke = {
            let event = async {
                match events.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = event => Woke::Event(msg),
                () = suspect.notified() => Woke::Suspect,
                () = tokio::time::sleep(wait) => Woke::Timer,
            }
        };
        match &woke {
            // "<name> <old ip> <old port> <new ip> <new port>"
            Woke::Event(Some(m)) => {
                let payload: String = m.get_payload().unwrap_or_default();
                if payload.split(' ').next() != Some(master_name.as_str()) {
                    continue;
                }
                tracing::info!(%payload, "sentinel: +switch-master");
            }
            Woke::Event(None) => events = None,
            Woke::Suspect | Woke::Timer => {}
        }
        let Some(primary) = of.upgrade() else {
            return;
        };
        if let Err(e) = primary.resolve().await {
            tracing::debug!(error = %e, "sentinel: no primary yet");
        }
        drop(primary);
        if matches!(woke, Woke::Suspect) {
            tokio::time::sleep(SUSPECT_PAUSE).await;
        }
    }
}

/// A subscription to one Sentinel's `+switch-master`, or nothing if it does not answer.
async fn listen(url: &str) -> Option<Events> {
    let subscribed = async {
        let mut ps = redis::Client::open(url)?.get_async_pubsub().await?;
        ps.subscribe("+switch-master").await?;
        RedisResult::Ok(ps)
    };
    match tokio::time::timeout(LISTEN_TIMEOUT, subscribed).await {
        Ok(Ok(ps)) => Some(Box::pin(ps.into_on_message()) as Events),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_and_demoted_primaries_are_told_from_other_errors() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(points_elsewhere(&refused));
        let readonly = RedisError::from((ErrorKind::ReadOnly, "READONLY"));
        assert!(points_elsewhere(&readonly));
        let wrong_type = RedisError::from((ErrorKind::TypeError, "WRONGTYPE"));
        assert!(!points_elsewhere(&wrong_type));
    }

    #[tokio::test]
    async fn a_url_names_its_server_and_never_switches() {
        let p = RedisPrimary::new(&RedisSource::Url("redis://127.0.0.1:6390/2".into()))
            .expect("a valid url");
        assert_eq!(p.primary().as_deref(), Some("127.0.0.1:6390"));
        assert!(!p.is_sentinel());
        assert_eq!(*p.epochs().borrow(), 0);
        assert!(RedisPrimary::new(&RedisSource::Url("not a url".into())).is_err());
    }

    #[tokio::test]
    async fn with_sentinels_no_primary_is_known_before_one_is_asked_for() {
        let p = RedisPrimary::new(&RedisSource::Sentinel {
            sentinels: vec!["127.0.0.1:1".into()],
            master_name: "parley".into(),
            username: None,
            password: None,
            db: 0,
        })
        .expect("valid sentinels");
        assert!(p.is_sentinel());
        assert_eq!(p.primary(), None);
        // Nothing listens on port 1: asking fails, it does not hang.
        assert!(p.get().await.is_err());
    }
}
