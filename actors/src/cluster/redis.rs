//! The Redis implementation of the cluster seam: several Parley processes behaving
//! as one server.
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
//! Presence: a user is online while any node lists them. Adding a user to the
//! empty set answers "first anywhere" and removing the last entry "last anywhere"
//! — each decided atomically in a Lua script, so presence.rs announces each once,
//! not once per node. Each node heartbeats into `{p}:nodes` (a
//! sorted set of last-seen times); a node silent for `presence.node_ttl_secs` is
//! reaped by whichever live node first removes it from that set, which then takes
//! its users out of the node sets (and tells presence who went offline).
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
//!
//! Failover: with Sentinel, [`RedisPrimary`] follows the primary it names. A switch
//! is handled as an outage that ended: the subscriber listens on the new primary
//! and its sessions are replayed what was stored since the floor, and the next
//! heartbeat re-registers this node's users and re-announces them — also when the
//! new primary answered at once and nothing failed, since the promoted replica may
//! lack the last writes (node sets, presence) of the old one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytestring::ByteString;
use deadpool_redis::redis::{self, AsyncCommands, Script};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::codec::{self, Frame};
use super::primary::{Conn, RedisPrimary};
use super::{lock, Cluster, ClusterError, ClusterSettings, Inbox, Reservation};
use crate::directory::{Deliver, RemoteRoute, SessionHandle};
use crate::ids::{CallId, ChatId, MessageId, SessionId, UserId};
use crate::messages::{
    to_every_session, CallEvent, Control, FromSession, Hold, MembersChanged, Reannounce, Reaped,
    Resync, SessionGone,
};
use crate::time::Timestamp;

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
    /// To every other live node.
    Everyone {
        payload: String,
    },
}

pub struct Redis {
    node: Arc<str>,
    me: Weak<Redis>,
    prefix: String,
    /// Where Redis is (one server, or the primary Sentinel names): followed through
    /// a failover, which the subscriber and heartbeat below treat as an outage.
    primary: Arc<RedisPrimary>,
    ttl: Duration,
    up: AtomicBool,
    /// The newest message id at the last heartbeat that found this node properly
    /// registered. Anything another node could have routed past us (Redis
    /// restarted empty, or we were reaped) was stored after it; when we register
    /// again, sessions are sent everything newer. Delivered watermarks cannot serve
    /// here: a live receipt for a later message moves them past the missed one.
    replay_floor: AtomicU64,
    out: mpsc::Sender<Out>,
    /// The publisher's end of `out`, until `start` hands it to the publisher.
    out_rx: Mutex<Option<mpsc::Receiver<Out>>>,
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Redis {
    pub fn new(settings: &ClusterSettings) -> Arc<Redis> {
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let node: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        Arc::new_cyclic(|me| Redis {
            node,
            me: me.clone(),
            prefix: settings.prefix.clone(),
            primary: settings.redis.clone(),
            ttl: settings.node_ttl.max(Duration::from_secs(1)),
            up: AtomicBool::new(true),
            replay_floor: AtomicU64::new(0),
            out: out_tx,
            out_rx: Mutex::new(Some(out_rx)),
        })
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

    /// The nodes where all of `u`'s sessions are hidden (`client:state`); written
    /// only by each node's visibility task (and a reaper), never by JOIN or LEAVE.
    fn user_hidden(&self, u: UserId) -> String {
        self.key(format_args!("user:{u}:hidden"))
    }

    fn node_users(&self, node: &str) -> String {
        self.key(format_args!("node:{node}:users"))
    }

    fn busy(&self, u: UserId) -> String {
        self.key(format_args!("busy:{u}"))
    }

    fn call(&self, call: &str) -> String {
        self.key(format_args!("call:{call}"))
    }

    fn nodes(&self) -> String {
        self.key(format_args!("nodes"))
    }

    fn enqueue(&self, item: Out) {
        if self.out.try_send(item).is_err() {
            // Nothing durable is lost: messages are in MySQL and reach their
            // recipients through catch-up or sync.
            tracing::debug!("cluster outbound queue full; dropping a live event");
        }
    }

    async fn conn(&self) -> redis::RedisResult<Conn<'_>> {
        self.primary.get().await
    }

    fn floor(&self) -> MessageId {
        MessageId(self.replay_floor.load(Ordering::Acquire))
    }

    fn mark_down(&self, e: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %e, "redis unavailable: serving local users only until it returns");
        }
    }

    /// Runs the JOIN or LEAVE script for `user` on `node`.
    async fn transition(&self, script: &str, node: &str, user: UserId) -> redis::RedisResult<bool> {
        let mut conn = self.conn().await?;
        let changed: i64 = Script::new(script)
            .key(self.user_nodes(user))
            .key(self.node_users(node))
            .arg(node)
            .arg(user.0)
            .invoke_async(&mut conn)
            .await?;
        Ok(changed == 1)
    }

    async fn owner(&self, call: &str) -> Option<Arc<str>> {
        let key = self.call(call);
        let mut conn = self.conn().await.ok()?;
        let node: Option<String> = conn.get(key).await.ok()?;
        node.filter(|n| *n != *self.node).map(Arc::from)
    }
}

