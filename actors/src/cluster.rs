//! Several Parley processes behaving as one server, through Redis.
//!
//! Routing: every node subscribes to one channel of its own (`{p}:node:{id}`), and
//! Redis keeps, per user, the set of nodes where they have sessions
//! (`{p}:user:{u}:nodes`). To deliver an event to some users, a node delivers to
//! its own sessions directly, looks up (one pipelined round trip for a whole batch
//! of events) which *other* nodes host those users, and publishes the frame once
//! per such node with the list of its users. Why per-node channels rather than a
//! channel per user: subscriptions never churn when people connect and disconnect
//! (one SUBSCRIBE per process lifetime), the per-user node sets are needed for
//! cluster-wide presence anyway, and a message to a group costs one PUBLISH per
//! node that hosts members instead of one per member. Cost per batch of events:
//! one SMEMBERS per recipient (pipelined with the rest of the batch) plus one
//! PUBLISH per remote node that hosts a recipient — looked up even when no other
//! node seemed alive at the last heartbeat, since one may have joined since.
//!
//! Presence: a user is online while any node lists them. The first node to add a
//! user to the empty set announces `user:online`; the node that removes the last
//! entry announces `user:offline` — each decided atomically in a Lua script, so
//! each is sent once, not once per node. Each node heartbeats into `{p}:nodes` (a
//! sorted set of last-seen times); a node silent for `presence.node_ttl_secs` is
//! reaped by whichever live node first removes it from that set, which then takes
//! its users out of the node sets (and announces those who went offline).
//!
//! Calls: one owning node per call — the caller's. `{p}:call:{id}` names it and
//! `{p}:busy:{user}` holds the call a user is in (set for both parties at once, by
//! script, so "busy" holds across nodes). Events for a call that lives elsewhere
//! are forwarded to its node, with the sender's session as a remote handle, so
//! replies and relays go back to exactly that session.
//!
//! Outage: if Redis stops answering, the node keeps serving its own users, logs
//! the outage once, reports 503 on `/api/ready`, and keeps retrying. When Redis is
//! back its sessions hold live messages, it re-registers its users, and every local
//! session is sent every message of its chats after the node's *replay floor* (the
//! newest id at its last healthy heartbeat), then what it held: messages that could
//! not travel meanwhile (they are all in MySQL) arrive as pushes, in order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytestring::ByteString;
use deadpool_redis::redis::{self, AsyncCommands, Script};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::call::{CallDirectory, ForwardedCall, SessionGone};
use crate::directory::{Deliver, SessionHandle};
use crate::ids::{CallId, MessageId, SessionId, UserId};
use crate::presence::{PresenceRegistry, Reannounce};
use crate::protocol::{self, ServerEvent};
use crate::time::Timestamp;
use crate::Shared;

/// How to reach Redis and how long a silent node counts as alive.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub url: String,
    pub prefix: String,
    pub node_ttl: Duration,
}

/// How long a call's reservation lives if its node dies without releasing it.
const CALL_TTL_SECS: u64 = 6 * 3600;
const OUT_QUEUE: usize = 65_536;
const BATCH: usize = 256;

enum Out {
    Users {
        users: Vec<UserId>,
        frame: ByteString,
        /// The message the frame carries, if any: the receiving node's sessions hold
        /// such frames during a catch-up (order, and no second copy).
        message: Option<MessageId>,
        skip: Option<(Arc<str>, SessionId)>,
    },
    Node {
        node: Arc<str>,
        payload: String,
    },
}

/// A presence change of this node, applied to Redis in the order it happened.
pub enum Transition {
    Online {
        user: UserId,
        contacts: Vec<UserId>,
        /// Told once Redis lists the user here (or the attempt failed).
        listed: Option<tokio::sync::oneshot::Sender<()>>,
    },
    /// Told once every transition queued before it has been applied: a session
    /// whose user is already listed (or being listed) here waits on it.
    Barrier {
        listed: tokio::sync::oneshot::Sender<()>,
    },
    Offline {
        user: UserId,
        contacts: Vec<UserId>,
        at: Timestamp,
    },
    /// After re-registering: every local session is sent again what was stored
    /// after `after` (see `Cluster::replay_floor`), so what was stored while this
    /// node's users were unknown to Redis (and so not routed here) arrives.
    Resync { after: MessageId },
}

