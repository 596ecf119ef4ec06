//! Rooms: one actor per active chat. A room knows the chat's members (loaded once),
//! checks every post and typing signal against them, hands new messages to the
//! writer lanes and, when a batch is stored, acknowledges the sender and fans the
//! message out (encoded once) to every other session of every member.
//!
//! Lifetime: the `RoomDirectory` starts a room on first use and forgets it after
//! `session::ROOM_IDLE` (5 minutes) without routing; sessions keep the address
//! they were given and forget it when idle too. A room stops by itself when nobody holds its address,
//! which can only happen with an empty mailbox, so no message is ever dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::directory::{Deliver, SessionHandle};
use crate::e2ee;
use crate::error_code::ErrorCode;
use crate::ids::{ChatId, UserId};
use crate::protocol::{self, Ack, MessageKind, SendMessage, ServerEvent, Typing, WireError};
use crate::store::{ChatMembers, Inserted, NewMessage, StoreError};
use crate::writer::{Job, Persisted, Writer};
use crate::Shared;

/// Most characters in a text message.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Longest client id.
pub const MAX_CLIENT_ID: usize = 64;
const ROOM_MAILBOX: usize = 4096;
/// A room in use loads its members again this often, so a change made on another
/// node (someone left) reaches it without a message of its own.
pub const MEMBERS_REFRESH: Duration = Duration::from_secs(30);

/// Who asked to store a message, the `ref` to answer with, and when it arrived.
pub struct PostTag {
    pub session: SessionHandle,
    pub reference: Option<String>,
    pub received: Instant,
}

/// A `message:send` from one session. Counted in `Shared::in_flight` until answered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Post {
    pub session: SessionHandle,
    pub reference: Option<String>,
    pub message: SendMessage,
    pub received: Instant,
}

/// A `typing` signal from one session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TypingSignal {
    pub session: SessionHandle,
    pub reference: Option<String>,
    pub typing: Typing,
}

/// What a session hands a room.
pub enum RoomRequest {
    Post(Post),
    Typing(TypingSignal),
}

impl RoomRequest {
    /// Queues without waiting: `Full` and `Closed` give the request back (moving it
    /// back is cheaper than boxing every request on the hot path).
    #[allow(clippy::result_large_err)]
    pub fn try_send(self, room: &Addr<Room>) -> Result<(), SendError<RoomRequest>> {
        match self {
            RoomRequest::Post(p) => room.try_send(p).map_err(|e| match e {
                SendError::Full(p) => SendError::Full(RoomRequest::Post(p)),
                SendError::Closed(p) => SendError::Closed(RoomRequest::Post(p)),
            }),
            RoomRequest::Typing(t) => room.try_send(t).map_err(|e| match e {
                SendError::Full(t) => SendError::Full(RoomRequest::Typing(t)),
                SendError::Closed(t) => SendError::Closed(RoomRequest::Typing(t)),
            }),
        }
    }

    /// Queues, waiting for space in the room's mailbox (backpressure on the sender).
    pub fn send(
        self,
        room: &Addr<Room>,
    ) -> impl std::future::Future<Output = Result<(), MailboxError>> {
        let fut: futures_util::future::Either<_, _> = match self {
            RoomRequest::Post(p) => futures_util::future::Either::Left(room.send(p)),
            RoomRequest::Typing(t) => futures_util::future::Either::Right(room.send(t)),
        };
        fut
    }

    /// Queues regardless of the mailbox's capacity (the directory's one-off forward).
    fn force(self, room: &Addr<Room>) {
        match self {
            RoomRequest::Post(p) => room.do_send(p),
            RoomRequest::Typing(t) => room.do_send(t),
        }
    }

    pub fn reference(&self) -> Option<&str> {
        match self {
            RoomRequest::Post(p) => p.reference.as_deref(),
            RoomRequest::Typing(t) => t.reference.as_deref(),
        }
    }
}

