//! Rate limits for the expensive, guessable endpoints: logins per client IP and per
//! account, registrations per IP. GCRA buckets from `governor`, kept in memory per
//! process (a node behind nginx sees the real IP through `X-Forwarded-For`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Settings;

#[derive(Clone)]
pub struct LoginThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    login_by_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_by_account: DefaultKeyedRateLimiter<String>,
    register_by_ip: DefaultKeyedRateLimiter<IpAddr>,
    trusted_proxies: Vec<IpAddr>,
    checks: AtomicU64,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl LoginThrottle {
    pub fn new(settings: &Settings) -> LoginThrottle {
        let l = &settings.limits;
        LoginThrottle {
            inner: Arc::new(Inner {
                login_by_ip: RateLimiter::keyed(per_minute(l.login_per_ip_per_min)),
                login_by_account: RateLimiter::keyed(per_minute(l.login_per_account_per_min)),
                register_by_ip: RateLimiter::keyed(per_minute(l.register_per_ip_per_min)),
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

    /// `Err(wait)` when this IP or this account has tried too often.
    pub fn check_login(&self, ip: IpAddr, account: &str) -> Result<(), Duration> {
        self.housekeeping();
        check(&self.inner.login_by_ip, &ip)?;
        check(&self.inner.login_by_account, &account.to_owned())
    }

    pub fn check_register(&self, ip: IpAddr) -> Result<(), Duration> {
        self.housekeeping();
        check(&self.inner.register_by_ip, &ip)
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
            self.inner.login_by_account.retain_recent();
            self.inner.register_by_ip.retain_recent();
        }
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