pub struct Cluster {
    pub node: Arc<str>,
    prefix: String,
    pool: deadpool_redis::Pool,
    client: redis::Client,
    ttl: Duration,
    up: AtomicBool,
    /// The newest message id at the last heartbeat that found this node properly
    /// registered. Anything another node could have routed past us (Redis
    /// restarted empty, or we were reaped) was stored after it; when we register
    /// again, sessions are sent everything newer. Delivered watermarks cannot serve
    /// here: a live receipt for a later message moves them past the missed one.
    replay_floor: AtomicU64,
    out: mpsc::Sender<Out>,
    presence: mpsc::UnboundedSender<Transition>,
}

/// The receiving ends, handed to the tasks once the actors exist.
pub struct ClusterTasks {
    out: mpsc::Receiver<Out>,
    presence: mpsc::UnboundedReceiver<Transition>,
}

const JOIN: &str = r"
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
if added == 1 and redis.call('SCARD', KEYS[1]) == 1 then return 1 end
return 0";

const LEAVE: &str = r"
local removed = redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if removed == 1 and redis.call('SCARD', KEYS[1]) == 0 then return 1 end
return 0";

/// 0: reserved; 1: the caller is busy; 2: the callee is busy.
const RESERVE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
return 0";

const RELEASE: &str = r"
for i = 1, 2 do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
redis.call('DEL', KEYS[3])
return 0";

