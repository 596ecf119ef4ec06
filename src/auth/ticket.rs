//! One-use WebSocket tickets. A browser cannot set headers on a WebSocket, so its
//! credential must travel in the `/ws` URL — and URLs end up in access logs, proxy
//! logs and browser history. A 7-day JWT there is a 7-day key on disk; a ticket is
//! worth nothing once used or 30 s old. `POST /api/auth/ws-ticket` (bearer token in
//! the header) issues one bound to the caller and their sign-in session; `/ws?ticket=`
//! redeems it (and the session must still be live then).
//!
//! Tickets are 256 random bits. With Redis configured they live there (a ticket
//! issued by one node is redeemed by whichever node nginx picks for the socket):
//! issuing and redeeming are one Lua script each, so a ticket is handed out once
//! even when two nodes race for it. Without Redis they live in this process's memory.
//! Either way at most `TICKETS_PER_WINDOW` are issued per user per 30 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis::Script;
use parley_actors::cluster::RedisPrimary;
use parley_actors::{AuthSessionId, UserId};

/// How long a ticket may wait to be used.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// Tickets one user may be issued per `TICKET_TTL`: every tab of every device
/// reconnecting at once, with room to spare; bounds what one account can store.
pub const TICKETS_PER_WINDOW: u32 = 32;

const TICKET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    /// This user was issued too many tickets lately; the window ends after this.
    #[error("too many tickets")]
    TooMany(Duration),
    #[error("ticket store unavailable: {0}")]
    Unavailable(String),
}

pub struct WsTickets {
    store: Store,
}

enum Store {
    Memory(Mutex<Memory>),
    Redis {
        redis: Arc<RedisPrimary>,
        prefix: String,
    },
}

#[derive(Default)]
struct Memory {
    tickets: HashMap<[u8; TICKET_BYTES], (UserId, AuthSessionId, Instant)>,
    /// Per user: when the current window began and how many were issued in it.
    issued: HashMap<UserId, (Instant, u32)>,
    issues: u64,
}

/// KEYS[1] the user's window counter, KEYS[2] the ticket; ARGV: `user:sid`, TTL in
/// ms, most per window. 0 when issued, else the milliseconds until the window ends.
const ISSUE: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[3]) then
  return math.max(redis.call('PTTL', KEYS[1]), 1)
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 0
";

/// KEYS[1] the ticket: its `user:sid`, deleted in the same step (single use across nodes).
const REDEEM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v
";

impl WsTickets {
    pub fn in_memory() -> WsTickets {
        WsTickets {
            store: Store::Memory(Mutex::new(Memory::default())),
        }
    }

    pub fn in_redis(redis: Arc<RedisPrimary>, prefix: &str) -> WsTickets {
        WsTickets {
            store: Store::Redis {
                redis,
                prefix: prefix.to_owned(),
            },
        }
    }