enum Members {
    Loading,
    Known(ChatMembers),
    NoSuchChat,
    Failed,
}

pub struct Room {
    chat: ChatId,
    members: Members,
    shared: Arc<Shared>,
    writer: Writer<PostTag>,
}

impl Room {
    fn new(chat: ChatId, shared: Arc<Shared>, writer: Writer<PostTag>) -> Room {
        Room {
            chat,
            members: Members::Loading,
            shared,
            writer,
        }
    }

    /// The members, or the error to answer a request with.
    fn check_member(&self, user: UserId) -> Result<&ChatMembers, WireError> {
        match &self.members {
            Members::Known(m) if m.members.contains(&user) => Ok(m),
            Members::Known(_) => Err(WireError::new(
                ErrorCode::Forbidden,
                "you are not a member of this chat",
            )),
            // The same answer as for someone else's chat: outsiders cannot probe ids.
            Members::NoSuchChat => Err(WireError::new(
                ErrorCode::Forbidden,
                "you are not a member of this chat",
            )),
            Members::Loading | Members::Failed => Err(WireError::new(
                ErrorCode::Unavailable,
                "the chat could not be loaded; retry shortly",
            )),
        }
    }

    fn reply_error(session: &SessionHandle, reference: Option<&str>, err: &WireError) {
        session.deliver(Deliver::frame(protocol::encode_error(err, reference)));
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(ROOM_MAILBOX);
        self.shared.metrics.room_started();
        self.load_members(ctx);
        ctx.run_interval(MEMBERS_REFRESH, |room, ctx| room.load_members(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.metrics.room_stopped();
    }
}

impl Room {
    /// Loads the members. `wait` holds the mailbox until they are known, so no
    /// request is judged early; after a failure (MySQL down) it tries again every
    /// second, answering `unavailable` meanwhile, so the chat recovers by itself. A
    /// failed *re*load keeps the members known before (the next one retries).
    fn load_members(&mut self, ctx: &mut Context<Self>) {
        let store = self.shared.store.clone();
        let chat = self.chat;
        ctx.wait(
            async move { store.chat_members(chat).await }
                .into_actor(self)
                .map(|res, room, ctx| match res {
                    Ok(Some(m)) => room.members = Members::Known(m),
                    Ok(None) => room.members = Members::NoSuchChat,
                    Err(e) => {
                        tracing::warn!(chat = %room.chat, error = %e.chain(), "loading chat members");
                        if !matches!(room.members, Members::Known(_)) {
                            ctx.run_later(Duration::from_secs(1), |room, ctx| {
                                room.load_members(ctx)
                            });
                            room.members = Members::Failed;
                        }
                    }
                }),
        );
    }
}

/// The chat's members changed: load them again before anything else.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MembersChanged {
    pub chat: ChatId,
}

impl Handler<MembersChanged> for Room {
    type Result = ();

    fn handle(&mut self, _: MembersChanged, ctx: &mut Context<Self>) {
        self.load_members(ctx);
    }
}

impl Handler<MembersChanged> for RoomDirectory {
    type Result = ();

    fn handle(&mut self, m: MembersChanged, _: &mut Context<Self>) {
        if let Some((addr, _)) = self.rooms.get(&m.chat) {
            addr.do_send(m);
        }
    }
}

impl Handler<Post> for Room {
    type Result = ();

    fn handle(&mut self, post: Post, ctx: &mut Context<Self>) {
        let Post {
            session,
            reference,
            message,
            received,
        } = post;
        let checked = self
            .check_member(session.user)
            .and_then(|members| validate(message, session.user, members));
        let new = match checked {
            Ok(new) => new,
            Err(e) => {
                Self::reply_error(&session, reference.as_deref(), &e);
                return self.shared.post_answered();
            }
        };
        let job = Job {
            message: new,
            tag: PostTag {
                session: session.clone(),
                reference,
                received,
            },
            reply: ctx.address().recipient(),
        };
        if let Err(job) = self.writer.submit(self.chat, job) {
            let err = WireError::new(
                ErrorCode::Busy,
                "too many messages are waiting to be stored; retry",
            );
            Self::reply_error(&job.tag.session, job.tag.reference.as_deref(), &err);
            self.shared.post_answered();
        }
    }
}

impl Handler<Persisted<PostTag>> for Room {
    type Result = ();