/// What `reserve_call` found.
pub enum Reservation {
    Reserved,
    CallerBusy,
    CalleeBusy,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Cluster {
    pub fn new(settings: &ClusterSettings) -> anyhow_like::Result<(Arc<Cluster>, ClusterTasks)> {
        let pool = deadpool_redis::Config::from_url(settings.url.clone())
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| anyhow_like::Error(e.to_string()))?;
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| anyhow_like::Error(e.to_string()))?;
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let (p_tx, p_rx) = mpsc::unbounded_channel();
        let node: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        Ok((
            Arc::new(Cluster {
                node,
                prefix: settings.prefix.clone(),
                pool,
                client,
                ttl: settings.node_ttl.max(Duration::from_secs(1)),
                up: AtomicBool::new(true),
                replay_floor: AtomicU64::new(0),
                out: out_tx,
                presence: p_tx,
            }),
            ClusterTasks {
                out: out_rx,
                presence: p_rx,
            },
        ))
    }

    fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{}", self.prefix, rest)
    }

    fn channel(&self, node: &str) -> String {
        self.key(format_args!("node:{node}"))
    }

    fn user_nodes(&self, u: UserId) -> String {
        self.key(format_args!("user:{u}:nodes"))
    }

    fn node_users(&self, node: &str) -> String {
        self.key(format_args!("node:{node}:users"))
    }

    fn nodes(&self) -> String {
        self.key(format_args!("nodes"))
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn enqueue(&self, item: Out) {
        if self.out.try_send(item).is_err() {
            // Nothing durable is lost: messages are in MySQL and reach their
            // recipients through catch-up or sync.
            tracing::debug!("cluster outbound queue full; dropping a live event");
        }
    }

    /// Hands `frame` to the other nodes for `users` (skipping one remote session).
    pub(crate) fn to_users(&self, users: &[UserId], d: &Deliver, skip: Option<&SessionHandle>) {
        // Always looked up, even when the last heartbeat saw no other node: a node
        // that joined since then would miss what we skipped (until its sessions
        // asked MySQL), and one pipelined round trip per batch is cheap.
        if users.is_empty() {
            return;
        }
        self.enqueue(Out::Users {
            users: users.to_vec(),
            frame: d.frame.clone(),
            message: d.message,
            skip: skip.and_then(|s| s.node().map(|n| (n.clone(), s.id))),
        });
    }

    /// Sends a frame to one session on another node.
    pub(crate) fn to_session(&self, node: &Arc<str>, session: SessionId, frame: ByteString) {
        self.enqueue(Out::Node {
            node: node.clone(),
            payload: format!("S\t{session}\n{frame}"),
        });
    }

    /// Forwards a session's call event (as its frame text) to the call's node.
    pub(crate) fn forward_call(&self, node: &str, session: &SessionHandle, frame: &str) {
        self.enqueue(Out::Node {
            node: Arc::from(node),
            payload: format!(
                "C\t{}\t{}\t{}\n{frame}",
                self.node, session.id, session.user
            ),
        });
    }

    /// Tells a call's node that a session of one of its parties has ended.
    pub(crate) fn forward_session_gone(&self, node: &str, user: UserId, session: SessionId) {
        self.enqueue(Out::Node {
            node: Arc::from(node),
            payload: format!("G\t{}\t{session}\t{user}\n", self.node),
        });
    }

    pub(crate) fn presence(&self, t: Transition) {
        let _ = self.presence.send(t);
    }

    async fn conn(&self) -> redis::RedisResult<deadpool_redis::Connection> {
        self.pool.get().await.map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::IoError, "pool", e.to_string()))
        })
    }

    fn floor(&self) -> MessageId {
        MessageId(self.replay_floor.load(Ordering::Acquire))
    }

    fn mark_down(&self, e: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %e, "redis unavailable: serving local users only until it returns");
        }
    }

    /// Reserves both parties and names this node as the call's owner.
    pub(crate) async fn reserve_call(
        &self,
        call: &CallId,
        caller: UserId,
        callee: UserId,
    ) -> redis::RedisResult<Reservation> {
        let mut conn = self.conn().await?;
        let r: i64 = Script::new(RESERVE)
            .key(self.key(format_args!("busy:{caller}")))
            .key(self.key(format_args!("busy:{callee}")))
            .key(self.key(format_args!("call:{call}")))
            .arg(call.0.as_str())
            .arg(&*self.node)
            .arg(CALL_TTL_SECS)
            .invoke_async(&mut conn)
            .await?;
        Ok(match r {
            1 => Reservation::CallerBusy,
            2 => Reservation::CalleeBusy,
            _ => Reservation::Reserved,
        })
    }

    pub(crate) async fn release_call(&self, call: &CallId, parties: [UserId; 2]) {
        let res: redis::RedisResult<i64> = async {
            let mut conn = self.conn().await?;
            Script::new(RELEASE)
                .key(self.key(format_args!("busy:{}", parties[0])))
                .key(self.key(format_args!("busy:{}", parties[1])))
                .key(self.key(format_args!("call:{call}")))
                .arg(call.0.as_str())
                .invoke_async(&mut conn)
                .await
        }
        .await;
        if let Err(e) = res {
            self.mark_down(&e);
        }
    }

    /// The node that owns `call`, if it lives on another node.
    pub(crate) async fn call_node(&self, call: &CallId) -> Option<String> {
        let mut conn = self.conn().await.ok()?;
        let node: Option<String> = conn.get(self.key(format_args!("call:{call}"))).await.ok()?;
        node.filter(|n| *n != *self.node)
    }

    /// The node of the call `user` is in, if it lives on another node.
    pub(crate) async fn busy_call_node(&self, user: UserId) -> Option<String> {
        let mut conn = self.conn().await.ok()?;
        let call: Option<String> = conn.get(self.key(format_args!("busy:{user}"))).await.ok()?;
        self.call_node(&CallId(call?)).await
    }
}

/// A tiny error type so this module needs no error crate of its own.
pub mod anyhow_like {
    #[derive(Debug)]
    pub struct Error(pub String);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Error {}
    pub type Result<T> = std::result::Result<T, Error>;
}

/// Everything the cluster tasks act on.
pub(crate) struct Wiring {
    pub shared: Arc<Shared>,
    pub presence: Addr<PresenceRegistry>,
    pub calls: Addr<CallDirectory>,
}