    /// A new ticket for `user` signed in as `sid`, valid for one `/ws` connect within
    /// `TICKET_TTL`.
    pub async fn issue(&self, user: UserId, sid: AuthSessionId) -> Result<String, TicketError> {
        use rand::RngExt;
        let bytes: [u8; TICKET_BYTES] = rand::rng().random();
        let ticket = hex::encode(bytes);
        match &self.store {
            Store::Memory(m) => {
                let now = Instant::now();
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.issues += 1;
                if m.issues % 64 == 0 {
                    m.tickets.retain(|_, (_, _, expires)| *expires > now);
                    m.issued
                        .retain(|_, (start, _)| now.duration_since(*start) < TICKET_TTL);
                }
                let window = m.issued.entry(user).or_insert((now, 0));
                if now.duration_since(window.0) >= TICKET_TTL {
                    *window = (now, 0);
                }
                if window.1 >= TICKETS_PER_WINDOW {
                    return Err(TicketError::TooMany(
                        (window.0 + TICKET_TTL).saturating_duration_since(now),
                    ));
                }
                window.1 += 1;
                m.tickets.insert(bytes, (user, sid, now + TICKET_TTL));
            }
            Store::Redis { redis, prefix } => {
                let mut conn = redis
                    .get()
                    .await
                    .map_err(|e| TicketError::Unavailable(e.to_string()))?;
                let wait_ms: u64 = Script::new(ISSUE)
                    .key(format!("{prefix}:wstickets:{user}"))
                    .key(format!("{prefix}:wsticket:{ticket}"))
                    .arg(format!("{user}:{sid}"))
                    .arg(TICKET_TTL.as_millis() as u64)
                    .arg(TICKETS_PER_WINDOW)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| TicketError::Unavailable(e.to_string()))?;
                if wait_ms > 0 {
                    return Err(TicketError::TooMany(Duration::from_millis(wait_ms)));
                }
            }
        }
        Ok(ticket)
    }

    /// The user and session `ticket` was issued to, if it exists, is unused and
    /// unexpired; it is used up either way.
    pub async fn redeem(
        &self,
        ticket: &str,
    ) -> Result<Option<(UserId, AuthSessionId)>, TicketError> {
        let mut bytes = [0u8; TICKET_BYTES];
        if hex::decode_to_slice(ticket, &mut bytes).is_err() {
            return Ok(None);
        }
        match &self.store {
            Store::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                Ok(m.tickets
                    .remove(&bytes)
                    .filter(|(_, _, expires)| *expires > Instant::now())
                    .map(|(user, sid, _)| (user, sid)))
            }
            Store::Redis { redis, prefix } => {
                let mut conn = redis
                    .get()
                    .await
                    .map_err(|e| TicketError::Unavailable(e.to_string()))?;
                // Lower-case, as issued: the key is the canonical spelling.
                let value: Option<String> = Script::new(REDEEM)
                    .key(format!("{prefix}:wsticket:{}", hex::encode(bytes)))
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| TicketError::Unavailable(e.to_string()))?;
                // A ticket stored by a node of the previous release holds the user
                // alone: no session to check, so it is refused like an unknown one.
                Ok(value.as_deref().and_then(parse_stored))
            }
        }
    }
}

/// `user:sid` as a ticket is stored in Redis.
fn parse_stored(v: &str) -> Option<(UserId, AuthSessionId)> {
    let (user, sid) = v.split_once(':')?;
    Some((UserId(user.parse().ok()?), AuthSessionId(sid.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: AuthSessionId = AuthSessionId(9);

    #[test]
    fn a_stored_ticket_reads_back_as_user_and_session() {
        assert_eq!(parse_stored("1:9"), Some((UserId(1), SID)));
        assert_eq!(parse_stored("1"), None);
        assert_eq!(parse_stored("1:x"), None);
    }

    #[tokio::test]
    async fn a_ticket_is_random_bound_to_its_user_and_single_use() {
        let t = WsTickets::in_memory();
        let a = t.issue(UserId(1), SID).await.unwrap();
        let b = t.issue(UserId(1), SID).await.unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 * TICKET_BYTES);
        assert_eq!(t.redeem(&a).await.unwrap(), Some((UserId(1), SID)));
        assert_eq!(t.redeem(&a).await.unwrap(), None, "used twice");
        assert_eq!(t.redeem("not-hex").await.unwrap(), None);
        assert_eq!(t.redeem(&"0".repeat(64)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn issuing_is_bounded_per_user() {
        let t = WsTickets::in_memory();
        for _ in 0..TICKETS_PER_WINDOW {
            t.issue(UserId(1), SID).await.unwrap();
        }
        match t.issue(UserId(1), SID).await {
            Err(TicketError::TooMany(wait)) => assert!(wait <= TICKET_TTL),
            other => panic!("expected TooMany, got {:?}", other.map(|_| ())),
        }
        t.issue(UserId(2), SID).await.unwrap();
    }
}
