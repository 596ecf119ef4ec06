//! One WebSocket connection. The session decodes each frame once, checks the rate
//! limit, and hands the event to whoever owns it: the chat's room (send, typing),
//! the store (receipts, sync), or the call actors. Outbound frames arrive already
//! encoded (`Deliver`) and are written as they are.
//!
//! Life: on start it loads the user's contacts, registers with the presence
//! registry (which makes it reachable), then pushes every message not yet delivered
//! to the user, oldest first; live messages that arrive during that catch-up are
//! held and sent after it, minus any the catch-up already sent, so each message
//! arrives once. It unregisters exactly once, in `stopping`.
//!
//! A session never awaits database work on its own: every store call runs in a task
//! of its own that takes a pooled connection, reads its rows and gives the connection
//! back whether or not this session is still being polled (a client that stops
//! reading stalls its session, never the pool). Answers that page through the history
//! (`sync`, the catch-up) run one at a time per session and stream: a few hundred KiB
//! at most per query, and the next query only once the session's outbound queue (see
//! [`Outbound`]) has drained below a low mark.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;
use futures_util::Stream;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::changes::{self, ChangeRequest};
use crate::directory::{Deliver, SessionHandle};
use crate::error_code::ErrorCode;
use crate::ids::{AuthSessionId, ChangeId, ChatId, MessageId, SessionId, UserId};
use crate::messages::{
    CallEvent, Control, FromSession, SessionClosed, SessionGone, SessionOpened, SessionReady,
};
pub use crate::messages::{Close, Hold, Resync};
use crate::protocol::{self, Ack, ClientEvent, ServerEvent, WireError};
use crate::realtime::Realtime;
use crate::room::{Post, Room, RoomRequest, Route, TypingSignal};
pub use crate::settings::{RealtimeSettings, ROOM_IDLE, SIGNAL_MAX_BYTES};
use crate::shared::Shared;
use crate::store::{Message, ReadOutcome, StoreError};
use crate::time::Timestamp;

mod catchup;
use catchup::{CatchUp, Finish, Held, TooFarBehind, HOLD_MAX};

/// Frames a session may have queued before it counts as not reading.
const SESSION_MAILBOX: usize = 1024;
/// Most messages one `sync` answers (the client asks again from `lastId`).
const PAGE: u32 = 500;
/// Messages asked of the store per query while streaming a `sync` or the catch-up.
const STEP: u32 = 100;
/// Encoded bytes sent per query while streaming; the rest of that query's rows is
/// asked for again next time (a step of large messages stays small in memory).
const STEP_BYTES: usize = 256 * 1024;
/// The next step is asked for only while the outbound queue holds at most this much.
pub const OUTBOUND_LOW: usize = 256 * 1024;
/// How often a stream waiting for the outbound queue to drain looks again.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// `sync` requests queued behind a running one; more are answered `busy`.
const MAX_QUEUED_SYNCS: usize = 2;
/// Most ids in one `message:delivered`.
pub const MAX_RECEIPT_IDS: usize = 1000;
/// Rooms (chats) whose address one session keeps; the least recently used goes.
const MAX_ROOMS: usize = 256;
/// Chats this session was found not to be a member of, remembered for a while so a
/// frame naming one is refused without asking the database again.
const MAX_NOT_MEMBER: usize = 256;
const NOT_MEMBER_TTL: Duration = Duration::from_secs(60);

/// Bytes encoded for this session and not yet written to its socket. The transport
/// keeps it; the session reads it to pace what it streams. The transport closes a
/// connection whose queue passes its bound (the client is not reading).
#[derive(Clone, Default)]
pub struct Outbound(Arc<AtomicUsize>);

impl Outbound {
    pub fn set(&self, bytes: usize) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the transport reads off the socket for the session.
pub enum Inbound {
    /// One whole frame.
    Frame(ws::Message),
    /// A frame declared longer than `limits.ws_frame_bytes` but within the hard
    /// limit: its payload was skipped as it arrived, never buffered.
    TooLarge { declared: u64 },
    /// The input cannot go on (a frame declared beyond the hard limit, a protocol
    /// violation): the session says why and closes.
    Fatal(ws::ProtocolError),
}

/// The frames of one WebSocket, as the transport decodes them.
pub type InboundStream = Pin<Box<dyn Stream<Item = Inbound>>>;

/// A `sync` waiting for the one running before it.
struct QueuedSync {
    after: MessageId,
    after_change: Option<ChangeId>,
    reference: Option<String>,
}

/// A `sync` being streamed. Its frames form one block ending with its ack (clients
/// may rely on that): live messages arriving meanwhile are held and pushed after the
/// ack — all of them, those the sync also brought included, since a push is how a
/// client learns of a message as it happens (clients keep one copy per id).
struct SyncRun {
    reference: Option<String>,
    count: usize,
    last: MessageId,
    /// Replaying changes after this one (`None`: the client asked for messages only).
    after_change: Option<ChangeId>,
    /// Changes written so far, and the newest of them.
    changes: usize,
    held: Held,
}

/// What this session knows of its membership of a chat it has not routed to yet.
enum Membership {
    Member,
    NotMember(Instant),
}

/// Longest wait for the cluster to list a new session's user before its catch-up.
const LISTING_MAX: Duration = Duration::from_secs(2);

pub struct Session {
    id: SessionId,
    user: UserId,
    /// The sign-in this socket was opened with: revoking it closes the socket.
    auth: AuthSessionId,
    realtime: Realtime,
    handle: Option<SessionHandle>,
    registered: bool,
    last_heard: Instant,
    limiter: DefaultDirectRateLimiter,
    rooms: HashMap<ChatId, (Addr<Room>, Instant)>,
    /// Membership answers for chats first named by this client (see `route`).
    membership: HashMap<ChatId, Membership>,
    catch_up: CatchUp,
    /// The `sync` being streamed, if any, and those waiting behind it.
    sync_run: Option<SyncRun>,
    sync_queue: VecDeque<QueuedSync>,
    outbound: Outbound,
    /// The frames read off the socket, handed over by the transport.
    input: Option<InboundStream>,
    /// Store calls started for this client and not yet answered.
    pending: usize,
    /// A close asked for while `pending` > 0: done when the last answer is out.
    closing: Option<Close>,
    /// The newest change visible to the user when it connected, for `ready`.
    last_change: Option<ChangeId>,
}

impl Session {
    pub(crate) fn new(
        id: SessionId,
        user: UserId,
        auth: AuthSessionId,
        realtime: Realtime,
    ) -> Session {
        let s = &realtime.shared.settings;
        let per_sec = NonZeroU32::new(s.events_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(s.events_burst).unwrap_or(per_sec);
        Session {
            id,
            user,
            auth,
            limiter: RateLimiter::direct_with_clock(
                Quota::per_second(per_sec).allow_burst(burst),
                realtime.shared.clock.clone(),
            ),
            realtime,
            handle: None,
            registered: false,
            last_heard: Instant::now(),
            rooms: HashMap::new(),
            membership: HashMap::new(),
            catch_up: CatchUp::connecting(),
            sync_run: None,
            sync_queue: VecDeque::new(),
            outbound: Outbound::default(),
            input: None,
            pending: 0,
            closing: None,
            last_change: None,
        }
    }

    /// Reads its frames from `input` (the transport's decoder) instead of the
    /// context's own byte stream.
    pub fn with_input(mut self, input: InboundStream) -> Session {
        self.input = Some(input);
        self
    }

    /// The outbound queue's meter, for the transport to keep.
    pub fn outbound(&self) -> Outbound {
        self.outbound.clone()
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.realtime.shared
    }

    /// Runs `then` once the outbound queue, plus `just_wrote` bytes encoded in this
    /// turn and not yet handed to the transport, is at most [`OUTBOUND_LOW`]. A client
    /// that stops reading stalls here, holding no connection and no rows.
    fn when_drained(
        &mut self,
        just_wrote: usize,
        ctx: &mut ws::WebsocketContext<Self>,
        then: impl FnOnce(&mut Session, &mut ws::WebsocketContext<Session>) + 'static,
    ) {
        if self.outbound.get() + just_wrote <= OUTBOUND_LOW {
            then(self, ctx);
        } else {
            ctx.run_later(DRAIN_POLL, move |s, ctx| s.when_drained(0, ctx, then));
        }
    }

    fn my_handle(&self, ctx: &mut ws::WebsocketContext<Self>) -> SessionHandle {
        self.handle
            .clone()
            .unwrap_or_else(|| SessionHandle::new(self.id, self.user, ctx.address().recipient()))
    }

    fn send_error(ctx: &mut ws::WebsocketContext<Self>, err: &WireError, reference: Option<&str>) {
        ctx.text(protocol::encode_error(err, reference));
    }

    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let s = &self.shared().settings;
        if self.last_heard.elapsed() > s.client_timeout {
            tracing::debug!(session = %self.id, "heartbeat timed out");
            ctx.stop();
            return;
        }
        ctx.ping(b"");
        let idle = s.room_idle;
        self.rooms.retain(|_, (_, used)| used.elapsed() < idle);
    }