    fn handle(&mut self, done: Persisted<PostTag>, _: &mut Context<Self>) {
        let Members::Known(members) = &self.members else {
            return;
        };
        for (tag, outcome) in done.outcomes {
            let reference = tag.reference.as_deref();
            self.shared.metrics.acked_after(tag.received.elapsed());
            match outcome {
                Ok(Inserted::Fresh(m)) => {
                    tag.session.deliver(Deliver::frame(protocol::encode(
                        &ServerEvent::Ack(Ack::Message(&m)),
                        reference,
                    )));
                    let d = Deliver {
                        frame: protocol::encode(&ServerEvent::MessageReceived(&m), None),
                        message: Some(m.id),
                    };
                    self.shared.metrics.message_stored();
                    // Every member's sessions, the sender's other devices included.
                    self.shared
                        .bus
                        .to_users(&members.members, &d, Some(&tag.session));
                }
                Ok(Inserted::Existing(m)) => {
                    tag.session.deliver(Deliver::frame(protocol::encode(
                        &ServerEvent::Ack(Ack::Message(&m)),
                        reference,
                    )));
                }
                Ok(Inserted::Rejected { code, message }) => {
                    Self::reply_error(&tag.session, reference, &WireError::new(code, message))
                }
                Err(e) => {
                    let err = match e {
                        StoreError::Unavailable { .. } => WireError::new(
                            ErrorCode::Unavailable,
                            "the message could not be stored; send it again with the same clientId",
                        ),
                        StoreError::Other { .. } => {
                            tracing::error!(chat = %self.chat, error = %e.chain(), "storing a message");
                            WireError::new(ErrorCode::Internal, "the message could not be stored")
                        }
                    };
                    Self::reply_error(&tag.session, reference, &err);
                }
            }
            self.shared.post_answered();
        }
    }
}

impl Handler<TypingSignal> for Room {
    type Result = ();