/// Starts the publisher, subscriber, presence and heartbeat tasks.
pub(crate) fn start(cluster: Arc<Cluster>, tasks: ClusterTasks, wiring: Wiring) {
    let wiring = Arc::new(wiring);
    tokio::spawn(publisher(cluster.clone(), tasks.out));
    tokio::spawn(subscriber(cluster.clone(), wiring.clone()));
    tokio::spawn(presence_task(
        cluster.clone(),
        tasks.presence,
        wiring.clone(),
    ));
    tokio::spawn(heartbeat(cluster, wiring));
}

async fn publisher(c: Arc<Cluster>, mut rx: mpsc::Receiver<Out>) {
    let mut batch: Vec<Out> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = publish_batch(&c, &batch).await {
            c.mark_down(&e);
        }
        batch.clear();
    }
}

async fn publish_batch(c: &Cluster, batch: &[Out]) -> redis::RedisResult<()> {
    let mut conn = c.conn().await?;
    // Where each recipient is: one pipelined round trip for the whole batch.
    let mut users: Vec<UserId> = batch
        .iter()
        .flat_map(|o| match o {
            Out::Users { users, .. } => users.clone(),
            Out::Node { .. } => Vec::new(),
        })
        .collect();
    users.sort();
    users.dedup();
    let mut located: std::collections::HashMap<UserId, Vec<String>> = Default::default();
    if !users.is_empty() {
        let mut pipe = redis::pipe();
        for u in &users {
            pipe.smembers(c.user_nodes(*u));
        }
        let nodes: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        for (u, n) in users.into_iter().zip(nodes) {
            located.insert(u, n.into_iter().filter(|n| *n != *c.node).collect());
        }
    }
    let mut pipe = redis::pipe();
    let mut any = false;
    for o in batch {
        match o {
            Out::Users {
                users,
                frame,
                message,
                skip,
            } => {
                let mut per_node: std::collections::BTreeMap<&str, Vec<String>> =
                    Default::default();
                for u in users {
                    for n in located.get(u).into_iter().flatten() {
                        per_node.entry(n.as_str()).or_default().push(u.to_string());
                    }
                }
                let (skip_node, skip_session) = match skip {
                    Some((n, s)) => (n.to_string(), s.0),
                    None => ("-".to_string(), 0),
                };
                let message = message.map_or_else(|| "-".to_string(), |m| m.0.to_string());
                for (node, list) in per_node {
                    pipe.publish(
                        c.channel(node),
                        format!(
                            "U\t{skip_node}\t{skip_session}\t{}\t{message}\n{frame}",
                            list.join(",")
                        ),
                    )
                    .ignore();
                    any = true;
                }
            }
            Out::Node { node, payload } => {
                pipe.publish(c.channel(node), payload.as_str()).ignore();
                any = true;
            }
        }
    }
    if any {
        pipe.query_async::<()>(&mut conn).await?;
    }
    Ok(())
}