    /// Loads contacts, registers (now reachable), then — once the whole cluster
    /// routes this user's messages here — runs the catch-up.
    fn register(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let shared = self.shared().clone();
        let user = self.user;
        ctx.spawn(
            async move { shared.arrivals.contacts(user).await }
                .into_actor(self)
                .map(|contacts, session, ctx| {
                    let contacts = contacts.unwrap_or_else(|e| {
                        tracing::warn!(user = %session.user, error = %e.chain(), "loading contacts");
                        Vec::new()
                    });
                    let handle = session.my_handle(ctx);
                    let (listed, on_listed) = tokio::sync::oneshot::channel();
                    session.realtime.presence.do_send(SessionOpened {
                        handle,
                        contacts,
                        listed,
                    });
                    session.registered = true;
                    // Never wait for ever on a bus that is down: catch up anyway.
                    let wait = tokio::time::timeout(LISTING_MAX, on_listed);
                    ctx.spawn(
                        wait.into_actor(session)
                            .map(|_, session, ctx| session.catch_up_if_waiting(ctx)),
                    );
                }),
        );
    }

    /// Asked only once registered, so a message stored meanwhile is either found
    /// here or pushed live. Most connects have nothing waiting and page through
    /// nothing; on an error the catch-up runs anyway (and reports its own).
    fn catch_up_if_waiting(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let shared = self.shared().clone();
        let user = self.user;
        ctx.spawn(
            async move {
                futures_util::join!(
                    shared.arrivals.has_undelivered(user),
                    shared.arrivals.last_change(user)
                )
            }
            .into_actor(self)
            .map(|(waiting, last_change), session, ctx| {
                match last_change {
                    Ok(c) => session.last_change = Some(c),
                    Err(e) => {
                        tracing::warn!(user = %session.user, error = %e.chain(), "reading the last change")
                    }
                }
                if matches!(waiting, Ok(false)) {
                        session.finish_catch_up(ctx);
                    } else {
                        session.catch_up_page(MessageId(0), ctx);
                    }
                }),
        );
    }

