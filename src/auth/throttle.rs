//! Rate limits for the expensive, guessable endpoints: logins per client IP,
//! registrations per IP, user and message searches per user (GCRA buckets from `governor`), and
//! the per-account login delay (`login_delay`). All in memory per process (a node
//! behind nginx sees the real IP through `X-Forwarded-For`). An IPv6 client is keyed
//! by its /64: one subscriber holds the whole prefix.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::known_sources::KnownSources;
use super::login_delay::{Attempt, LoginDelays};
use crate::config::Settings;
use crate::domain::Login;
use parley_actors::UserId;

/// Account exports per user per minute.
pub const EXPORTS_PER_MIN: u32 = 1;

/// Most entries in each map of the login delays: far more accounts than are ever
/// attacked at once, and about 10 MiB at worst.
const LOGIN_DELAY_ENTRIES: usize = 100_000;

#[derive(Clone)]
pub struct LoginThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    login_by_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_delays: Arc<LoginDelays>,
    known_sources: KnownSources,
    register_by_ip: DefaultKeyedRateLimiter<IpAddr>,
    search_by_user: DefaultKeyedRateLimiter<UserId>,
    /// Message searches: a bucket of their own, so finding a person and finding a
    /// message do not eat into each other.
    message_search_by_user: DefaultKeyedRateLimiter<UserId>,
    /// Account exports (`GET /api/users/me/export`): each reads everything a user
    /// ever sent, so one a minute.
    export_by_user: DefaultKeyedRateLimiter<UserId>,
    trusted_proxies: Vec<IpAddr>,
    checks: AtomicU64,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl LoginThrottle {
    pub fn new(settings: &Settings) -> LoginThrottle {
        LoginThrottle::with_known_sources(settings, KnownSources::default())
    }

    /// `new`, with the accounts' known sources kept in `known_sources` as well (Redis:
    /// shared by every node) as in this process.
    pub fn with_known_sources(settings: &Settings, known_sources: KnownSources) -> LoginThrottle {
        let l = &settings.limits;
        LoginThrottle {
            inner: Arc::new(Inner {
                login_by_ip: RateLimiter::keyed(per_minute(l.login_per_ip_per_min)),
                login_delays: Arc::new(LoginDelays::new(
                    l.login_free_failures,
                    Duration::from_secs(l.login_delay_max_secs),
                    LOGIN_DELAY_ENTRIES,
                )),
                known_sources,
                register_by_ip: RateLimiter::keyed(per_minute(l.register_per_ip_per_min)),
                search_by_user: RateLimiter::keyed(per_minute(l.search_per_min)),
                message_search_by_user: RateLimiter::keyed(per_minute(l.search_per_min)),
                export_by_user: RateLimiter::keyed(per_minute(EXPORTS_PER_MIN)),
                trusted_proxies: settings
                    .server
                    .trusted_proxies
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect(),
                checks: AtomicU64::new(0),
            }),
        }
    }

    /// `Err(wait)` when this IP has tried to log in too often.
    pub fn check_login_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.housekeeping();
        check(&self.inner.login_by_ip, &ip_key(ip))
    }

    /// The per-account delay (see `login_delay`): an attempt on `account` (`None`:
    /// no such account, keyed by the login name) from `ip`, or `Err(wait)`.
    pub async fn begin_login(
        &self,
        account: Option<UserId>,
        login: &Login,
        ip: IpAddr,
    ) -> Result<Attempt, Duration> {
        let known_elsewhere = match account {
            Some(id) => self.inner.known_sources.contains(id, ip).await,
            None => false,
        };
        self.inner.login_delays.begin_known(
            account.map(|id| id.0),
            login.as_str(),
            ip,
            Instant::now(),
            known_elsewhere,
        )
    }

    /// The same delay for a check of `user`'s current password by a signed-in caller
    /// (a password change): a stolen token must not make guessing it any faster.
    pub async fn begin_password_check(
        &self,
        user: UserId,
        ip: IpAddr,
    ) -> Result<Attempt, Duration> {
        let known_elsewhere = self.inner.known_sources.contains(user, ip).await;
        self.inner
            .login_delays
            .begin_known(Some(user.0), "", ip, Instant::now(), known_elsewhere)
    }

    /// Records that `user` signed in from `ip` (for every node, with Redis).
    pub async fn signed_in(&self, user: UserId, ip: IpAddr) {
        self.inner.known_sources.remember(user, ip).await;
    }

    pub fn check_register(&self, ip: IpAddr) -> Result<(), Duration> {
        self.housekeeping();
        check(&self.inner.register_by_ip, &ip_key(ip))
    }

    /// `Err(wait)` when this user has searched too often.
    pub fn check_search(&self, user: UserId) -> Result<(), Duration> {
        self.housekeeping();
        check(&self.inner.search_by_user, &user)
    }

    /// `Err(wait)` when this user has searched their messages too often.
    pub fn check_message_search(&self, user: UserId) -> Result<(), Duration> {
        self.housekeeping();
        check(&self.inner.message_search_by_user, &user)
    }

    /// `Err(wait)` when this user exported their account less than a minute ago.
    pub fn check_export(&self, user: UserId) -> Result<(), Duration> {
        self.housekeeping();
        check(&self.inner.export_by_user, &user)
    }

    /// The client's address: the peer, or what a trusted proxy says it forwarded.
    pub fn client_ip(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        if !self.inner.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .or_else(|| req.headers().get("x-real-ip").and_then(|v| v.to_str().ok()));
        forwarded
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(peer)
    }

    /// Forget buckets that are full again, now and then, so memory stays bounded.
    fn housekeeping(&self) {
        if self.inner.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.inner.login_by_ip.retain_recent();
            self.inner.register_by_ip.retain_recent();
            self.inner.search_by_user.retain_recent();
            self.inner.message_search_by_user.retain_recent();
            self.inner.export_by_user.retain_recent();
        }
    }
}

/// The key an address is limited under: an IPv4 address, or an IPv6 /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), Duration> {
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}