async fn subscriber(c: Arc<Cluster>, w: Arc<Wiring>) {
    // Set while not listening: the replay floor as it was when we stopped (sampled
    // at a healthy beat before that), so a later beat cannot move it past frames
    // published to us meanwhile.
    let mut lost_since: Option<MessageId> = None;
    let mut first = true;
    loop {
        match c.client.get_async_pubsub().await {
            Ok(mut ps) => {
                if let Some(after) = lost_since {
                    // Held from before we listen again, so nothing newer is shown
                    // ahead of what the replay brings.
                    hold_sessions(&w.shared, after);
                }
                let subscribed = ps.subscribe(c.channel(&c.node)).await;
                match subscribed {
                    Ok(()) => {
                        if let Some(after) = lost_since.take() {
                            // Frames published while we were not listening are lost:
                            // every session is sent again what was stored since.
                            resync_sessions(&w.shared, after);
                        }
                        first = false;
                        let mut stream = ps.into_on_message();
                        while let Some(msg) = stream.next().await {
                            inbound(&c, &w, msg.get_payload_bytes());
                        }
                        lost_since = Some(c.floor());
                        c.mark_down(&"subscription ended");
                    }
                    Err(e) => {
                        if !first {
                            lost_since.get_or_insert_with(|| c.floor());
                        }
                        c.mark_down(&e);
                    }
                }
            }
            Err(e) => {
                if !first {
                    lost_since.get_or_insert_with(|| c.floor());
                }
                c.mark_down(&e);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn inbound(c: &Arc<Cluster>, w: &Wiring, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    let (head, body) = text.split_once('\n').unwrap_or((text, ""));
    let fields: Vec<&str> = head.split('\t').collect();
    let directory = w.shared.bus.directory();
    match fields.as_slice() {
        ["U", skip_node, skip_session, users, rest @ ..] => {
            // (A node of the previous release sends no message id.)
            let d = Deliver {
                frame: ByteString::from(body.to_string()),
                message: rest
                    .first()
                    .and_then(|m| m.parse::<u64>().ok())
                    .map(MessageId),
            };
            let skip = (*skip_node == &*c.node)
                .then(|| skip_session.parse::<u64>().ok().map(SessionId))
                .flatten();
            for u in users.split(',').filter_map(|u| u.parse::<u64>().ok()) {
                directory.deliver_to_user(UserId(u), &d, skip);
            }
        }
        ["S", session] => {
            if let Ok(s) = session.parse::<u64>() {
                directory.deliver_to_session(
                    SessionId(s),
                    Deliver::frame(ByteString::from(body.to_string())),
                );
            }
        }
        ["C", node, session, user] => {
            if let (Ok(s), Ok(u)) = (session.parse::<u64>(), user.parse::<u64>()) {
                let handle =
                    SessionHandle::remote(SessionId(s), UserId(u), Arc::from(*node), c.clone());
                w.calls.do_send(ForwardedCall {
                    session: handle,
                    frame: body.to_string(),
                });
            }
        }
        ["G", node, session, user] => {
            if let (Ok(s), Ok(u)) = (session.parse::<u64>(), user.parse::<u64>()) {
                w.calls.do_send(SessionGone {
                    user: UserId(u),
                    session: SessionId(s),
                    node: Some(Arc::from(*node)),
                });
            }
        }
        _ => tracing::debug!("ignoring a malformed cluster message"),
    }
}

/// Every local session holds live messages until its `Resync` (see `session::Hold`).
pub(crate) fn hold_sessions(shared: &Shared, after: MessageId) {
    for s in shared.sessions.iter() {
        s.value().do_send(crate::session::Hold { after });
    }
}

fn resync_sessions(shared: &Shared, after: MessageId) {
    for s in shared.sessions.iter() {
        s.value().do_send(crate::session::Resync { after });
    }
}

async fn presence_task(
    c: Arc<Cluster>,
    mut rx: mpsc::UnboundedReceiver<Transition>,
    w: Arc<Wiring>,
) {
    while let Some(t) = rx.recv().await {
        let (user, online) = match &t {
            Transition::Online { user, .. } => (*user, true),
            Transition::Offline { user, .. } => (*user, false),
            Transition::Resync { after } => {
                resync_sessions(&w.shared, *after);
                continue;
            }
            Transition::Barrier { .. } => {
                if let Transition::Barrier { listed } = t {
                    let _ = listed.send(());
                }
                continue;
            }
        };
        let res: redis::RedisResult<i64> = async {
            let mut conn = c.conn().await?;
            Script::new(if online { JOIN } else { LEAVE })
                .key(c.user_nodes(user))
                .key(c.node_users(&c.node))
                .arg(&*c.node)
                .arg(user.0)
                .invoke_async(&mut conn)
                .await
        }
        .await;
        let announce = match res {
            Ok(changed) => changed == 1,
            // Without Redis nobody can tell; say it to whoever can hear (this node).
            Err(e) => {
                c.mark_down(&e);
                true
            }
        };
        if !announce {
            continue;
        }
        match t {
            Transition::Online {
                user,
                contacts,
                listed,
            } => {
                if let Some(listed) = listed {
                    let _ = listed.send(());
                }
                let d = Deliver::frame(protocol::encode(
                    &ServerEvent::UserOnline { user_id: user },
                    None,
                ));
                w.shared.bus.to_users(&contacts, &d, None);
            }
            Transition::Offline { user, contacts, at } => {
                announce_offline(&w.shared, user, &contacts, at).await
            }
            Transition::Resync { .. } | Transition::Barrier { .. } => {}
        }
    }
}

async fn announce_offline(shared: &Shared, user: UserId, contacts: &[UserId], at: Timestamp) {
    let d = Deliver::frame(protocol::encode(
        &ServerEvent::UserOffline {
            user_id: user,
            last_seen_at: at,
        },
        None,
    ));
    shared.bus.to_users(contacts, &d, None);
    if let Err(e) = shared.store.set_last_seen(user, at).await {
        tracing::warn!(%user, error = %e, "storing last seen");
    }
}

async fn heartbeat(c: Arc<Cluster>, w: Arc<Wiring>) {
    let every = (c.ttl / 3).max(Duration::from_millis(500));
    let mut registered_once = false;
    loop {
        match beat(&c, &w).await {
            Ok(newly_added) => {
                let was_down = !c.up.swap(true, Ordering::AcqRel);
                if was_down {
                    tracing::info!("redis is back: cross-node delivery resumes");
                }
                // Also on the first registration if sessions opened before it (Redis
                // was down at start): their users could not be listed then.
                let listed_late = !registered_once && !w.shared.sessions.is_empty();
                if (registered_once || listed_late) && (newly_added || was_down) {
                    // We were reaped or cut off: list our users again, announce them,
                    // then (in that order) send every session what could not travel
                    // meanwhile. The floor stays as it was until a healthy beat (0,
                    // never sampled: sessions catch up on what is undelivered).
                    w.presence.do_send(Reannounce {
                        replay_after: c.floor(),
                    });
                } else if let Ok(Ok(newest)) =
                    tokio::time::timeout(every / 2, w.shared.store.newest_message_id()).await
                {
                    // Healthy and listed: everything stored so far was routed with our
                    // users known. (Without MySQL the older floor stays: safe. Bounded,
                    // so a slow database never delays the heartbeat itself.)
                    c.replay_floor.fetch_max(newest.0, Ordering::AcqRel);
                }
                registered_once = true;
            }
            Err(e) => c.mark_down(&e),
        }
        tokio::time::sleep(every).await;
    }
}

/// One heartbeat: refresh our entry, reap dead nodes, count the live ones.
/// Returns whether our entry had to be added (first beat, or we had been reaped).
async fn beat(c: &Cluster, w: &Wiring) -> redis::RedisResult<bool> {
    let mut conn = c.conn().await?;
    let now = now_ms();
    let ttl_ms = c.ttl.as_millis() as u64;
    let added: i64 = conn.zadd(c.nodes(), &*c.node, now).await?;
    let dead: Vec<String> = conn
        .zrangebyscore(c.nodes(), "-inf", now.saturating_sub(ttl_ms))
        .await?;
    for node in dead {
        let claimed: i64 = conn.zrem(c.nodes(), &node).await?;
        if claimed != 1 {
            continue;
        }
        tracing::warn!(%node, "reaping a node that stopped heartbeating");
        let users: Vec<u64> = conn.smembers(c.node_users(&node)).await?;
        for u in users {
            let went_offline: i64 = Script::new(LEAVE)
                .key(c.user_nodes(UserId(u)))
                .key(c.node_users(&node))
                .arg(&node)
                .arg(u)
                .invoke_async(&mut conn)
                .await?;
            if went_offline == 1 {
                let contacts = w.shared.store.contacts(UserId(u)).await.unwrap_or_default();
                announce_offline(&w.shared, UserId(u), &contacts, Timestamp::now()).await;
            }
        }
        let _: i64 = conn.del(c.node_users(&node)).await?;
    }
    Ok(added == 1)
}