    fn catch_up_page(&mut self, after: MessageId, ctx: &mut ws::WebsocketContext<Self>) {
        let store = self.shared().store.clone();
        let user = self.user;
        let everything = self.catch_up.everything();
        let rows = detached(async move {
            if everything {
                store.messages_after(user, after, STEP).await
            } else {
                store.undelivered(user, after, STEP).await
            }
        });
        ctx.spawn(rows.into_actor(self).map(move |page, session, ctx| {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    // The client still has `sync`; say so rather than stay silent.
                    tracing::warn!(user = %session.user, error = %e.chain(), "catch-up failed");
                    let err = WireError::new(
                        ErrorCode::Unavailable,
                        "could not load undelivered messages; send sync to retry",
                    );
                    Self::send_error(ctx, &err, None);
                    session.finish_catch_up(ctx);
                    return;
                }
            };
            let step = Step::write(&page, STEP, ctx);
            session
                .catch_up
                .sent(page[..step.sent].iter().map(|m| m.id));
            if step.more {
                let last = step.last.unwrap_or(after);
                session.when_drained(step.bytes, ctx, move |s, ctx| s.catch_up_page(last, ctx));
            } else {
                session.finish_catch_up(ctx);
            }
        }));
    }

    fn finish_catch_up(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        match self.catch_up.finish() {
            Finish::Fetch(next) => return self.catch_up_page(next.after, ctx),
            Finish::Done { release, ready } => {
                for d in release {
                    ctx.text(d.frame);
                }
                if let Some(pushed) = ready {
                    ctx.text(protocol::encode(
                        &ServerEvent::Ready {
                            user_id: self.user,
                            pushed,
                            last_change: self.last_change,
                        },
                        None,
                    ));
                    let session = self.my_handle(ctx);
                    self.realtime.calls.do_send(SessionReady { session });
                }
            }
        }
        self.next_sync(ctx);
    }

    /// Hands `request` to the chat's room. A full room mailbox pauses this session
    /// (no further frames are read) until there is space: a fast sender is slowed
    /// down, never answered "busy" or dropped.
    fn route(&mut self, chat: ChatId, request: RoomRequest, ctx: &mut ws::WebsocketContext<Self>) {
        let mut request = request;
        if let Some((addr, used)) = self.rooms.get_mut(&chat) {
            *used = Instant::now();
            let addr = addr.clone();
            match request.try_send(&addr) {
                Ok(()) => return,
                Err(SendError::Full(req)) => {
                    let reference = req.reference().map(str::to_owned);
                    ctx.wait(req.send(&addr).into_actor(self).map(move |res, _, ctx| {
                        if res.is_err() {
                            let err = WireError::new(
                                ErrorCode::Unavailable,
                                "the chat is not available; retry",
                            );
                            Self::send_error(ctx, &err, reference.as_deref());
                        }
                    }));
                    return;
                }
                Err(SendError::Closed(req)) => {
                    self.rooms.remove(&chat);
                    request = req;
                }
            }
        }
        match self.membership.get(&chat) {
            Some(Membership::Member) => self.open_room(chat, request, ctx),
            Some(Membership::NotMember(at)) if at.elapsed() < NOT_MEMBER_TTL => {
                self.refuse(request, not_a_member(), ctx)
            }
            _ => {
                // First time this session names the chat: ask the database (one
                // primary-key probe, in a task of its own) before any room is started,
                // so ids of chats that do not exist, or are someone else's, start
                // nothing and are remembered. Nothing else is read meanwhile, so the
                // order of this session's requests is kept.
                let store = self.shared().store.clone();
                let user = self.user;
                let probe = detached(async move { store.is_member(user, chat).await });
                ctx.wait(
                    probe
                        .into_actor(self)
                        .map(move |res, session, ctx| match res {
                            Ok(true) => {
                                session.membership.insert(chat, Membership::Member);
                                session.open_room(chat, request, ctx);
                            }
                            Ok(false) => {
                                session.remember_not_member(chat);
                                session.refuse(request, not_a_member(), ctx);
                            }
                            Err(e) => session.refuse(request, store_error(&e), ctx),
                        }),
                );
            }
        }
    }

    /// Resolves the room of a chat this user belongs to (starting it if needed) and
    /// hands it `request`; nothing else is read meanwhile.
    fn open_room(
        &mut self,
        chat: ChatId,
        request: RoomRequest,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let rooms = self.realtime.rooms.clone();
        ctx.wait(
            async move { rooms.send(Route { chat, request }).await }
                .into_actor(self)
                .map(move |addr, session, _| {
                    if let Ok(Some(addr)) = addr {
                        session.keep_room(chat, addr);
                    }
                }),
        );
    }

    /// Remembers a room's address, forgetting the least recently used beyond
    /// [`MAX_ROOMS`] (it is asked for again if needed).
    fn keep_room(&mut self, chat: ChatId, addr: Addr<Room>) {
        if self.rooms.len() >= MAX_ROOMS && !self.rooms.contains_key(&chat) {
            let oldest = self
                .rooms
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(c, _)| *c);
            if let Some(c) = oldest {
                self.rooms.remove(&c);
                self.membership.remove(&c);
            }
        }
        self.rooms.insert(chat, (addr, Instant::now()));
    }

    fn remember_not_member(&mut self, chat: ChatId) {
        let refused = self
            .membership
            .values()
            .filter(|m| matches!(m, Membership::NotMember(_)))
            .count();
        if refused >= MAX_NOT_MEMBER {
            self.membership
                .retain(|_, m| matches!(m, Membership::Member));
        }
        self.membership
            .insert(chat, Membership::NotMember(Instant::now()));
    }

    /// Answers a request that never reached a room.
    fn refuse(
        &mut self,
        request: RoomRequest,
        err: WireError,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        Self::send_error(ctx, &err, request.reference());
        if matches!(request, RoomRequest::Post(_)) {
            self.shared().post_answered();
        }
    }

    fn dispatch(
        &mut self,
        event: ClientEvent,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        match event {
            ClientEvent::Ping => ctx.text(protocol::encode(
                &ServerEvent::Pong {},
                reference.as_deref(),
            )),
            ClientEvent::ClientState(state) => {
                let handle = self.my_handle(ctx);
                if handle.set_visible(state.visible) {
                    // Only the task writing the cluster's marks is told; it decides
                    // (coalesced) whether this changed the user's state on this node.
                    self.shared().visibility.touch(self.user);
                }
                if reference.is_some() {
                    ctx.text(protocol::encode(
                        &ServerEvent::Ack(Ack::Empty {}),
                        reference.as_deref(),
                    ));
                }
            }
            ClientEvent::MessageSend(message) => {
                let chat = message.chat_id;
                self.shared()
                    .in_flight
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                let post = Post {
                    session: self.my_handle(ctx),
                    reference,
                    message,
                    received: Instant::now(),
                };
                self.route(chat, RoomRequest::Post(post), ctx);
            }
            ClientEvent::Typing(typing) => {
                let signal = TypingSignal {
                    session: self.my_handle(ctx),
                    reference,
                    typing,
                };
                self.route(typing.chat_id, RoomRequest::Typing(signal), ctx);
            }
            ClientEvent::MessageDelivered(d) => self.delivered(d.ids(), reference, ctx),
            ClientEvent::MessageRead(r) => self.read(r.chat_id, r.message_id, reference, ctx),
            ClientEvent::Sync(s) => self.sync(s.after_id, s.after_change, reference, ctx),
            ClientEvent::MessageEdit(e) => self.change(ChangeRequest::Edit(e), reference, ctx),
            ClientEvent::MessageDelete(d) => self.change(ChangeRequest::Delete(d), reference, ctx),
            ClientEvent::MessageReact(r) => self.change(ChangeRequest::React(r), reference, ctx),
            ClientEvent::CallInitiate(e) => self.call(CallEvent::Initiate(e), reference, ctx),
            ClientEvent::CallAnswer(e) => self.call(CallEvent::Answer(e), reference, ctx),
            ClientEvent::CallReject(e) => self.call(CallEvent::Reject(e), reference, ctx),
            ClientEvent::CallIceCandidate(e) => self.call(CallEvent::Ice(e), reference, ctx),
            ClientEvent::CallEnd(e) => self.call(CallEvent::End(e), reference, ctx),
        }
    }

    fn change(
        &mut self,
        request: ChangeRequest,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let me = self.my_handle(ctx);
        changes::spawn(self.shared().clone(), me, request, reference);
    }

    fn call(
        &mut self,
        event: CallEvent,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let handle = self.my_handle(ctx);
        self.realtime.calls.do_send(FromSession {
            session: handle,
            reference,
            event,
        });
    }

    fn delivered(
        &mut self,
        ids: Vec<MessageId>,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if ids.is_empty() || ids.len() > MAX_RECEIPT_IDS {
            let err = WireError::new(
                ErrorCode::InvalidData,
                format!("message:delivered takes 1 to {MAX_RECEIPT_IDS} ids"),
            );
            return Self::send_error(ctx, &err, reference.as_deref());
        }
        // Detached from this actor: the receipts are stored and their senders told
        // even if this client closes right after sending them. Counted in flight so a
        // graceful shutdown waits for it.
        let shared = self.shared().clone();
        let me = self.my_handle(ctx);
        shared
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        actix::spawn(async move {
            match shared.receipts.mark(me.user, ids).await {
                Ok(receipts) => {
                    let at = Timestamp::now();
                    let mut count = 0;
                    for r in &receipts {
                        count += r.message_ids.len();
                        let d = Deliver::frame(protocol::encode(
                            &ServerEvent::MessageDelivered {
                                chat_id: r.chat_id,
                                message_ids: &r.message_ids,
                                user_id: me.user,
                                at,
                            },
                            None,
                        ));
                        shared.bus.to_user(r.sender_id, &d, None);
                    }
                    shared.metrics.receipts(count);
                    if reference.is_some() {
                        me.deliver(Deliver::frame(protocol::encode(
                            &ServerEvent::Ack(Ack::Delivered { count }),
                            reference.as_deref(),
                        )));
                    }
                }
                Err(e) => me.deliver(Deliver::frame(protocol::encode_error(
                    &store_error(&e),
                    reference.as_deref(),
                ))),
            }
            shared.post_answered();
        });
    }

    fn read(
        &mut self,
        chat: ChatId,
        up_to: MessageId,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        // Detached, like receipts: a read mark sent just before closing still lands.
        let shared = self.shared().clone();
        let me = self.my_handle(ctx);
        shared
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        actix::spawn(async move {
            let result = match shared.store.mark_read(me.user, chat, up_to).await {
                Ok(ReadOutcome::NotMember) => Err(WireError::new(
                    ErrorCode::Forbidden,
                    "you are not a member of this chat",
                )),
                Ok(outcome) => {
                    if let ReadOutcome::Advanced { up_to, notify } = outcome {
                        let d = Deliver::frame(protocol::encode(
                            &ServerEvent::MessageRead {
                                chat_id: chat,
                                message_id: up_to,
                                user_id: me.user,
                                at: Timestamp::now(),
                            },
                            None,
                        ));
                        shared.bus.to_users(&notify, &d, None);
                        // The reader's other devices learn it too (their unread count).
                        shared.bus.to_user(me.user, &d, Some(&me));
                    }
                    Ok(())
                }
                Err(e) => Err(store_error(&e)),
            };
            match result {
                Ok(()) if reference.is_none() => {}
                Ok(()) => me.deliver(Deliver::frame(protocol::encode(
                    &ServerEvent::Ack(Ack::Empty {}),
                    reference.as_deref(),
                ))),
                Err(e) => me.deliver(Deliver::frame(protocol::encode_error(
                    &e,
                    reference.as_deref(),
                ))),
            }
            shared.post_answered();
        });
    }

    /// `sync`: one streams at a time per session; a few more wait their turn, and
    /// beyond that the client is told `busy` (it retries later).
    fn sync(
        &mut self,
        after: MessageId,
        after_change: Option<ChangeId>,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let busy = self.sync_run.is_some() || self.catch_up.is_fetching();
        if !busy {
            return self.start_sync(after, after_change, reference, ctx);
        }
        if self.sync_queue.len() >= MAX_QUEUED_SYNCS {
            let err = WireError::new(
                ErrorCode::Busy,
                "a sync is already running for this connection; wait for its ack",
            );
            return Self::send_error(ctx, &err, reference.as_deref());
        }
        self.pending += 1;
        self.sync_queue.push_back(QueuedSync {
            after,
            after_change,
            reference,
        });
    }

    fn start_sync(
        &mut self,
        after: MessageId,
        after_change: Option<ChangeId>,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.pending += 1;
        self.sync_run = Some(SyncRun {
            reference,
            count: 0,
            last: after,
            after_change,
            changes: 0,
            held: Held::default(),
        });
        self.sync_step(ctx);
    }

    /// Starts the next queued `sync`, if nothing else streams.
    fn next_sync(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.sync_run.is_some() || self.catch_up.is_fetching() {
            return;
        }
        if let Some(q) = self.sync_queue.pop_front() {
            self.pending = self.pending.saturating_sub(1);
            self.start_sync(q.after, q.after_change, q.reference, ctx);
        }
    }

    fn sync_step(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(run) = self.sync_run.as_ref() else {
            return;
        };
        let store = self.shared().store.clone();
        let user = self.user;
        let after = run.last;
        let limit = STEP.min(PAGE - run.count as u32);
        let rows = detached(async move { store.messages_after(user, after, limit).await });
        ctx.spawn(rows.into_actor(self).map(move |res, session, ctx| {
            let Some(mut run) = session.sync_run.take() else {
                return;
            };
            match res {
                Ok(page) => {
                    let step = Step::write(&page, limit, ctx);
                    run.count += step.sent;
                    run.last = step.last.unwrap_or(run.last);
                    if step.more && run.count < PAGE as usize {
                        session.sync_run = Some(run);
                        return session.when_drained(step.bytes, ctx, |s, ctx| s.sync_step(ctx));
                    }
                    if step.more {
                        // A full page of messages: the changes come with a later call.
                        return session.finish_sync(run, true, ctx);
                    }
                    session.sync_run = Some(run);
                    session.when_drained(step.bytes, ctx, |s, ctx| s.sync_changes_step(ctx));
                }
                Err(e) => {
                    Self::send_error(ctx, &store_error(&e), run.reference.as_deref());
                    session.end_sync(run, ctx);
                }
            }
        }));
    }

    /// The second half of a `sync`: the changes after `after_change`, a step at a
    /// time; without one, only the newest change id (for the ack).
    fn sync_changes_step(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(run) = self.sync_run.as_ref() else {
            return;
        };
        let store = self.shared().store.clone();
        let user = self.user;
        let Some(after) = run.after_change else {
            let newest = detached(async move { store.last_changes(&[user]).await });
            ctx.spawn(newest.into_actor(self).map(|res, session, ctx| {
                let Some(mut run) = session.sync_run.take() else {
                    return;
                };
                match res {
                    Ok(newest) => {
                        run.after_change = newest.first().copied();
                        session.finish_sync(run, false, ctx);
                    }
                    Err(e) => {
                        Self::send_error(ctx, &store_error(&e), run.reference.as_deref());
                        session.end_sync(run, ctx);
                    }
                }
            }));
            return;
        };
        let limit = STEP.min(PAGE - run.changes as u32);
        let rows = detached(async move { store.changes_after(user, after, limit).await });
        ctx.spawn(rows.into_actor(self).map(move |res, session, ctx| {
            let Some(mut run) = session.sync_run.take() else {
                return;
            };
            match res {
                Ok(changes) => {
                    let mut bytes = 0;
                    for c in &changes {
                        let frame = changes::change_frame(c);
                        bytes += frame.len();
                        ctx.text(frame);
                        run.after_change = Some(c.id);
                    }
                    run.changes += changes.len();
                    let more = changes.len() as u32 >= limit;
                    if more && run.changes < PAGE as usize {
                        session.sync_run = Some(run);
                        return session.when_drained(bytes, ctx, |s, ctx| s.sync_changes_step(ctx));
                    }
                    session.finish_sync(run, more, ctx);
                }
                Err(e) => {
                    Self::send_error(ctx, &store_error(&e), run.reference.as_deref());
                    session.end_sync(run, ctx);
                }
            }
        }));
    }

    /// Acknowledges a `sync` and ends it.
    fn finish_sync(&mut self, run: SyncRun, has_more: bool, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.text(protocol::encode(
            &ServerEvent::Ack(Ack::Sync {
                count: run.count,
                last_id: (run.count > 0).then_some(run.last),
                has_more,
                changes: run.changes,
                last_change: run.after_change,
            }),
            run.reference.as_deref(),
        ));
        self.end_sync(run, ctx);
    }

    /// Releases what a `sync` held and starts the next one.
    fn end_sync(&mut self, run: SyncRun, ctx: &mut ws::WebsocketContext<Self>) {
        for d in run.held.into_frames() {
            ctx.text(d.frame);
        }
        self.answered(ctx);
        self.next_sync(ctx);
    }

    /// A store call's answer went out; finish a close that was waiting for it.
    fn answered(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 {
            if let Some(c) = self.closing.take() {
                Self::close_now(c, ctx);
            }
        }
    }

    fn close_now(c: Close, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(c.code),
            description: Some(c.reason),
        }));
        ctx.stop();
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let limit = self.shared().settings.ws_frame_bytes;
        if text.len() > limit {
            let err = WireError::new(
                ErrorCode::TooLarge,
                format!("frames are limited to {limit} bytes"),
            );
            return Self::send_error(ctx, &err, None);
        }
        let decoded = protocol::decode(text);
        let reference = decoded.reference;
        if self
            .shared()
            .draining
            .load(std::sync::atomic::Ordering::Acquire)
        {
            let err = WireError::new(
                ErrorCode::ShuttingDown,
                "the server is restarting; reconnect and retry",
            );
            return Self::send_error(ctx, &err, reference.as_deref());
        }
        if self.limiter.check().is_err() {
            let err = WireError::new(ErrorCode::RateLimited, "too many events; slow down");
            return Self::send_error(ctx, &err, reference.as_deref());
        }
        match decoded.event {
            Ok(event) => self.dispatch(event, reference, ctx),
            Err(e) => Self::send_error(ctx, &e, reference.as_deref()),
        }
    }
}