impl RemoteRoute for Redis {
    fn to_session(&self, node: &Arc<str>, session: SessionId, frame: ByteString) {
        self.enqueue(Out::Node {
            node: node.clone(),
            payload: codec::encode_to_session(session, &frame),
        });
    }
}

#[async_trait]
impl Cluster for Redis {
    fn node(&self) -> &Arc<str> {
        &self.node
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn start(&self, inbox: Inbox) {
        let (Some(me), Some(out)) = (self.me.upgrade(), lock(&self.out_rx).take()) else {
            return;
        };
        let inbox = Arc::new(inbox);
        tokio::spawn(publisher(me.clone(), out));
        tokio::spawn(subscriber(me.clone(), inbox.clone()));
        tokio::spawn(heartbeat(me, inbox));
    }

    async fn join(&self, user: UserId) -> Result<bool, ClusterError> {
        self.transition(JOIN, &self.node, user).await.map_err(|e| {
            self.mark_down(&e);
            e.into()
        })
    }

    async fn leave(&self, user: UserId) -> Result<bool, ClusterError> {
        self.transition(LEAVE, &self.node, user).await.map_err(|e| {
            self.mark_down(&e);
            e.into()
        })
    }

    async fn online_elsewhere(&self, users: &[UserId]) -> Result<Vec<bool>, ClusterError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for u in users {
            pipe.smembers(self.user_nodes(*u));
        }
        let nodes: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        Ok(nodes
            .into_iter()
            .map(|n| n.iter().any(|n| *n != *self.node))
            .collect())
    }

    async fn set_hidden_here(&self, changes: &[(UserId, bool)]) -> Result<(), ClusterError> {
        if changes.is_empty() {
            return Ok(());
        }
        let run = async {
            let mut conn = self.conn().await?;
            let mut pipe = redis::pipe();
            for &(u, hidden) in changes {
                if hidden {
                    pipe.sadd(self.user_hidden(u), &*self.node).ignore();
                } else {
                    pipe.srem(self.user_hidden(u), &*self.node).ignore();
                }
            }
            pipe.query_async::<()>(&mut conn).await
        };
        run.await.map_err(|e| {
            self.mark_down(&e);
            e.into()
        })
    }

