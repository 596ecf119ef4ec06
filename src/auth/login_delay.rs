//! The per-account login limit: a delay that grows with failures, never a lock-out of
//! the owner.
//!
//! A fixed "N attempts a minute per account" bucket lets anyone lock a person out by
//! failing N times, and is no obstacle to an attacker with many addresses. Instead:
//!
//! - Failures are counted per account *and source* (the client's IPv4 /24 or IPv6
//!   /64), and per account across every source it was not last signed in from.
//! - The first `free` attempts of each count go through at once; after that each
//!   attempt must wait 1 s, then 2 s, 4 s … (doubling, capped at `max`) after the one
//!   before. A request that comes early is answered 429 with `Retry-After` at once:
//!   nothing waits on the server, so no hashing thread, database connection or timer
//!   is held for an attacker.
//! - Each count forgets one failure for every `max` without a failure.
//! - A *known source* — one of the last few networks the account signed in from
//!   successfully — is judged only by its own (account, source) count: an attacker's
//!   failures from elsewhere never slow the owner at home. An attacker with many
//!   sources is still slowed per account, since every unknown source shares one count.
//! - Attempts in flight count as failures until they are decided, so sending many at
//!   once gains nothing.
//!
//! Everything is in memory, per process, in maps of bounded size: when a map is full,
//! entries that have nothing left to say are dropped first, then the least recently
//! used half. A dropped (account, source) entry only forgets that source's history;
//! the account-wide count, which is what slows a many-source attacker, lives in a map
//! that grows only with failures on real accounts.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The first delay once the free attempts are used; each failure doubles it.
const BASE_DELAY: Duration = Duration::from_secs(1);

/// Networks remembered per account as where it signed in from (home, work, phone…).
const KNOWN_SOURCES_PER_ACCOUNT: usize = 4;

/// Where a login comes from, coarsely: a home or mobile connection moves within its
/// IPv4 /24 or IPv6 /64, and an attacker owning a /64 owns 2^64 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4([u8; 3]),
    V6([u16; 4]),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Source::V6([a, b, c, d]) => write!(f, "{a:x}:{b:x}:{c:x}:{d:x}::/64"),
        }
    }
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Source::V4([a, b, c])
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Source::V6([s[0], s[1], s[2], s[3]])
            }
        }
    }
}

/// Whose count an attempt is judged by: an account, or — so that a 429 does not tell
/// an account exists — the login name of one that does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Account {
    Id(u64),
    Unknown(u64),
}

/// One failure count with its pacing.
#[derive(Debug, Clone)]
struct Count {
    failures: u32,
    /// Attempts begun and not yet decided: counted as failures meanwhile.
    pending: u32,
    /// The next attempt may not begin before this.
    next_allowed: Instant,
    /// Decay is measured from here (the last failure, or the last decay step).
    decayed_to: Instant,
    last_used: Instant,
}

impl Count {
    fn new(now: Instant) -> Count {
        Count {
            failures: 0,
            pending: 0,
            next_allowed: now,
            decayed_to: now,
            last_used: now,
        }
    }

    fn decay(&mut self, now: Instant, period: Duration) {
        if self.failures == 0 {
            self.decayed_to = now;
            return;
        }
        let quiet = now.saturating_duration_since(self.decayed_to);
        let steps = (quiet.as_millis() / period.as_millis().max(1)) as u64;
        if steps > 0 {
            self.failures = self
                .failures
                .saturating_sub(u32::try_from(steps).unwrap_or(u32::MAX));
            self.decayed_to += period * u32::try_from(steps.min(1 << 20)).unwrap_or(1 << 20);
        }
    }

    /// How long until an attempt may begin (zero: now).
    fn wait(&self, now: Instant) -> Duration {
        self.next_allowed.saturating_duration_since(now)
    }

    fn idle(&self, now: Instant) -> bool {
        self.failures == 0 && self.pending == 0 && now >= self.next_allowed
    }
}

#[derive(Debug, Clone, Copy)]
struct Policy {
    free: u32,
    max: Duration,
}

impl Policy {
    /// The pause after `n` attempts that failed (or may still).
    fn delay(&self, n: u32) -> Duration {
        if n < self.free {
            return Duration::ZERO;
        }
        let doublings = (n - self.free).min(30);
        BASE_DELAY.saturating_mul(1 << doublings).min(self.max)
    }
}