fn store_error(e: &StoreError) -> WireError {
    match e {
        StoreError::Unavailable { .. } => {
            WireError::new(ErrorCode::Unavailable, "storage is not answering; retry")
        }
        StoreError::Other { .. } => {
            tracing::error!(error = %e.chain(), "store call failed");
            WireError::new(ErrorCode::Internal, "internal error")
        }
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SESSION_MAILBOX);
        if let Some(input) = self.input.take() {
            ctx.add_stream(input);
        }
        self.handle = Some(SessionHandle::new(
            self.id,
            self.user,
            ctx.address().recipient(),
        ));
        self.shared().metrics.session_opened();
        self.shared()
            .sessions
            .insert(self.id, ctx.address().recipient());
        *self.shared().per_user.entry(self.user).or_insert(0) += 1;
        self.shared()
            .by_auth
            .entry(self.auth)
            .or_default()
            .push(self.id);
        let every = self.shared().settings.ping_interval;
        ctx.run_interval(every, |s, ctx| s.heartbeat(ctx));
        self.register(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if self.shared().sessions.remove(&self.id).is_some() {
            let user = self.user;
            let mut emptied = false;
            if let Some(mut n) = self.shared().per_user.get_mut(&user) {
                *n = n.saturating_sub(1);
                emptied = *n == 0;
            }
            if emptied {
                self.shared().per_user.remove_if(&user, |_, n| *n == 0);
            }
            let id = self.id;
            if let Some(mut open) = self.shared().by_auth.get_mut(&self.auth) {
                open.retain(|s| *s != id);
            }
            self.shared()
                .by_auth
                .remove_if(&self.auth, |_, open| open.is_empty());
        }
        if std::mem::take(&mut self.registered) {
            self.realtime.presence.do_send(SessionClosed {
                user: self.user,
                session: self.id,
            });
        }
        self.realtime.calls.do_send(SessionGone {
            user: self.user,
            session: self.id,
            node: None,
        });
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.shared().metrics.session_closed();
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, d: Deliver, ctx: &mut Self::Context) {
        if self.handle.as_ref().is_some_and(SessionHandle::overflowed) {
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Again,
                description: Some("too far behind; reconnect and sync".into()),
            }));
            ctx.stop();
            return;
        }
        if d.message.is_none() {
            return ctx.text(d.frame);
        }
        let held = match (self.catch_up.held(), self.sync_run.as_mut()) {
            (Some(held), _) => held,
            (None, Some(run)) => &mut run.held,
            (None, None) => return ctx.text(d.frame),
        };
        if held
            .push(d, self.realtime.shared.settings.outbound_bytes)
            .is_err()
        {
            // A stream that cannot finish (its client is not reading) would hold
            // live messages without end: close instead; the client syncs.
            Self::close_now(
                Close {
                    code: TooFarBehind::CODE,
                    reason: TooFarBehind::REASON.into(),
                },
                ctx,
            );
        }
    }
}