    fn handle(&mut self, t: TypingSignal, _: &mut Context<Self>) {
        let reference = t.reference.as_deref();
        let members = match self.check_member(t.session.user) {
            Ok(m) => m,
            Err(e) => return Self::reply_error(&t.session, reference, &e),
        };
        let d = Deliver::frame(protocol::encode(
            &ServerEvent::Typing {
                chat_id: self.chat,
                user_id: t.session.user,
                active: t.typing.active,
            },
            None,
        ));
        for &m in members.members.iter().filter(|&&m| m != t.session.user) {
            self.shared.bus.to_user(m, &d, None);
        }
        if reference.is_some() {
            t.session.deliver(Deliver::frame(protocol::encode(
                &ServerEvent::Ack(Ack::Empty {}),
                reference,
            )));
        }
    }
}

/// Checks a `message:send` against the protocol's rules and the chat's members.
fn validate(
    m: SendMessage,
    sender: UserId,
    members: &ChatMembers,
) -> Result<NewMessage, WireError> {
    let cid = &m.client_id;
    if cid.is_empty()
        || cid.len() > MAX_CLIENT_ID
        || !cid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(WireError::new(
            ErrorCode::InvalidData,
            "clientId must be 1 to 64 characters of A-Z a-z 0-9 - _ . :",
        ));
    }
    let content = m.content.unwrap_or_default();
    match m.kind {
        MessageKind::Call => {
            return Err(WireError::new(
                ErrorCode::InvalidData,
                "kind must be \"text\" or \"audio\"",
            ))
        }
        MessageKind::Text => {
            if m.audio_id.is_some() {
                return Err(WireError::new(
                    ErrorCode::InvalidData,
                    "a text message has no audioId",
                ));
            }
            if !m.encrypted && content.trim().is_empty() {
                return Err(WireError::new(
                    ErrorCode::InvalidData,
                    "content must not be empty",
                ));
            }
        }
        MessageKind::Audio => {
            if m.audio_id.is_none() {
                return Err(WireError::new(
                    ErrorCode::InvalidData,
                    "an audio message needs audioId",
                ));
            }
        }
    }
    if content.chars().count() > MAX_TEXT_CHARS {
        return Err(WireError::new(
            ErrorCode::TooLarge,
            format!("content is longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    match (m.encrypted, &m.e2ee) {
        (true, Some(env)) => {
            if !content.is_empty() {
                return Err(WireError::new(
                    ErrorCode::InvalidData,
                    "an encrypted message must have empty content",
                ));
            }
            e2ee::check_envelope(env.get(), &members.members)?;
        }
        (true, None) => {
            return Err(WireError::new(
                ErrorCode::InvalidData,
                "encrypted messages need e2ee",
            ))
        }
        (false, Some(_)) => {
            return Err(WireError::new(
                ErrorCode::InvalidData,
                "e2ee given but encrypted is false",
            ))
        }
        (false, None) => {}
    }
    Ok(NewMessage {
        chat_id: members.chat,
        sender_id: sender,
        client_id: m.client_id,
        kind: m.kind,
        content,
        audio_id: m.audio_id,
        encrypted: m.encrypted,
        e2ee: m.e2ee,
    })
}

/// Routes a request to its room, starting it on first use.
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct Route {
    pub chat: ChatId,
    pub request: RoomRequest,
}

/// Starts rooms and remembers them while they are in use.
pub struct RoomDirectory {
    rooms: HashMap<ChatId, (Addr<Room>, Instant)>,
    shared: Arc<Shared>,
    writer: Writer<PostTag>,
    arbiters: Vec<ArbiterHandle>,
    next: usize,
    idle: Duration,
}

impl RoomDirectory {
    pub fn new(
        shared: Arc<Shared>,
        writer: Writer<PostTag>,
        arbiters: Vec<ArbiterHandle>,
        idle: Duration,
    ) -> RoomDirectory {
        RoomDirectory {
            rooms: HashMap::new(),
            shared,
            writer,
            arbiters,
            next: 0,
            idle,
        }
    }

    fn room(&mut self, chat: ChatId) -> Addr<Room> {
        if let Some((addr, used)) = self.rooms.get_mut(&chat) {
            if addr.connected() {
                *used = Instant::now();
                return addr.clone();
            }
        }
        let shared = self.shared.clone();
        let writer = self.writer.clone();
        // Rooms are spread over a few arbiters (threads) so no single thread carries them all.
        let addr = if self.arbiters.is_empty() {
            Room::new(chat, shared, writer).start()
        } else {
            let arbiter = &self.arbiters[self.next % self.arbiters.len()];
            self.next = self.next.wrapping_add(1);
            Room::start_in_arbiter(arbiter, move |_| Room::new(chat, shared, writer))
        };
        self.rooms.insert(chat, (addr.clone(), Instant::now()));
        addr
    }
}

impl Actor for RoomDirectory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(ROOM_MAILBOX);
        let every = (self.idle / 4).max(Duration::from_secs(1));
        ctx.run_interval(every, |dir, _| {
            let idle = dir.idle;
            dir.rooms.retain(|_, (_, used)| used.elapsed() < idle);
        });
    }
}

impl Handler<Route> for RoomDirectory {
    type Result = Option<Addr<Room>>;

    fn handle(&mut self, route: Route, _: &mut Context<Self>) -> Self::Result {
        let addr = self.room(route.chat);
        // Forwarded before the address is returned, so it precedes anything the
        // session sends to the room directly afterwards.
        route.request.force(&addr);
        Some(addr)
    }
}