#[derive(Default)]
struct Maps {
    /// Failures from sources the account was not signed in from, per account.
    accounts: HashMap<Account, Count>,
    /// Failures per (account, source).
    pairs: HashMap<(Account, Source), Count>,
    /// The networks each account last signed in from, newest first.
    known: HashMap<u64, (Vec<Source>, Instant)>,
}

pub struct LoginDelays {
    maps: Mutex<Maps>,
    policy: Policy,
    /// Most entries in each map.
    capacity: usize,
    /// Keys names of accounts that do not exist (their text is not kept).
    names: RandomState,
}

/// A login attempt that passed the delay check. Say how it ended with `failed` or
/// `succeeded`; dropped without either (the request was abandoned or errored), it
/// only stops counting as in flight.
pub struct Attempt {
    delays: Arc<LoginDelays>,
    account: Account,
    source: Source,
    /// Whether the account-wide count was charged (unknown source).
    charged_account: bool,
    done: bool,
}

impl LoginDelays {
    /// `free` attempts per count before delays begin; delays double up to `max`.
    pub fn new(free: u32, max: Duration, capacity: usize) -> LoginDelays {
        LoginDelays {
            maps: Mutex::new(Maps::default()),
            policy: Policy {
                free: free.max(1),
                max: max.max(BASE_DELAY),
            },
            capacity: capacity.max(16),
            names: RandomState::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // A panic elsewhere while holding the lock leaves consistent counts behind.
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks and reserves an attempt on `account` (`None`: no such account, keyed by
    /// `login` instead) from `ip`; `Err(wait)` when it comes too early.
    pub fn begin(
        self: &Arc<Self>,
        account: Option<u64>,
        login: &str,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Attempt, Duration> {
        self.begin_known(account, login, ip, now, false)
    }

    /// `begin`, where `known_elsewhere` says another node saw the account sign in
    /// from this source (see `known_sources`).
    pub fn begin_known(
        self: &Arc<Self>,
        account: Option<u64>,
        login: &str,
        ip: IpAddr,
        now: Instant,
        known_elsewhere: bool,
    ) -> Result<Attempt, Duration> {
        let source = Source::of(ip);
        let key = match account {
            Some(id) => Account::Id(id),
            None => Account::Unknown(self.names.hash_one(login)),
        };
        let policy = self.policy;
        let mut maps = self.lock();
        let known = match key {
            Account::Id(id) => {
                known_elsewhere
                    || maps
                        .known
                        .get(&id)
                        .is_some_and(|(sources, _)| sources.contains(&source))
            }
            Account::Unknown(_) => false,
        };
        // Unknown names have no owner and no known source: their account-wide count
        // says everything a per-source one would.
        let use_pair = matches!(key, Account::Id(_));
        let charge_account = !known;
        self.make_room(&mut maps, now);
        let mut wait = Duration::ZERO;
        if use_pair {
            let c = maps
                .pairs
                .entry((key, source))
                .or_insert_with(|| Count::new(now));
            c.decay(now, policy.max);
            wait = wait.max(c.wait(now));
        }
        if charge_account {
            let c = maps.accounts.entry(key).or_insert_with(|| Count::new(now));
            c.decay(now, policy.max);
            wait = wait.max(c.wait(now));
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        let reserve = |c: &mut Count| {
            c.pending += 1;
            c.last_used = now;
            c.next_allowed = now + policy.delay(c.failures + c.pending);
        };
        if use_pair {
            if let Some(c) = maps.pairs.get_mut(&(key, source)) {
                reserve(c);
            }
        }
        if charge_account {
            if let Some(c) = maps.accounts.get_mut(&key) {
                reserve(c);
            }
        }
        Ok(Attempt {
            delays: self.clone(),
            account: key,
            source,
            charged_account: charge_account,
            done: false,
        })
    }

    /// Keeps every map under its capacity: entries with nothing to remember go
    /// first, then the least recently used half.
    fn make_room(&self, maps: &mut Maps, now: Instant) {
        let cap = self.capacity;
        let period = self.policy.max;
        if maps.pairs.len() >= cap {
            maps.pairs.retain(|_, c| {
                c.decay(now, period);
                !c.idle(now)
            });
            evict_oldest_half(&mut maps.pairs, cap, |c| (c.pending > 0, c.last_used));
        }
        if maps.accounts.len() >= cap {
            maps.accounts.retain(|_, c| {
                c.decay(now, period);
                !c.idle(now)
            });
            evict_oldest_half(&mut maps.accounts, cap, |c| (c.pending > 0, c.last_used));
        }
        if maps.known.len() >= cap {
            evict_oldest_half(&mut maps.known, cap, |(_, at)| (false, *at));
        }
    }

    fn finish(&self, a: &Attempt, failed: bool, now: Instant) {
        let policy = self.policy;
        let mut maps = self.lock();
        let settle = |c: &mut Count| {
            c.pending = c.pending.saturating_sub(1);
            c.last_used = now;
            if failed {
                c.decay(now, policy.max);
                c.failures = c.failures.saturating_add(1);
                c.decayed_to = now;
                let next = now + policy.delay(c.failures + c.pending);
                c.next_allowed = c.next_allowed.max(next);
            }
        };
        if let Some(c) = maps.pairs.get_mut(&(a.account, a.source)) {
            settle(c);
        }
        if a.charged_account {
            if let Some(c) = maps.accounts.get_mut(&a.account) {
                settle(c);
                // Nothing to remember (a first sign-in from a new network): do not
                // keep an entry per account that ever logged in.
                if c.idle(now) {
                    maps.accounts.remove(&a.account);
                }
            }
        }
        if !failed {
            // The owner, from here: this source starts afresh and becomes known.
            // The account-wide count is left to decay — an attacker's failures
            // elsewhere are not forgiven because the owner signed in.
            maps.pairs.remove(&(a.account, a.source));
            if let Account::Id(id) = a.account {
                let (sources, at) = maps.known.entry(id).or_insert_with(|| (Vec::new(), now));
                sources.retain(|s| *s != a.source);
                sources.insert(0, a.source);
                sources.truncate(KNOWN_SOURCES_PER_ACCOUNT);
                *at = now;
            }
        }
    }

    /// Entries in the three maps (for tests and the bound check).
    pub fn len(&self) -> usize {
        let maps = self.lock();
        maps.accounts.len() + maps.pairs.len() + maps.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// When `map` is still at or over `cap`, drops the half that `age` ranks oldest
/// (entries in flight, ranked `true`, are kept when possible).
fn evict_oldest_half<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    cap: usize,
    age: impl Fn(&V) -> (bool, Instant),
) {
    if map.len() < cap {
        return;
    }
    let mut ranked: Vec<(bool, Instant, K)> = map
        .iter()
        .map(|(k, v)| {
            let (busy, at) = age(v);
            (busy, at, k.clone())
        })
        .collect();
    ranked.sort_by_key(|(busy, at, _)| (*busy, *at));
    for (_, _, k) in ranked.into_iter().take(map.len() / 2) {
        map.remove(&k);
    }
}

impl Attempt {
    pub fn failed(mut self) {
        self.done = true;
        self.delays.finish(&self, true, Instant::now());
    }

    pub fn succeeded(mut self) {
        self.done = true;
        self.delays.finish(&self, false, Instant::now());
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Abandoned: no longer in flight, but the pacing it reserved stands.
        let mut maps = self.delays.lock();
        if let Some(c) = maps.pairs.get_mut(&(self.account, self.source)) {
            c.pending = c.pending.saturating_sub(1);
        }
        if self.charged_account {
            if let Some(c) = maps.accounts.get_mut(&self.account) {
                c.pending = c.pending.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn delays(free: u32, max_secs: u64) -> Arc<LoginDelays> {
        Arc::new(LoginDelays::new(free, Duration::from_secs(max_secs), 1000))
    }

    #[test]
    fn sources_are_networks() {
        assert_eq!(Source::of(ip("10.1.2.3")), Source::of(ip("10.1.2.200")));
        assert_ne!(Source::of(ip("10.1.2.3")), Source::of(ip("10.1.3.3")));
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_eq!(
            Source::of(ip("::ffff:10.1.2.3")),
            Source::of(ip("10.1.2.9"))
        );
    }

    #[test]
    fn failures_earn_doubling_delays_after_the_free_ones() {
        let d = delays(3, 60);
        let now = Instant::now;
        for _ in 0..2 {
            d.begin(Some(1), "", ip("10.0.0.1"), now())
                .unwrap()
                .failed();
        }
        // The third is free but spaces the next one by the base delay.
        let third = d.begin(Some(1), "", ip("10.0.0.1"), now()).unwrap();
        third.failed();
        let wait = d
            .begin(Some(1), "", ip("10.0.0.1"), Instant::now())
            .err()
            .unwrap();
        assert!(
            wait > Duration::from_millis(900) && wait <= BASE_DELAY,
            "{wait:?}"
        );
        let later = Instant::now() + Duration::from_millis(1001);
        d.begin(Some(1), "", ip("10.0.0.1"), later)
            .unwrap()
            .failed();
        let wait = d
            .begin(Some(1), "", ip("10.0.0.1"), Instant::now())
            .err()
            .unwrap();
        assert!(wait > Duration::from_millis(1500), "doubled: {wait:?}");
    }

    #[test]
    fn attempts_in_flight_count_as_failures() {
        let d = delays(2, 60);
        let t = Instant::now();
        let a = d.begin(Some(1), "", ip("10.0.0.1"), t).unwrap();
        let b = d.begin(Some(1), "", ip("10.0.0.1"), t).unwrap();
        assert!(d.begin(Some(1), "", ip("10.0.0.1"), t).is_err());
        drop((a, b));
    }

    #[test]
    fn the_owner_from_a_known_source_is_not_slowed_by_others() {
        let d = delays(2, 300);
        let t = Instant::now();
        d.begin(Some(1), "", ip("192.0.2.10"), t)
            .unwrap()
            .succeeded();
        // An attacker from many networks uses up the account-wide allowance.
        let mut refused = 0;
        for i in 0..50u8 {
            match d.begin(Some(1), "", ip(&format!("198.51.{i}.1")), t) {
                Ok(a) => a.failed(),
                Err(_) => refused += 1,
            }
        }
        assert!(refused >= 47, "only {refused} refused");
        // The owner at home is not.
        d.begin(Some(1), "", ip("192.0.2.11"), t)
            .unwrap()
            .succeeded();
        // A new network is slowed like the attacker's, until it succeeds once.
        assert!(d.begin(Some(1), "", ip("203.0.113.5"), t).is_err());
    }

    #[test]
    fn a_plain_sign_in_leaves_only_its_known_source() {
        let d = delays(5, 300);
        for id in 0..100 {
            d.begin(Some(id), "", ip("192.0.2.1"), Instant::now())
                .unwrap()
                .succeeded();
        }
        assert_eq!(
            d.len(),
            100,
            "one known-source entry per account, nothing else"
        );
    }

    #[test]
    fn counts_decay_one_failure_per_max_delay() {
        let d = delays(1, 10);
        let t = Instant::now();
        for n in 0..4u64 {
            let at = t + Duration::from_secs(100 * n);
            d.begin(Some(1), "", ip("10.0.0.1"), at).unwrap().failed();
        }
        // Failures 100 s apart decay back to nothing each time: never slowed long.
        let at = t + Duration::from_secs(1000);
        assert!(d.begin(Some(1), "", ip("10.0.0.1"), at).is_ok());
    }

    #[test]
    fn unknown_names_are_slowed_like_accounts() {
        let d = delays(2, 60);
        let now = Instant::now;
        for _ in 0..2 {
            d.begin(None, "ghost", ip("10.0.0.1"), now())
                .unwrap()
                .failed();
        }
        assert!(d.begin(None, "ghost", ip("10.9.0.1"), now()).is_err());
        assert!(d.begin(None, "other", ip("10.9.0.1"), now()).is_ok());
    }

    #[test]
    fn maps_stay_bounded_under_rotating_sources() {
        let d = Arc::new(LoginDelays::new(1_000_000, Duration::from_secs(60), 256));
        for i in 0..20_000u32 {
            let [_, _, b, c] = i.to_be_bytes();
            let now = Instant::now();
            let a = d
                .begin(
                    Some(u64::from(i % 7)),
                    "",
                    ip(&format!("10.{b}.{c}.1")),
                    now,
                )
                .unwrap();
            a.failed();
        }
        assert!(d.len() <= 3 * 256, "{} entries", d.len());
    }
}