impl Handler<Hold> for Session {
    type Result = ();

    fn handle(&mut self, h: Hold, ctx: &mut Self::Context) {
        if !self.registered {
            return; // its own catch-up, still to come, covers it
        }
        if self.catch_up.hold(h.after) {
            // Never hold for ever: if the Resync does not come, replay anyway.
            ctx.run_later(HOLD_MAX, move |s, ctx| {
                if s.catch_up.hold_expired() {
                    <Session as Handler<Resync>>::handle(s, Resync { after: h.after }, ctx);
                }
            });
        }
    }
}

impl Handler<Resync> for Session {
    type Result = ();

    fn handle(&mut self, r: Resync, ctx: &mut Self::Context) {
        if !self.registered {
            return;
        }
        if let Some(fetch) = self.catch_up.resync(r.after) {
            self.catch_up_page(fetch.after, ctx);
        }
    }
}

/// What the process asks of every session, dispatched to the handlers above.
impl Handler<Control> for Session {
    type Result = ();

    fn handle(&mut self, c: Control, ctx: &mut Self::Context) {
        match c {
            Control::Close(c) => <Session as Handler<Close>>::handle(self, c, ctx),
            Control::Hold(h) => <Session as Handler<Hold>>::handle(self, h, ctx),
            Control::Resync(r) => <Session as Handler<Resync>>::handle(self, r, ctx),
        }
    }
}

impl Handler<Close> for Session {
    type Result = ();

    fn handle(&mut self, c: Close, ctx: &mut Self::Context) {
        if self.pending == 0 {
            Self::close_now(c, ctx);
        } else {
            self.closing = Some(c);
        }
    }
}

impl Session {
    fn on_frame(&mut self, msg: ws::Message, ctx: &mut ws::WebsocketContext<Self>) {
        self.last_heard = Instant::now();
        match msg {
            ws::Message::Text(text) => self.on_text(&text, ctx),
            ws::Message::Binary(_) => Self::send_error(
                ctx,
                &WireError::new(ErrorCode::BinaryNotSupported, "send JSON text frames"),
                None,
            ),
            ws::Message::Continuation(_) => Self::send_error(
                ctx,
                &WireError::new(ErrorCode::BadFrame, "fragmented frames are not supported"),
                None,
            ),
            ws::Message::Ping(p) => ctx.pong(&p),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
        }
    }

    /// The codec cannot resynchronise after a bad frame: say why, then close.
    fn on_fatal(&mut self, e: ws::ProtocolError, ctx: &mut ws::WebsocketContext<Self>) {
        let (code, close) = match e {
            ws::ProtocolError::Overflow => (ErrorCode::TooLarge, ws::CloseCode::Size),
            _ => (ErrorCode::BadFrame, ws::CloseCode::Protocol),
        };
        Self::send_error(ctx, &WireError::new(code, e.to_string()), None);
        ctx.close(Some(close.into()));
        ctx.stop();
    }
}