    async fn visible_elsewhere(&self, users: &[UserId]) -> Result<Vec<bool>, ClusterError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for u in users {
            pipe.smembers(self.user_nodes(*u));
            pipe.smembers(self.user_hidden(*u));
        }
        let sets: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        Ok(sets
            .chunks(2)
            .map(|pair| match pair {
                [nodes, hidden] => nodes
                    .iter()
                    .any(|n| *n != *self.node && !hidden.contains(n)),
                _ => false,
            })
            .collect())
    }

    async fn reserve_call(
        &self,
        call: &CallId,
        caller: UserId,
        callee: UserId,
    ) -> Result<Reservation, ClusterError> {
        let mut conn = self.conn().await?;
        let r: i64 = Script::new(RESERVE)
            .key(self.busy(caller))
            .key(self.busy(callee))
            .key(self.call(&call.0))
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

    async fn release_call(&self, call: &CallId, parties: [UserId; 2]) {
        let res: redis::RedisResult<i64> = async {
            let mut conn = self.conn().await?;
            Script::new(RELEASE)
                .key(self.busy(parties[0]))
                .key(self.busy(parties[1]))
                .key(self.call(&call.0))
                .arg(call.0.as_str())
                .invoke_async(&mut conn)
                .await
        }
        .await;
        if let Err(e) = res {
            self.mark_down(&e);
        }
    }

    async fn call_node(&self, call: &CallId) -> Option<Arc<str>> {
        self.owner(&call.0).await
    }

    async fn busy_call_node(&self, user: UserId) -> Option<Arc<str>> {
        let key = self.busy(user);
        let call: Option<String> = {
            let mut conn = self.conn().await.ok()?;
            conn.get(key).await.ok()?
        };
        self.owner(&call?).await
    }

    fn to_users(&self, users: &[UserId], d: &Deliver, skip: Option<&SessionHandle>) {
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

    fn forward_call(
        &self,
        node: &Arc<str>,
        session: &SessionHandle,
        reference: Option<&str>,
        event: &CallEvent,
    ) {
        if let Some(payload) =
            codec::encode_call(&self.node, session.id, session.user, reference, event)
        {
            self.enqueue(Out::Node {
                node: node.clone(),
                payload,
            });
        }
    }

    fn session_gone(&self, node: &Arc<str>, user: UserId, session: SessionId) {
        self.enqueue(Out::Node {
            node: node.clone(),
            payload: codec::encode_session_gone(&self.node, session, user),
        });
    }

    fn chat_changed(&self, chat: ChatId) {
        self.enqueue(Out::Everyone {
            payload: codec::encode_chat_changed(chat),
        });
    }
}

async fn publisher(c: Arc<Redis>, mut rx: mpsc::Receiver<Out>) {
    let mut batch: Vec<Out> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = publish_batch(&c, &batch).await {
            c.mark_down(&e);
        }
        batch.clear();
    }
}

async fn publish_batch(c: &Redis, batch: &[Out]) -> redis::RedisResult<()> {
    let mut conn = c.conn().await?;
    // Where each recipient is: one pipelined round trip for the whole batch.
    let mut users: Vec<UserId> = batch
        .iter()
        .flat_map(|o| match o {
            Out::Users { users, .. } => users.as_slice(),
            Out::Node { .. } | Out::Everyone { .. } => &[],
        })
        .copied()
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
    // The live nodes, looked up only when a batch holds a frame for all of them.
    let mut everyone: Vec<String> = Vec::new();
    if batch.iter().any(|o| matches!(o, Out::Everyone { .. })) {
        let nodes: Vec<String> = conn.zrange(c.nodes(), 0, -1).await?;
        everyone = nodes.into_iter().filter(|n| *n != *c.node).collect();
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
                let mut per_node: std::collections::BTreeMap<&str, Vec<UserId>> =
                    Default::default();
                for u in users {
                    for n in located.get(u).into_iter().flatten() {
                        per_node.entry(n.as_str()).or_default().push(*u);
                    }
                }
                let skip = skip.as_ref().map(|(n, s)| (&**n, *s));
                for (node, list) in per_node {
                    pipe.publish(
                        c.channel(node),
                        codec::encode_to_users(skip, &list, *message, frame),
                    )
                    .ignore();
                    any = true;
                }
            }
            Out::Node { node, payload } => {
                pipe.publish(c.channel(node), payload.as_str()).ignore();
                any = true;
            }
            Out::Everyone { payload } => {
                for node in &everyone {
                    pipe.publish(c.channel(node), payload.as_str()).ignore();
                    any = true;
                }
            }
        }
    }
    if any {
        pipe.query_async::<()>(&mut conn).await?;
    }
    Ok(())
}

