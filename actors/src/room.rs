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
use smallvec::SmallVec;

use crate::directory::{Deliver, SessionHandle};
use crate::e2ee;
use crate::error_code::ErrorCode;
use crate::ids::{ChatId, MediaId, UserId};
use crate::protocol::{self, Ack, MessageKind, SendMessage, ServerEvent, Typing, WireError};
use crate::push::{PushEvent, PushOffer};
use crate::store::{ChatMembers, Inserted, Message, NewMessage, StoreError};
use crate::writer::{Job, Persisted, Writer};
use crate::Shared;

/// Most characters in a text message.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Longest client id.
pub const MAX_CLIENT_ID: usize = 64;
const ROOM_MAILBOX: usize = 4096;
/// A room in use loads its members again this often: a safety net. A change made
/// on any node reaches every node's room at once (`Realtime::members_changed`,
/// the cluster's `M` frame); this catches one whose frame was lost (Redis down).
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

    /// The members, or the error to answer a request with. A direct chat in which
    /// one of the two blocked the other takes nothing from either (`forbidden`, the
    /// answer an outsider gets: no hint of the block).
    fn check_member(&self, user: UserId) -> Result<&ChatMembers, WireError> {
        match &self.members {
            Members::Known(m) if m.members.contains(&user) && !m.blocked => Ok(m),
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

pub use crate::messages::MembersChanged;

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
                    offer_push(&self.shared, &members.members, &m);
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

/// The longest push preview, in characters.
pub const PUSH_PREVIEW_CHARS: usize = 120;

/// Offers a stored message to the push engine for the members other than its
/// sender who have no visible session on this node (issue 20). With no engine
/// attached, or when every member is visible here (the bench's clients), it costs
/// one directory read per member and allocates nothing. Server-made lines (system,
/// call traces) are never offered. Blocks: in a direct chat one side's block
/// refuses the send before it is stored; a group's per-member blocks are not known
/// to the room, so the engine applies them if it wants to.
fn offer_push(shared: &Shared, members: &[UserId], m: &Message) {
    if !shared.push.attached() || matches!(m.kind, MessageKind::System | MessageKind::Call) {
        return;
    }
    let directory = shared.bus.directory();
    let mut users: SmallVec<[UserId; 4]> = SmallVec::new();
    for &u in members {
        if u != m.sender_id && !directory.has_visible_session(u) {
            users.push(u);
        }
    }
    if users.is_empty() {
        return;
    }
    shared.push.offer(PushOffer {
        users,
        event: PushEvent::Message {
            chat: m.chat_id,
            message: m.id,
            sender: m.sender_id,
            preview: push_preview(m),
        },
    });
}

/// A plaintext message's text (or caption), cut to [`PUSH_PREVIEW_CHARS`] on a
/// character boundary; `None` for an encrypted message or a blank caption.
pub fn push_preview(m: &Message) -> Option<Arc<str>> {
    if m.encrypted || m.e2ee.is_some() {
        return None;
    }
    let text = m.content.trim();
    if text.is_empty() {
        return None;
    }
    let end = text
        .char_indices()
        .nth(PUSH_PREVIEW_CHARS)
        .map_or(text.len(), |(i, _)| i);
    Some(Arc::from(&text[..end]))
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
    let media = named_media(&m)?;
    let mut content = m.content.unwrap_or_default();
    match m.kind {
        MessageKind::Call | MessageKind::System => {
            return Err(invalid(
                "kind must be \"text\", \"image\", \"file\" or \"audio\"",
            ))
        }
        MessageKind::Text => {
            if media.is_some() {
                return Err(invalid("a text message carries no mediaId"));
            }
            if !m.encrypted && content.trim().is_empty() {
                return Err(invalid("content must not be empty"));
            }
        }
        MessageKind::Image | MessageKind::File | MessageKind::Audio => {
            if media.is_none() {
                return Err(invalid("an image, file or audio message needs mediaId"));
            }
            if m.encrypted && m.kind == MessageKind::Audio {
                // The server cannot tell what an encrypted upload holds: it is stored
                // as a file, and the envelope says what it is.
                return Err(invalid(
                    "an encrypted attachment is sent as kind \"image\" or \"file\"",
                ));
            }
            // A caption of blanks is no caption (a reply then shows no preview).
            if content.trim().is_empty() {
                content.clear();
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
        media_id: media,
        encrypted: m.encrypted,
        e2ee: m.e2ee,
        reply_to: m.reply_to_id,
    })
}

fn invalid(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidData, message)
}

/// The upload a `message:send` names: `mediaId`, or the `audioId` of a client of
/// before attachments on an audio message (with both, they must be the same).
fn named_media(m: &SendMessage) -> Result<Option<MediaId>, WireError> {
    match (m.media_id, m.audio_id) {
        (Some(media), Some(audio)) if media != MediaId::from(audio) => {
            Err(invalid("mediaId and audioId name different uploads"))
        }
        (_, Some(_)) if m.kind != MessageKind::Audio => {
            Err(invalid("audioId is for audio messages; use mediaId"))
        }
        (media, audio) => Ok(media.or(audio.map(MediaId::from))),
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use serde_json::json;

    use super::*;
    use crate::attachment::MediaKind;
    use crate::store::ChatKind;
    use crate::testing::{self, Failure, Fake, MemoryStore, Op};

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CAT: UserId = UserId(3);
    const DAVE: UserId = UserId(4);
    const CHAT: ChatId = ChatId(10);

    struct Fixture {
        store: Arc<MemoryStore>,
        shared: Arc<Shared>,
        room: Addr<Room>,
    }

    /// A group of ann, bob and cat, its room, and two writer lanes over memory.
    fn fixture() -> Fixture {
        let store = MemoryStore::new();
        store.add_chat(CHAT, ChatKind::Group, &[ANN, BOB, CAT]);
        let shared = testing::shared(store.clone(), testing::settings());
        let writer = Writer::start(store.clone(), 2);
        let room = Room::new(CHAT, shared.clone(), writer).start();
        Fixture {
            store,
            shared,
            room,
        }
    }

    fn send_message(data: serde_json::Value) -> SendMessage {
        serde_json::from_str(&data.to_string()).expect("a message:send")
    }

    fn text(client_id: &str, content: &str) -> SendMessage {
        send_message(
            json!({"chatId": CHAT, "clientId": client_id, "kind": "text", "content": content}),
        )
    }

    impl Fixture {
        /// Posts as a session does: counted in flight until the room answers.
        fn post(&self, from: &Fake, reference: &str, message: SendMessage) {
            self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
            self.room.do_send(Post {
                session: from.handle.clone(),
                reference: Some(reference.into()),
                message,
                received: Instant::now(),
            });
        }

        fn in_flight(&self) -> usize {
            self.shared.in_flight.load(Ordering::Acquire)
        }
    }

    /// The error code a session got in answer to `reference`.
    async fn refused(f: &Fixture, from: &Fake, reference: &str, message: SendMessage) -> String {
        let seen = from.frames().len();
        f.post(from, reference, message);
        let answer = from.next_frame(seen).await;
        assert_eq!(answer.reference(), Some(reference));
        answer
            .error_code()
            .unwrap_or_else(|| panic!("{reference}: expected an error, got {:?}", answer.json))
            .to_owned()
    }

    #[actix::test]
    async fn refuses_outsiders_and_malformed_messages_with_their_codes() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        let dave = Fake::connect(&f.shared, 4, DAVE);
        let b64 = |n: usize| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(vec![7u8; n])
        };
        let envelope = |keys: &[UserId]| {
            let keys: serde_json::Map<String, serde_json::Value> = keys
                .iter()
                .map(|u| (u.to_string(), json!(b64(256))))
                .collect();
            json!({"v": 1, "alg": e2ee::ALGORITHM, "iv": b64(12), "ciphertext": b64(40), "keys": keys})
        };
        assert_eq!(
            refused(&f, &dave, "outsider", text("c1", "hi")).await,
            "forbidden"
        );
        let too_long = "x".repeat(MAX_TEXT_CHARS + 1);
        for (reference, message, code) in [
            (
                "call kind",
                json!({"kind": "call", "content": "x"}),
                "invalid_data",
            ),
            (
                "too long",
                json!({"kind": "text", "content": too_long}),
                "too_large",
            ),
            (
                "empty",
                json!({"kind": "text", "content": "  "}),
                "invalid_data",
            ),
            (
                "audio id on text",
                json!({"kind": "text", "content": "x", "audioId": 5}),
                "invalid_data",
            ),
            ("audio without id", json!({"kind": "audio"}), "invalid_data"),
            (
                "image without id",
                json!({"kind": "image", "content": "x"}),
                "invalid_data",
            ),
            ("file without id", json!({"kind": "file"}), "invalid_data"),
            (
                "media id on text",
                json!({"kind": "text", "content": "x", "mediaId": 5}),
                "invalid_data",
            ),
            (
                "audio id on an image",
                json!({"kind": "image", "audioId": 5}),
                "invalid_data",
            ),
            (
                "audio and media ids differ",
                json!({"kind": "audio", "audioId": 5, "mediaId": 6}),
                "invalid_data",
            ),
            (
                "caption too long",
                json!({"kind": "image", "mediaId": 5, "content": "x".repeat(MAX_TEXT_CHARS + 1)}),
                "too_large",
            ),
            (
                "encrypted audio",
                json!({"kind": "audio", "mediaId": 5, "encrypted": true, "e2ee": envelope(&[ANN, BOB, CAT])}),
                "invalid_data",
            ),
            (
                "encrypted image with a caption",
                json!({"kind": "image", "mediaId": 5, "content": "x", "encrypted": true, "e2ee": envelope(&[ANN, BOB, CAT])}),
                "invalid_data",
            ),
            (
                "encrypted, no e2ee",
                json!({"kind": "text", "encrypted": true}),
                "invalid_data",
            ),
            (
                "e2ee, not encrypted",
                json!({"kind": "text", "content": "x", "e2ee": envelope(&[ANN, BOB, CAT])}),
                "invalid_data",
            ),
            (
                "encrypted with content",
                json!({"kind": "text", "content": "x", "encrypted": true, "e2ee": envelope(&[ANN, BOB, CAT])}),
                "invalid_data",
            ),
            (
                "a member's key missing",
                json!({"kind": "text", "encrypted": true, "e2ee": envelope(&[ANN, BOB])}),
                "invalid_envelope",
            ),
        ] {
            let mut data = message;
            data["chatId"] = json!(CHAT);
            data["clientId"] = json!("c1");
            assert_eq!(
                refused(&f, &ann, reference, send_message(data)).await,
                code,
                "{reference}"
            );
        }
        for bad_id in ["", "has space", &"x".repeat(MAX_CLIENT_ID + 1)] {
            assert_eq!(
                refused(&f, &ann, "client id", text(bad_id, "hi")).await,
                "invalid_data",
                "{bad_id:?}"
            );
        }
        // A well-formed encrypted message passes the same checks.
        f.post(
            &ann,
            "sealed",
            send_message(json!({"chatId": CHAT, "clientId": "c2", "kind": "text", "encrypted": true, "e2ee": envelope(&[ANN, BOB, CAT])})),
        );
        let ack = ann.next_frame(ann.frames().len()).await;
        assert_eq!((ack.event(), ack.reference()), ("ack", Some("sealed")));
        assert_eq!(
            f.store.batches().len(),
            1,
            "nothing refused reached the store"
        );
        let got = bob.wait_frames(1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data()["encrypted"], json!(true));
        assert_eq!(f.in_flight(), 0, "every post answered once");
        assert!(dave.settled().await.iter().all(|fr| fr.event() == "error"));
    }

    /// Posts `message` as `from` and waits for its ack.
    async fn posted(f: &Fixture, from: &Fake, reference: &str, message: SendMessage) {
        let seen = from.frames().len();
        f.post(from, reference, message);
        let ack = from.next_frame(seen).await;
        assert_eq!((ack.event(), ack.reference()), ("ack", Some(reference)));
    }

    #[actix::test]
    async fn push_offers_go_to_members_without_a_visible_session_here_never_the_sender() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        // Nothing is offered without an engine.
        posted(&f, &ann, "before", text("c0", "hi")).await;
        let sink = testing::RecordingSink::new();
        f.shared.push.attach(sink.clone());

        // Bob visible (never reported), cat offline; ann the sender, hidden.
        ann.handle.set_visible(false);
        posted(&f, &ann, "r1", text("c1", "hello")).await;
        let offers = sink.offers();
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].users.as_slice(), [CAT]);
        let stored = f.store.messages();
        assert_eq!(
            offers[0].event,
            PushEvent::Message {
                chat: CHAT,
                message: stored[1].id,
                sender: ANN,
                preview: Some(Arc::from("hello")),
            }
        );

        // Bob hides his only session: he is offered too.
        bob.handle.set_visible(false);
        posted(&f, &ann, "r2", text("c2", "again")).await;
        assert_eq!(sink.offers()[1].users.as_slice(), [BOB, CAT]);

        // A second session of bob's that is visible: he is reading.
        let _bob_laptop = Fake::connect(&f.shared, 3, BOB);
        let cat = Fake::connect(&f.shared, 4, CAT);
        posted(&f, &ann, "r3", text("c3", "all here")).await;
        assert_eq!(sink.offers().len(), 2, "everyone visible: no offer");

        // The preview is cut at 120 characters, on a character boundary.
        cat.handle.set_visible(false);
        let long = "é".repeat(200);
        posted(&f, &ann, "r4", text("c4", &long)).await;
        let offers = sink.offers();
        let PushEvent::Message { preview, .. } = &offers[2].event else {
            panic!("a message offer: {:?}", offers[2]);
        };
        assert_eq!(
            preview.as_deref(),
            Some("é".repeat(PUSH_PREVIEW_CHARS).as_str())
        );
        assert_eq!(offers[2].users.as_slice(), [CAT]);
    }

    #[actix::test]
    async fn an_encrypted_message_is_offered_without_a_preview() {
        let f = fixture();
        let sink = testing::RecordingSink::new();
        f.shared.push.attach(sink.clone());
        let ann = Fake::connect(&f.shared, 1, ANN);
        let b64 = |n: usize| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(vec![7u8; n])
        };
        let keys: serde_json::Map<String, serde_json::Value> = [ANN, BOB, CAT]
            .iter()
            .map(|u| (u.to_string(), json!(b64(256))))
            .collect();
        let envelope = json!({"v": 1, "alg": e2ee::ALGORITHM, "iv": b64(12), "ciphertext": b64(40), "keys": keys});
        posted(
            &f,
            &ann,
            "sealed",
            send_message(json!({"chatId": CHAT, "clientId": "c1", "kind": "text", "encrypted": true, "e2ee": envelope})),
        )
        .await;
        let offers = sink.offers();
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].users.as_slice(), [BOB, CAT]);
        assert!(
            matches!(
                &offers[0].event,
                PushEvent::Message {
                    preview: None,
                    sender: ANN,
                    ..
                }
            ),
            "{:?}",
            offers[0]
        );
    }

    #[actix::test]
    async fn a_chat_that_does_not_exist_is_forbidden_like_someone_elses() {
        let f = fixture();
        let room = Room::new(
            ChatId(99),
            f.shared.clone(),
            Writer::start(f.store.clone(), 1),
        )
        .start();
        let ann = Fake::connect(&f.shared, 1, ANN);
        f.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        room.do_send(Post {
            session: ann.handle.clone(),
            reference: Some("r".into()),
            message: text("c1", "hi"),
            received: Instant::now(),
        });
        let frames = ann.wait_frames(1).await;
        assert_eq!(frames[0].error_code(), Some("forbidden"));
        assert_eq!(f.in_flight(), 0);
    }

    #[actix::test]
    async fn acks_the_sender_and_fans_out_in_stored_order_to_every_other_session() {
        let f = fixture();
        let ann_phone = Fake::connect(&f.shared, 1, ANN);
        let ann_laptop = Fake::connect(&f.shared, 2, ANN);
        let bob = Fake::connect(&f.shared, 3, BOB);
        let cat = Fake::connect(&f.shared, 4, CAT);
        let dave = Fake::connect(&f.shared, 5, DAVE);
        for i in 0..5 {
            f.post(
                &ann_phone,
                &format!("r{i}"),
                text(&format!("c{i}"), &format!("hello {i}")),
            );
        }
        let acks = ann_phone.wait_frames(5).await;
        for (i, ack) in acks.iter().enumerate() {
            assert_eq!(ack.event(), "ack");
            assert_eq!(ack.reference(), Some(format!("r{i}").as_str()));
            assert_eq!(ack.data()["clientId"], json!(format!("c{i}")));
        }
        let ack_ids: Vec<u64> = acks
            .iter()
            .map(|a| a.data()["id"].as_u64().expect("id"))
            .collect();
        assert!(
            ack_ids.windows(2).all(|w| w[0] < w[1]),
            "ids grow in send order: {ack_ids:?}"
        );
        let stored: Vec<u64> = f.store.messages().iter().map(|m| m.id.0).collect();
        assert_eq!(stored, ack_ids);
        for other in [&ann_laptop, &bob, &cat] {
            let got = other.wait_frames(5).await;
            assert!(
                got.iter().all(|fr| fr.event() == "message:received"),
                "{:?}",
                other.events()
            );
            let ids: Vec<u64> = got
                .iter()
                .map(|fr| fr.data()["id"].as_u64().expect("id"))
                .collect();
            assert_eq!(
                ids,
                ack_ids,
                "user {} sees them in stored order",
                other.user()
            );
            assert!(
                got.iter().all(|fr| fr.message.is_some()),
                "tagged for the catch-up's dedup"
            );
            assert_eq!(got[0].data()["content"], json!("hello 0"));
        }
        // The sending session gets its acks, never the message a second time.
        assert_eq!(ann_phone.settled().await.len(), 5);
        assert_eq!(ann_laptop.settled().await.len(), 5);
        assert!(dave.settled().await.is_empty(), "a stranger hears nothing");
        assert_eq!(f.in_flight(), 0);
    }

    #[actix::test]
    async fn the_ack_is_queued_before_the_fan_out() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        f.post(&ann, "r", text("c1", "hi"));
        bob.wait_frames(1).await;
        let got = ann.settled().await;
        assert_eq!(got.len(), 1, "acked by the time others hear of it");
        assert_eq!(got[0].event(), "ack");
    }

    #[actix::test]
    async fn a_resend_with_the_same_client_id_is_acked_with_the_first_and_not_fanned_out_again() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        f.post(&ann, "first", text("same", "hi"));
        f.post(&ann, "again", text("same", "hi"));
        let acks = ann.wait_frames(2).await;
        assert_eq!(acks[0].data()["id"], acks[1].data()["id"]);
        assert_eq!(acks[1].reference(), Some("again"));
        bob.wait_frames(1).await;
        assert_eq!(bob.settled().await.len(), 1);
        assert_eq!(f.store.messages().len(), 1);
    }

    #[actix::test]
    async fn store_failures_answer_the_sender_and_the_next_message_goes_through() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        f.store.fail(Op::InsertMessages, Failure::Unavailable, 1);
        assert_eq!(
            refused(&f, &ann, "down", text("c1", "hi")).await,
            "unavailable"
        );
        f.store.fail(Op::InsertMessages, Failure::Broken, 1);
        assert_eq!(
            refused(&f, &ann, "broken", text("c1", "hi")).await,
            "internal"
        );
        f.store
            .add_upload(MediaId(7), BOB, CHAT, MediaKind::Audio, false);
        let audio =
            send_message(json!({"chatId": CHAT, "clientId": "c2", "kind": "audio", "audioId": 7}));
        assert_eq!(refused(&f, &ann, "not yours", audio).await, "forbidden");
        assert!(
            bob.settled().await.is_empty(),
            "nothing failed is fanned out"
        );
        f.post(&ann, "retry", text("c1", "hi"));
        let ack = ann.next_frame(3).await;
        assert_eq!((ack.event(), ack.reference()), ("ack", Some("retry")));
        assert_eq!(bob.wait_frames(1).await[0].event(), "message:received");
        assert_eq!(f.in_flight(), 0);
    }

    #[actix::test]
    async fn an_attachment_reaches_every_member_with_its_upload_caption_and_reply() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        let original = f.store.seed(CHAT, BOB, "what does it look like?");
        f.store
            .add_upload(MediaId(5), ANN, CHAT, MediaKind::Image, false);
        f.post(
            &ann,
            "photo",
            send_message(json!({"chatId": CHAT, "clientId": "p1", "kind": "image", "mediaId": 5, "content": "the view", "replyToId": original.id})),
        );
        let ack = ann.wait_frames(1).await;
        assert_eq!((ack[0].event(), ack[0].reference()), ("ack", Some("photo")));
        let got = bob.wait_frames(1).await.swap_remove(0);
        let m = got.data();
        assert_eq!(m["kind"], json!("image"));
        assert_eq!(m["content"], json!("the view"));
        assert_eq!(m["audio"], json!(null));
        assert_eq!(
            m["media"],
            json!({"mediaId": 5, "kind": "image", "mime": "image/png", "bytes": 1234, "name": "photo.png", "url": "/api/media/5", "width": 640, "height": 480, "thumbnailUrl": "/api/media/5/thumbnail"})
        );
        assert_eq!(m["replyTo"]["preview"], json!("what does it look like?"));

        // A reply to the image shows its caption; to a voice message without one, nothing.
        f.store
            .add_upload(MediaId(6), ANN, CHAT, MediaKind::Audio, false);
        f.post(
            &ann,
            "voice",
            send_message(json!({"chatId": CHAT, "clientId": "v1", "kind": "audio", "audioId": 6, "content": "  "})),
        );
        let voice = ann.wait_frames(2).await[1].data().clone();
        assert_eq!(voice["content"], json!(""), "a blank caption is none");
        assert_eq!(voice["audio"]["audioId"], json!(6));
        assert_eq!(voice["audio"]["url"], json!("/api/media/audio/6"));
        assert_eq!(voice["media"]["url"], json!("/api/media/6"));
        assert_eq!(voice["media"]["durationMs"], json!(1500));
        for (client_id, quoted, preview) in [
            ("r1", &m["id"], json!("the view")),
            ("r2", &voice["id"], json!(null)),
        ] {
            f.post(
                &bob,
                client_id,
                send_message(json!({"chatId": CHAT, "clientId": client_id, "kind": "text", "content": "nice", "replyToId": quoted})),
            );
            let reply = bob
                .wait_until(0, "the reply's ack", |fr| fr.reference() == Some(client_id))
                .await;
            assert_eq!(reply.data()["replyTo"]["preview"], preview, "{client_id}");
        }
        assert_eq!(f.in_flight(), 0);
    }

    #[actix::test]
    async fn an_upload_is_claimed_once_and_a_refused_attachment_is_neither_stored_nor_fanned_out() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        f.store
            .add_upload(MediaId(1), ANN, CHAT, MediaKind::File, false);
        f.store
            .add_upload(MediaId(2), BOB, CHAT, MediaKind::Image, false);
        f.store
            .add_upload(MediaId(3), ANN, CHAT, MediaKind::Image, true);
        f.store
            .add_upload(MediaId(4), ANN, CHAT, MediaKind::File, false);
        let send = |client_id: &str, kind: &str, media: u64| {
            send_message(
                json!({"chatId": CHAT, "clientId": client_id, "kind": kind, "mediaId": media}),
            )
        };
        f.post(&ann, "first", send("f1", "file", 1));
        ann.wait_frames(1).await;
        bob.wait_frames(1).await;
        for (reference, message, code) in [
            ("again", send("f2", "file", 1), "forbidden"),
            ("bob's", send("f3", "image", 2), "forbidden"),
            ("unknown", send("f4", "image", 99), "forbidden"),
            ("a file as an image", send("f5", "image", 4), "invalid_data"),
            (
                "encrypted upload in plaintext",
                send("f6", "image", 3),
                "invalid_data",
            ),
        ] {
            assert_eq!(
                refused(&f, &ann, reference, message).await,
                code,
                "{reference}"
            );
        }
        assert_eq!(f.store.messages().len(), 1, "only the first is stored");
        assert_eq!(
            bob.settled().await.len(),
            1,
            "nothing refused is fanned out"
        );
        for unsent in [2, 3, 4] {
            assert_eq!(
                f.store.upload_claim(MediaId(unsent)),
                Some(None),
                "{unsent}"
            );
        }
        assert_eq!(f.in_flight(), 0);
    }

    #[actix::test]
    async fn a_full_writer_lane_answers_busy() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let gate = f.store.stall(Op::InsertMessages);
        f.post(&ann, "head", text("head", "hi"));
        f.store.called(Op::InsertMessages, 1).await;
        // The fixture's chat uses one lane of two; fill its queue behind the head.
        for i in 0..crate::writer::LANE_QUEUE {
            f.post(&ann, "queued", text(&format!("q{i}"), "hi"));
        }
        f.post(&ann, "over", text("over", "hi"));
        let busy = ann
            .wait_until(0, "the refusal", |fr| fr.reference() == Some("over"))
            .await;
        assert_eq!(busy.error_code(), Some("busy"));
        assert_eq!(
            f.in_flight(),
            1 + crate::writer::LANE_QUEUE,
            "only the refused one is answered; the rest wait for the lane"
        );
        assert_eq!(ann.settled().await.len(), 1);
        drop(gate);
    }

    #[actix::test]
    async fn members_that_cannot_be_loaded_make_posts_unavailable() {
        let store = MemoryStore::new();
        store.add_chat(CHAT, ChatKind::Group, &[ANN, BOB]);
        store.fail(Op::ChatMembers, Failure::Unavailable, 1);
        let shared = testing::shared(store.clone(), testing::settings());
        let room = Room::new(CHAT, shared.clone(), Writer::start(store.clone(), 1)).start();
        let ann = Fake::connect(&shared, 1, ANN);
        room.do_send(TypingSignal {
            session: ann.handle.clone(),
            reference: Some("t".into()),
            typing: Typing {
                chat_id: CHAT,
                active: true,
            },
        });
        assert_eq!(
            ann.wait_frames(1).await[0].error_code(),
            Some("unavailable")
        );
        assert!(store.batches().is_empty());
    }

    #[actix::test]
    async fn members_changed_reloads_them_before_the_next_request() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let bob = Fake::connect(&f.shared, 2, BOB);
        let dave = Fake::connect(&f.shared, 4, DAVE);
        f.post(&ann, "before", text("c1", "one"));
        bob.wait_frames(1).await;
        // Bob leaves, dave joins.
        f.store.set_members(CHAT, &[ANN, CAT, DAVE]);
        f.room.do_send(MembersChanged { chat: CHAT });
        assert_eq!(
            refused(&f, &bob, "left", text("b1", "still here?")).await,
            "forbidden"
        );
        f.post(&ann, "after", text("c2", "two"));
        let got = dave.wait_frames(1).await;
        assert_eq!(got[0].data()["content"], json!("two"));
        ann.wait_frames(2).await;
        let bob_got = bob.settled().await;
        assert_eq!(
            bob_got
                .iter()
                .filter(|fr| fr.event() == "message:received")
                .count(),
            1,
            "a member who left hears nothing more"
        );
        assert_eq!(f.store.calls(Op::ChatMembers), 2);
    }

    #[actix::test]
    async fn the_directory_forwards_members_changed_to_a_running_room_only() {
        let f = fixture();
        let dir = RoomDirectory::new(
            f.shared.clone(),
            Writer::start(f.store.clone(), 1),
            Vec::new(),
            Duration::from_secs(60),
        )
        .start();
        let ann = Fake::connect(&f.shared, 1, ANN);
        dir.do_send(MembersChanged { chat: CHAT });
        let typing = |reference: &str| {
            RoomRequest::Typing(TypingSignal {
                session: ann.handle.clone(),
                reference: Some(reference.into()),
                typing: Typing {
                    chat_id: CHAT,
                    active: true,
                },
            })
        };
        let room = dir
            .send(Route {
                chat: CHAT,
                request: typing("1"),
            })
            .await
            .expect("the directory answers")
            .expect("a room");
        ann.wait_frames(1).await;
        // The fixture's own room and the directory's, nothing for the early notice.
        f.store.called(Op::ChatMembers, 2).await;
        assert_eq!(f.store.calls(Op::ChatMembers), 2);
        dir.do_send(MembersChanged { chat: CHAT });
        f.store.called(Op::ChatMembers, 3).await;
        assert!(typing("2").try_send(&room).is_ok());
        ann.wait_frames(2).await;
        assert_eq!(f.store.calls(Op::ChatMembers), 3);
    }

    #[actix::test]
    async fn typing_reaches_the_other_members_only_and_is_acked_when_asked() {
        let f = fixture();
        let ann = Fake::connect(&f.shared, 1, ANN);
        let ann2 = Fake::connect(&f.shared, 2, ANN);
        let bob = Fake::connect(&f.shared, 3, BOB);
        let cat = Fake::connect(&f.shared, 4, CAT);
        let dave = Fake::connect(&f.shared, 5, DAVE);
        let signal = |from: &Fake, reference: Option<&str>| TypingSignal {
            session: from.handle.clone(),
            reference: reference.map(Into::into),
            typing: Typing {
                chat_id: CHAT,
                active: true,
            },
        };
        f.room.do_send(signal(&ann, Some("t")));
        f.room.do_send(signal(&dave, None));
        for other in [&bob, &cat] {
            let got = other.wait_frames(1).await;
            assert_eq!(got[0].event(), "typing");
            assert_eq!(got[0].data()["userId"], json!(ANN));
            assert_eq!(got[0].message, None);
        }
        let acked = ann.wait_frames(1).await;
        assert_eq!((acked[0].event(), acked[0].reference()), ("ack", Some("t")));
        assert_eq!(dave.wait_frames(1).await[0].error_code(), Some("forbidden"));
        assert!(
            ann2.settled().await.is_empty(),
            "one's own typing is not echoed"
        );
        assert_eq!(
            bob.settled().await.len(),
            1,
            "an outsider's typing goes nowhere"
        );
    }
}