impl StreamHandler<Inbound> for Session {
    fn handle(&mut self, item: Inbound, ctx: &mut Self::Context) {
        match item {
            Inbound::Frame(msg) => self.on_frame(msg, ctx),
            Inbound::TooLarge { declared } => {
                self.last_heard = Instant::now();
                let limit = self.shared().settings.ws_frame_bytes;
                let err = WireError::new(
                    ErrorCode::TooLarge,
                    format!("frames are limited to {limit} bytes; this one declared {declared}"),
                );
                Self::send_error(ctx, &err, None);
            }
            Inbound::Fatal(e) => self.on_fatal(e, ctx),
        }
    }
}

/// The context's own byte stream (unused when the transport hands over an
/// [`InboundStream`], which is what `parley` does).
impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(msg) => self.on_frame(msg, ctx),
            Err(e) => self.on_fatal(e, ctx),
        }
    }
}

/// One step of a stream of messages written to the client.
struct Step {
    /// Messages written (a prefix of the rows).
    sent: usize,
    bytes: usize,
    last: Option<MessageId>,
    /// Whether more may follow: the query was full, or the byte budget cut it.
    more: bool,
}

impl Step {
    /// Writes `rows` (at most [`STEP_BYTES`] of frames, at least one) as
    /// `message:received`; `asked` is how many rows the query asked for.
    fn write(rows: &[Message], asked: u32, ctx: &mut ws::WebsocketContext<Session>) -> Step {
        let mut step = Step {
            sent: 0,
            bytes: 0,
            last: None,
            more: rows.len() as u32 >= asked,
        };
        for m in rows {
            if step.bytes >= STEP_BYTES {
                step.more = true;
                break;
            }
            let frame = protocol::encode(&ServerEvent::MessageReceived(m), None);
            step.bytes += frame.len();
            ctx.text(frame);
            step.sent += 1;
            step.last = Some(m.id);
        }
        step
    }
}

/// Runs store work in a task of its own: it takes its connection, reads its rows and
/// returns the connection whatever happens to the session that asked (which only
/// awaits the answer). A session that is not polled — its client stopped reading —
/// so never holds a pooled connection.
fn detached<T: 'static>(
    work: impl std::future::Future<Output = Result<T, StoreError>> + 'static,
) -> impl std::future::Future<Output = Result<T, StoreError>> {
    let task = actix::spawn(work);
    async move {
        task.await
            .unwrap_or_else(|e| Err(StoreError::other_from("the store task failed", e)))
    }
}

fn not_a_member() -> WireError {
    // The same answer whether the chat exists or not: outsiders cannot probe ids.
    WireError::new(ErrorCode::Forbidden, "you are not a member of this chat")
}

impl Realtime {
    /// A new session actor for `user`, signed in as `auth`, to be started by the
    /// WebSocket upgrade.
    pub fn session(&self, user: UserId, auth: AuthSessionId) -> Session {
        let id = SessionId(
            self.next_session
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        Session::new(id, user, auth, self.clone())
    }
}

#[cfg(test)]
mod tests {
    use actix_codec::Decoder;
    use actix_web::error::PayloadError;
    use actix_web::web::Bytes;
    use futures_util::StreamExt;
    use serde_json::{json, Value};
    use tokio::sync::mpsc;

    use super::*;
    use crate::cluster::Local;
    use crate::store::ChatKind;
    use crate::testing::{self, MemoryStore, Op, PATIENCE};

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CAT: UserId = UserId(3);
    const CHAT: ChatId = ChatId(10);
    /// A chat ann is not a member of.
    const THEIRS: ChatId = ChatId(20);

    /// One node over memory: a chat of ann and bob, and one of bob and cat.
    fn node() -> (Arc<MemoryStore>, Realtime) {
        let store = MemoryStore::new();
        store.add_chat(CHAT, ChatKind::Direct, &[ANN, BOB]);
        store.add_chat(THEIRS, ChatKind::Direct, &[BOB, CAT]);
        let realtime =
            Realtime::start_on(store.clone(), testing::settings(), Arc::new(Local::new()));
        (store, realtime)
    }

    /// A real session driven as the transport drives it: frames go in as
    /// [`Inbound`], and what the context encodes comes out as bytes on the wire,
    /// decoded here as a client would.
    struct Client {
        input: mpsc::UnboundedSender<Inbound>,
        frames: mpsc::UnboundedReceiver<Value>,
    }