async fn subscriber(c: Arc<Redis>, inbox: Arc<Inbox>) {
    // Set while not listening: the replay floor as it was when we stopped (sampled
    // at a healthy beat before that), so a later beat cannot move it past frames
    // published to us meanwhile.
    let mut lost_since: Option<MessageId> = None;
    let mut first = true;
    let mut epochs = c.primary.epochs();
    loop {
        match c.primary.pubsub().await {
            Ok((mut ps, epoch)) => {
                if let Some(after) = lost_since {
                    // Held from before we listen again, so nothing newer is shown
                    // ahead of what the replay brings.
                    to_every_session(&inbox.sessions, || Control::Hold(Hold { after }));
                }
                let subscribed = ps.subscribe(c.channel(&c.node)).await;
                match subscribed {
                    Ok(()) => {
                        if let Some(after) = lost_since.take() {
                            // Frames published while we were not listening are lost:
                            // every session is sent again what was stored since.
                            to_every_session(&inbox.sessions, || Control::Resync(Resync { after }));
                        }
                        first = false;
                        let mut stream = ps.into_on_message();
                        let switched = loop {
                            tokio::select! {
                                msg = stream.next() => match msg {
                                    Some(msg) => inbound(&c, &inbox, msg.get_payload_bytes()),
                                    None => break false,
                                },
                                changed = epochs.changed() => {
                                    if changed.is_ok() && *epochs.borrow_and_update() != epoch {
                                        break true;
                                    }
                                }
                            }
                        };
                        lost_since = Some(c.floor());
                        if switched {
                            // Sentinel named another primary: publishers use it now, so
                            // listen there at once; what was published to the old one
                            // since the switch comes with the replay.
                            tracing::info!("redis primary switched: subscribing on the new one");
                            continue;
                        }
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

fn inbound(c: &Arc<Redis>, inbox: &Inbox, payload: &[u8]) {
    let frame = match codec::decode(payload) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring a malformed cluster frame");
            return;
        }
    };
    match frame {
        Frame::ToUsers {
            skip,
            users,
            message,
            frame,
        } => {
            let d = Deliver { frame, message };
            let skip = skip.filter(|(n, _)| **n == *c.node).map(|(_, s)| s);
            for u in users {
                inbox.directory.deliver_to_user(u, &d, skip);
            }
        }
        Frame::ToSession { session, frame } => {
            inbox
                .directory
                .deliver_to_session(session, Deliver::frame(frame));
        }
        Frame::Call {
            origin,
            session,
            user,
            reference,
            event,
        } => {
            let via: Arc<dyn RemoteRoute> = c.clone();
            inbox.calls.do_send(FromSession {
                session: SessionHandle::remote(session, user, Arc::from(origin), via),
                reference,
                event,
            });
        }
        Frame::SessionGone {
            origin,
            session,
            user,
        } => inbox.gone.do_send(SessionGone {
            user,
            session,
            node: Some(Arc::from(origin)),
        }),
        Frame::ChatChanged { chat } => inbox.rooms.do_send(MembersChanged { chat }),
    }
}

async fn heartbeat(c: Arc<Redis>, inbox: Arc<Inbox>) {
    let every = (c.ttl / 3).max(Duration::from_millis(500));
    let mut registered_once = false;
    let epochs = c.primary.epochs();
    // The primary our last beat was sure of: another one since (a Sentinel
    // failover) is handled as an outage even if the new primary answered at once —
    // a promoted replica may lack our last writes (replication is asynchronous).
    let mut seen_epoch = *epochs.borrow();
    loop {
        match beat(&c, &inbox).await {
            Ok(newly_added) => {
                let epoch = *epochs.borrow();
                let switched = epoch != seen_epoch;
                seen_epoch = epoch;
                let was_down = !c.up.swap(true, Ordering::AcqRel);
                if was_down {
                    tracing::info!("redis is back: cross-node delivery resumes");
                }
                // Also on the first registration if sessions opened before it (Redis
                // was down at start): their users could not be listed then.
                let listed_late = !registered_once && !inbox.sessions.is_empty();
                if (registered_once || listed_late) && (newly_added || was_down || switched) {
                    // We were reaped or cut off, or Redis is another server now: list
                    // our users again, announce them, then (in that order) send every
                    // session what could not travel meanwhile. The floor stays as it
                    // was until a healthy beat (0, never sampled: sessions catch up on
                    // what is undelivered).
                    inbox.reannounce.do_send(Reannounce {
                        replay_after: c.floor(),
                    });
                } else if let Ok(Ok(newest)) =
                    tokio::time::timeout(every / 2, inbox.store.newest_message_id()).await
                {
                    // Healthy and listed: everything stored so far was routed with our
                    // users known. (Without MySQL the older floor stays: safe. Bounded,
                    // so a slow database never delays the heartbeat itself.) Not if the
                    // primary switched meanwhile: the next beat re-announces, after
                    // this floor.
                    if *epochs.borrow() == seen_epoch {
                        c.replay_floor.fetch_max(newest.0, Ordering::AcqRel);
                    }
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
async fn beat(c: &Redis, inbox: &Inbox) -> redis::RedisResult<bool> {
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
            let _: i64 = conn.srem(c.user_hidden(UserId(u)), &node).await?;
            if went_offline == 1 {
                inbox.reaped.do_send(Reaped {
                    user: UserId(u),
                    at: Timestamp::now(),
                });
            }
        }
        let _: i64 = conn.del(c.node_users(&node)).await?;
    }
    Ok(added == 1)
}