    /// Opens a session of `user` on `realtime`; call inside the actix system.
    fn connect(realtime: &Realtime, user: UserId) -> Client {
        let (input, inbound) = mpsc::unbounded_channel();
        let inbound = futures_util::stream::unfold(inbound, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let session = realtime
            .session(user, AuthSessionId(user.0))
            .with_input(Box::pin(inbound));
        let unused = futures_util::stream::pending::<Result<Bytes, PayloadError>>();
        let mut output = Box::pin(ws::WebsocketContext::with_codec(
            session,
            unused,
            actix_http::ws::Codec::new(),
        ));
        let (out, frames) = mpsc::unbounded_channel();
        actix::spawn(async move {
            // The client's side of the codec: server frames are unmasked.
            let mut codec = actix_http::ws::Codec::new().client_mode();
            let mut wire = actix_web::web::BytesMut::new();
            while let Some(Ok(chunk)) = output.next().await {
                wire.extend_from_slice(&chunk);
                while let Some(frame) = codec.decode(&mut wire).expect("a valid server frame") {
                    if let actix_http::ws::Frame::Text(payload) = frame {
                        let json = serde_json::from_slice(&payload).expect("a JSON text frame");
                        if out.send(json).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Client { input, frames }
    }

    impl Client {
        fn send(&self, frame: Value) {
            self.send_text(&frame.to_string());
        }

        fn send_text(&self, text: &str) {
            let text = bytestring::ByteString::from(text.to_owned());
            self.input
                .send(Inbound::Frame(ws::Message::Text(text)))
                .expect("the session reads its input");
        }

        /// The next frame other than presence news (whose timing depends on who
        /// connected when, not on the case under test).
        async fn next(&mut self) -> Value {
            loop {
                let frame = tokio::time::timeout(PATIENCE, self.frames.recv())
                    .await
                    .expect("a frame in time")
                    .expect("the session is open");
                match frame["event"].as_str() {
                    Some("user:online" | "user:offline") => {}
                    _ => return frame,
                }
            }
        }

        /// The next frame, which must be `event`.
        async fn expect(&mut self, event: &str) -> Value {
            let frame = self.next().await;
            assert_eq!(frame["event"], event, "{frame}");
            frame
        }

        /// Waits for `ready`, returning how many messages the catch-up pushed.
        async fn ready(&mut self, user: UserId) -> Vec<Value> {
            let mut pushed = Vec::new();
            loop {
                let frame = self.next().await;
                match frame["event"].as_str() {
                    Some("message:received") => pushed.push(frame),
                    Some("ready") => {
                        assert_eq!(frame["data"]["userId"], json!(user), "{frame}");
                        assert_eq!(frame["data"]["pushed"], json!(pushed.len()), "{frame}");
                        return pushed;
                    }
                    _ => panic!("before ready: {frame}"),
                }
            }
        }
    }

    fn error_code(frame: &Value) -> &str {
        assert_eq!(frame["event"], "error", "{frame}");
        frame["data"]["code"].as_str().unwrap_or_default()
    }

    #[actix::test]
    async fn a_message_sent_is_acked_with_the_stored_message_and_reaches_the_other_member() {
        let (store, realtime) = node();
        let mut ann = connect(&realtime, ANN);
        let mut bob = connect(&realtime, BOB);
        assert!(ann.ready(ANN).await.is_empty());
        assert!(bob.ready(BOB).await.is_empty());

        ann.send(json!({"event": "message:send", "ref": "1",
            "data": {"chatId": CHAT, "clientId": "a1", "kind": "text", "content": "hi"}}));

        let ack = ann.expect("ack").await;
        assert_eq!(ack["ref"], "1");
        let stored = store.messages();
        assert_eq!(stored.len(), 1, "stored once");
        assert_eq!(ack["data"]["id"], json!(stored[0].id), "{ack}");
        assert_eq!(ack["data"]["chatId"], json!(CHAT), "{ack}");
        assert_eq!(ack["data"]["content"], "hi");
        let received = bob.expect("message:received").await;
        assert_eq!(received["data"]["id"], json!(stored[0].id), "{received}");
        assert_eq!(received["data"]["content"], "hi");
        assert_eq!(received["data"]["senderId"], json!(ANN), "{received}");
        assert_eq!(realtime.metrics().rooms_open(), 1);
    }

    #[actix::test]
    async fn a_frame_for_a_chat_of_others_is_forbidden_and_starts_no_room() {
        let (store, realtime) = node();
        let mut ann = connect(&realtime, ANN);
        ann.ready(ANN).await;

        ann.send(json!({"event": "message:send", "ref": "1",
            "data": {"chatId": THEIRS, "clientId": "a1", "kind": "text", "content": "hi"}}));
        let refused = ann.next().await;
        assert_eq!(error_code(&refused), "forbidden");
        assert_eq!(refused["ref"], "1");
        // The same answer, now without asking the store again.
        ann.send(
            json!({"event": "typing", "ref": "2", "data": {"chatId": THEIRS, "active": true}}),
        );
        let again = ann.next().await;
        assert_eq!(error_code(&again), "forbidden");
        assert_eq!(again["ref"], "2");

        assert_eq!(store.calls(Op::IsMember), 1);
        assert_eq!(store.calls(Op::InsertMessages), 0);
        assert!(store.messages().is_empty());
        assert_eq!(realtime.metrics().rooms_open(), 0, "no room started");
        assert_eq!(realtime.in_flight(), 0, "the refused send is answered");
    }

    #[actix::test]
    async fn malformed_json_is_a_bad_frame_and_the_session_goes_on() {
        let (store, realtime) = node();
        let mut ann = connect(&realtime, ANN);
        ann.ready(ANN).await;

        ann.send_text("{\"event\": \"message:send\", \"data\": {");
        assert_eq!(error_code(&ann.next().await), "bad_frame");

        ann.send(json!({"event": "ping", "ref": "p"}));
        let pong = ann.expect("pong").await;
        assert_eq!(pong["ref"], "p");
        ann.send(json!({"event": "message:send", "ref": "1",
            "data": {"chatId": CHAT, "clientId": "a1", "kind": "text", "content": "still here"}}));
        let ack = ann.expect("ack").await;
        assert_eq!(ack["data"]["content"], "still here");
        assert_eq!(store.messages().len(), 1);
    }

    #[actix::test]
    async fn sync_returns_the_messages_after_its_id_then_its_ack() {
        let (store, realtime) = node();
        let seeded: Vec<Message> = (0..4)
            .map(|i| store.seed(CHAT, BOB, &format!("m{i}")))
            .collect();
        // Someone else's chat: never in ann's answers.
        store.seed(THEIRS, BOB, "not for ann");
        let mut ann = connect(&realtime, ANN);
        let pushed = ann.ready(ANN).await;
        let ids = |frames: &[Value]| {
            frames
                .iter()
                .map(|f| f["data"]["id"].clone())
                .collect::<Vec<_>>()
        };
        let all: Vec<Value> = seeded.iter().map(|m| json!(m.id)).collect();
        assert_eq!(ids(&pushed), all, "the catch-up pushes the undelivered");

        ann.send(json!({"event": "sync", "ref": "s", "data": {"afterId": seeded[1].id}}));
        let mut answered = Vec::new();
        let ack = loop {
            let frame = ann.next().await;
            match frame["event"].as_str() {
                Some("message:received") => answered.push(frame),
                _ => break frame,
            }
        };
        assert_eq!(ids(&answered), all[2..].to_vec());
        assert_eq!(answered[0]["data"]["content"], "m2");
        assert_eq!(ack["event"], "ack", "{ack}");
        assert_eq!(ack["ref"], "s");
        // Without `afterChange` no change is replayed; `lastChange` says where to start.
        assert_eq!(
            ack["data"],
            json!({"count": 2, "lastId": seeded[3].id, "hasMore": false, "changes": 0, "lastChange": 0})
        );

        // Nothing after the newest: an empty block, still acked.
        ann.send(json!({"event": "sync", "ref": "t", "data": {"afterId": seeded[3].id}}));
        let ack = ann.expect("ack").await;
        assert_eq!(ack["ref"], "t");
        assert_eq!(ack["data"]["count"], 0);
        assert_eq!(ack["data"]["hasMore"], false);
    }

    /// Waits until nothing is in flight (a change task counts until just after its
    /// answer is queued).
    async fn all_answered(realtime: &Realtime) {
        let deadline = Instant::now() + PATIENCE;
        while realtime.in_flight() != 0 {
            assert!(Instant::now() < deadline, "requests still in flight");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends `frame` and returns the answer carrying its `ref`.
    async fn ask(client: &mut Client, frame: Value) -> Value {
        let reference = frame["ref"].clone();
        client.send(frame);
        loop {
            let f = client.next().await;
            if f["ref"] == reference {
                return f;
            }
        }
    }

    #[actix::test]
    async fn edits_reactions_and_deletes_reach_the_others_and_a_sync_replays_them_in_order() {
        let (store, realtime) = node();
        let mut ann = connect(&realtime, ANN);
        let mut bob = connect(&realtime, BOB);
        ann.ready(ANN).await;
        bob.ready(BOB).await;

        let sent = ask(
            &mut ann,
            json!({"event": "message:send", "ref": "1",
            "data": {"chatId": CHAT, "clientId": "a1", "kind": "text", "content": "helo"}}),
        )
        .await;
        let id = sent["data"]["id"].clone();
        assert_eq!(sent["data"]["editedAt"], Value::Null, "{sent}");
        assert_eq!(sent["data"]["reactions"], json!([]), "{sent}");
        bob.expect("message:received").await;

        let edited = ask(
            &mut ann,
            json!({"event": "message:edit", "ref": "2",
            "data": {"messageId": id, "content": "hello"}}),
        )
        .await;
        assert_eq!(edited["event"], "ack", "{edited}");
        assert_eq!(edited["data"]["message"]["content"], "hello");
        assert!(
            edited["data"]["message"]["editedAt"].is_string(),
            "{edited}"
        );
        assert_eq!(edited["data"]["changeId"], 1);
        let seen = bob.expect("message:edited").await;
        assert_eq!(seen["data"]["message"]["content"], "hello");
        assert_eq!(seen["data"]["changeId"], 1);

        let reacted = ask(
            &mut bob,
            json!({"event": "message:react", "ref": "3",
            "data": {"messageId": id, "emoji": "👍🏽", "active": true}}),
        )
        .await;
        assert_eq!(reacted["data"], json!({"changeId": 2}), "{reacted}");
        let seen = ann.expect("message:reaction").await;
        assert_eq!(
            seen["data"],
            json!({"chatId": CHAT, "messageId": id, "userId": BOB, "emoji": "👍🏽",
                "active": true, "count": 1, "changeId": 2})
        );
        // The same reaction again changes nothing and tells nobody.
        let again = ask(
            &mut bob,
            json!({"event": "message:react", "ref": "4",
            "data": {"messageId": id, "emoji": "👍🏽", "active": true}}),
        )
        .await;
        assert_eq!(again["data"], json!({"changeId": null}), "{again}");

        let deleted = ask(
            &mut ann,
            json!({"event": "message:delete", "ref": "5",
            "data": {"messageId": id}}),
        )
        .await;
        assert_eq!(deleted["data"], json!({"changeId": 3}), "{deleted}");
        let seen = bob.expect("message:deleted").await;
        assert_eq!(
            seen["data"],
            json!({"chatId": CHAT, "messageId": id, "changeId": 3})
        );
        assert!(store.messages()[0].deleted);

        // Bob's other device, offline all along, converges with one sync.
        let mut phone = connect(&realtime, BOB);
        let ready = loop {
            let f = phone.next().await;
            if f["event"] == "ready" {
                break f;
            }
        };
        assert_eq!(ready["data"]["lastChange"], 3, "{ready}");
        phone.send(json!({"event": "sync", "ref": "s",
            "data": {"afterId": 0, "afterChange": 0}}));
        let mut frames = Vec::new();
        let ack = loop {
            let f = phone.next().await;
            if f["event"] == "ack" {
                break f;
            }
            frames.push(f);
        };
        let events: Vec<&str> = frames
            .iter()
            .map(|f| f["event"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            events,
            [
                "message:received",
                "message:edited",
                "message:reaction",
                "message:deleted"
            ]
        );
        // Read now, the message is deleted: only what a deleted message shows.
        let read = &frames[0]["data"];
        assert_eq!(read["deleted"], true, "{read}");
        assert!(read.get("content").is_none(), "{read}");
        assert_eq!(frames[2]["data"]["changeId"], 2);
        assert_eq!(
            ack["data"],
            json!({"count": 1, "lastId": id, "hasMore": false, "changes": 3, "lastChange": 3})
        );
        all_answered(&realtime).await;
    }

    #[actix::test]
    async fn changes_to_messages_not_yours_or_not_in_your_chats_are_refused_and_change_nothing() {
        let (store, realtime) = node();
        let theirs = store.seed(THEIRS, BOB, "bob to cat");
        let mut ann = connect(&realtime, ANN);
        let mut bob = connect(&realtime, BOB);
        ann.ready(ANN).await;
        bob.ready(BOB).await;
        let sent = ask(
            &mut ann,
            json!({"event": "message:send", "ref": "1",
            "data": {"chatId": CHAT, "clientId": "a1", "kind": "text", "content": "mine"}}),
        )
        .await;
        let mine = sent["data"]["id"].clone();

        for (frame, code) in [
            // Bob is in the chat but did not write it.
            (
                json!({"event": "message:edit", "ref": "e", "data": {"messageId": mine, "content": "x"}}),
                "forbidden",
            ),
            (
                json!({"event": "message:delete", "ref": "d", "data": {"messageId": mine}}),
                "forbidden",
            ),
            (
                json!({"event": "message:react", "ref": "r", "data": {"messageId": mine, "emoji": "ab", "active": true}}),
                "invalid_data",
            ),
            (
                json!({"event": "message:react", "ref": "r2", "data": {"messageId": mine, "emoji": "👍👍", "active": true}}),
                "invalid_data",
            ),
        ] {
            let answer = ask(&mut bob, frame.clone()).await;
            assert_eq!(error_code(&answer), code, "{frame} → {answer}");
        }
        for frame in [
            // Ann is not in the chat of bob and cat; no such message either: the same.
            json!({"event": "message:react", "ref": "o", "data": {"messageId": theirs.id, "emoji": "👍", "active": true}}),
            json!({"event": "message:edit", "ref": "o2", "data": {"messageId": theirs.id, "content": "x"}}),
            json!({"event": "message:delete", "ref": "o3", "data": {"messageId": 9999}}),
        ] {
            let answer = ask(&mut ann, frame.clone()).await;
            assert_eq!(error_code(&answer), "forbidden", "{frame} → {answer}");
        }
        // An edit with the wrong body for a plaintext message.
        let e2ee_for_plain = ask(
            &mut ann,
            json!({"event": "message:edit", "ref": "p",
            "data": {"messageId": mine, "e2ee": {"v": 1}}}),
        )
        .await;
        assert_eq!(error_code(&e2ee_for_plain), "invalid_data");

        assert_eq!(store.calls(Op::EditMessage), 0);
        assert_eq!(store.calls(Op::DeleteMessage), 0);
        assert_eq!(store.calls(Op::React), 0);
        let stored = store.messages();
        assert_eq!(stored[1].content, "mine");
        assert!(!stored[1].deleted);
        all_answered(&realtime).await;
    }

    #[actix::test]
    async fn a_user_has_at_most_eight_emoji_on_a_message() {
        let (_store, realtime) = node();
        let mut ann = connect(&realtime, ANN);
        ann.ready(ANN).await;
        let sent = ask(
            &mut ann,
            json!({"event": "message:send", "ref": "1",
            "data": {"chatId": CHAT, "clientId": "a1", "kind": "text", "content": "react"}}),
        )
        .await;
        let id = sent["data"]["id"].clone();
        let emoji = ["👍", "❤️", "😂", "😮", "😢", "🙏", "🎉", "🔥", "👀"];
        for (i, e) in emoji.iter().enumerate() {
            let answer = ask(
                &mut ann,
                json!({"event": "message:react", "ref": format!("r{i}"),
                "data": {"messageId": id, "emoji": e, "active": true}}),
            )
            .await;
            if i < 8 {
                assert_eq!(answer["event"], "ack", "{e}: {answer}");
            } else {
                assert_eq!(error_code(&answer), "too_many_reactions", "{answer}");
            }
        }
        // Taking one back makes room again.
        let off = ask(
            &mut ann,
            json!({"event": "message:react", "ref": "off",
            "data": {"messageId": id, "emoji": "👍", "active": false}}),
        )
        .await;
        assert_eq!(off["event"], "ack", "{off}");
        let on = ask(
            &mut ann,
            json!({"event": "message:react", "ref": "on",
            "data": {"messageId": id, "emoji": "👀", "active": true}}),
        )
        .await;
        assert_eq!(on["event"], "ack", "{on}");
    }
}
