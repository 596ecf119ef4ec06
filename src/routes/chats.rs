//! Chats: the list (paged), one chat, starting a direct or group chat, and running
//! a group (rename, add, remove, roles, leave; the rules live in `db::groups`).

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{web, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parley_actors::protocol::ServerEvent;
use parley_actors::store::{ChatKind, Message};
use parley_actors::ErrorCode;
use parley_actors::{ChatId, Realtime, Timestamp, UserId};
use serde::{Deserialize, Serialize};

use super::{resource, UserJson};
use crate::auth::AuthUser;
use crate::config::Settings;
use crate::db::chats::{ChatCursor, ChatSummary};
use crate::db::groups::{GroupChange, MemberRole, Refusal};
use crate::db::Db;
use crate::error::ApiError;

const MAX_TITLE_CHARS: usize = 100;
/// Chats per page of the list when the client does not say.
pub const DEFAULT_CHAT_PAGE: u32 = 50;
/// Most chats per page of the list.
pub const MAX_CHAT_PAGE: u32 = 200;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/chats")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/chats/{id}")
            .route(web::get().to(one))
            .route(web::patch().to(rename)),
    )
    .service(resource("/chats/{id}/settings").route(web::patch().to(settings_of)))
    .service(resource("/chats/{id}/members/me").route(web::delete().to(leave)))
    .service(resource("/chats/{id}/members").route(web::post().to(add_members)))
    .service(
        resource("/chats/{id}/members/{user}")
            .route(web::delete().to(remove_member))
            .route(web::patch().to(set_role)),
    );
}

/// New chats per user per minute (`limits.chats_per_min`): starting chats puts rows
/// in other people's chat lists, so one account cannot fill everyone's. GCRA buckets
/// in memory per process, like the login throttle.
pub struct ChatRateLimit {
    by_user: DefaultKeyedRateLimiter<u64>,
    /// Group changes (rename, add, remove, roles): each puts a system message in
    /// every member's chat, so they are limited like new chats, in a bucket of their own.
    changes: DefaultKeyedRateLimiter<u64>,
    checks: AtomicU64,
}

impl ChatRateLimit {
    pub fn new(settings: &Settings) -> ChatRateLimit {
        let n = NonZeroU32::new(settings.limits.chats_per_min).unwrap_or(NonZeroU32::MIN);
        ChatRateLimit {
            by_user: RateLimiter::keyed(Quota::per_minute(n)),
            changes: RateLimiter::keyed(Quota::per_minute(n)),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one new chat for `user`; `RateLimited` when they started too many.
    fn check(&self, user: UserId) -> Result<(), ApiError> {
        Self::take(&self.by_user, &self.checks, user)
    }

    /// Counts one group change by `user`.
    fn check_change(&self, user: UserId) -> Result<(), ApiError> {
        Self::take(&self.changes, &self.checks, user)
    }

    fn take(
        bucket: &DefaultKeyedRateLimiter<u64>,
        checks: &AtomicU64,
        user: UserId,
    ) -> Result<(), ApiError> {
        // Buckets that are full again are forgotten now and then: memory stays bounded.
        if checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            bucket.retain_recent();
        }
        bucket.check_key(&user.0).map_err(|not_until| {
            let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited { retry_after: wait }
        })
    }
}

/// A member in the `chat` object: the `user` object and their role.
#[derive(Serialize)]
pub struct MemberJson {
    #[serde(flatten)]
    user: UserJson,
    role: MemberRole,
}

/// The `chat` object of PROTOCOL.md.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatJson {
    id: ChatId,
    kind: ChatKind,
    title: Option<String>,
    members: Vec<MemberJson>,
    last_message: Option<Message>,
    unread_count: u64,
    created_at: Timestamp,
    /// The viewer's own setting: notifications of this chat are muted.
    muted: bool,
    /// Until when; `null` when not muted or muted until unmuted.
    muted_until: Option<Timestamp>,
}

/// `muted` and `mutedUntil` as the API shows a stored `muted_until` that is ahead.
fn mute_fields(until: Option<chrono::NaiveDateTime>) -> (bool, Option<Timestamp>) {
    match until {
        None => (false, None),
        Some(u) if u >= crate::db::chats::muted_forever() => (true, None),
        Some(u) => (true, Some(Timestamp::from(u))),
    }
}

/// What the viewer may know of the members' presence: who has a session on any
/// node (one question to the cluster for the whole page), and whose presence is
/// hidden from them (a block either way: shown offline, no last-seen time).
pub struct Presence {
    online: HashSet<UserId>,
    hidden: HashSet<UserId>,
}

async fn presence_in(
    db: &Db,
    rt: &Realtime,
    viewer: UserId,
    chats: &[ChatSummary],
) -> Result<Presence, ApiError> {
    Ok(Presence {
        online: online_in(rt, chats).await,
        hidden: db.block_partners(viewer).await?,
    })
}

/// The members of `chats` who have a session on any node: one question to the
/// cluster for the whole page.
async fn online_in(rt: &Realtime, chats: &[ChatSummary]) -> HashSet<UserId> {
    let mut ids: Vec<UserId> = chats
        .iter()
        .flat_map(|c| c.members.iter().map(|m| m.id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let online = rt.online(&ids).await;
    ids.into_iter()
        .zip(online)
        .filter_map(|(u, on)| on.then_some(u))
        .collect()
}

impl ChatJson {
    /// `presence`: what the viewer may know of who is online (see [`presence_in`]).
    fn new(c: ChatSummary, viewer: UserId, presence: &Presence) -> ChatJson {
        let roles = c.roles;
        let (muted, muted_until) = mute_fields(c.muted_until);
        ChatJson {
            muted,
            muted_until,
            id: c.id,
            kind: c.kind,
            title: c.title,
            members: c
                .members
                .into_iter()
                .map(|mut u| {
                    let hidden = presence.hidden.contains(&u.id);
                    let on = !hidden && presence.online.contains(&u.id);
                    if hidden {
                        u.last_seen_at = None;
                    }
                    let role = roles.get(&u.id).copied().unwrap_or(MemberRole::Member);
                    MemberJson {
                        user: UserJson::new(u, viewer, on),
                        role,
                    }
                })
                .collect(),
            last_message: c.last_message,
            unread_count: c.unread_count,
            created_at: c.created_at,
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    before: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChatPage {
    chats: Vec<ChatJson>,
    next_before: Option<String>,
}

/// GET /api/chats?limit=&before=: the caller's chats, newest activity first, a page
/// at a time (keyset on activity and id); `nextBefore` is the `before` of the next
/// (older) page, null on the last one.
async fn list(
    user: AuthUser,
    q: web::Query<ListQuery>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_CHAT_PAGE);
    if !(1..=MAX_CHAT_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_CHAT_PAGE}"),
        ));
    }
    let before = match q.before.as_deref() {
        None => None,
        Some(s) => Some(ChatCursor::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                "before must be a nextBefore the server returned",
            )
        })?),
    };
    let (chats, next) = db.chat_page(user.0, before, limit).await?;
    let online = presence_in(&db, &rt, user.0, &chats).await?;
    Ok(HttpResponse::Ok().json(ChatPage {
        chats: chats
            .into_iter()
            .map(|c| ChatJson::new(c, user.0, &online))
            .collect(),
        next_before: next.map(|c| c.to_string()),
    }))
}

/// Loads one chat for a member: 403 when it is not theirs or does not exist.
pub async fn chat_for_member(db: &Db, user: UserId, chat: ChatId) -> Result<ChatSummary, ApiError> {
    db.chat_summary(user, chat)
        .await?
        .ok_or(ApiError::Forbidden("you are not a member of this chat"))
}

/// GET /api/chats/{id}
async fn one(
    user: AuthUser,
    path: web::Path<u64>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
) -> Result<HttpResponse, ApiError> {
    let chat = ChatId(path.into_inner());
    Ok(HttpResponse::Ok().json(chat_json(&db, &rt, user.0, chat).await?))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CreateChat {
    Direct {
        #[serde(rename = "userId")]
        user_id: u64,
    },
    Group {
        title: String,
        #[serde(rename = "memberIds")]
        member_ids: Vec<u64>,
    },
}

/// POST /api/chats: `{userId}` opens the direct chat (200 when it existed, 201 when
/// new); `{title, memberIds}` creates a group (201) with the caller in it.
async fn create(
    user: AuthUser,
    body: web::Json<serde_json::Value>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
    limit: web::Data<ChatRateLimit>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let req: CreateChat = serde_json::from_value(body.into_inner()).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::InvalidField,
            "send {\"userId\": id} for a direct chat or {\"title\", \"memberIds\": [ids]} for a group",
        )
    })?;
    let (chat, created) = match req {
        CreateChat::Direct { user_id } => {
            let other = UserId(user_id);
            if other == user.0 {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidMember,
                    "you cannot start a chat with yourself",
                ));
            }
            if db.count_users(&[other]).await? != 1 {
                return Err(ApiError::NotFound("user"));
            }
            // Someone who blocked the caller cannot be reached through a chat,
            // new or old; the answer says no more than that.
            if db.is_blocked_by(other, user.0).await? {
                return Err(ApiError::Forbidden(
                    "you cannot start a chat with this user",
                ));
            }
            // Opening the chat two people already have is free; only a new one counts.
            match db.direct_chat(user.0, other).await? {
                Some(chat) => (chat, false),
                None => {
                    limit.check(user.0)?;
                    db.create_direct_chat(user.0, other).await?
                }
            }
        }
        CreateChat::Group { title, member_ids } => {
            let title = title.trim();
            if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidTitle,
                    format!("a group title is 1 to {MAX_TITLE_CHARS} characters"),
                ));
            }
            let max = settings.limits.group_max_members;
            let mut members: Vec<UserId> = member_ids.into_iter().map(UserId).collect();
            members.push(user.0);
            members.sort();
            members.dedup();
            if members.len() < 2 || members.len() > max {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidMember,
                    format!("a group has 2 to {max} members, you included"),
                ));
            }
            limit.check(user.0)?;
            if db.count_users(&members).await? != members.len() {
                return Err(ApiError::NotFound("user"));
            }
            if db.blocked_by_any(user.0, &members).await? {
                return Err(ApiError::Forbidden("you cannot add one of these users"));
            }
            (db.create_group_chat(user.0, title, &members).await?, true)
        }
    };
    let summary = chat_for_member(&db, user.0, chat).await?;
    if created {
        let ids: Vec<UserId> = summary.members.iter().map(|m| m.id).collect();
        rt.contacts_added(&ids);
    }
    let online = presence_in(&db, &rt, user.0, std::slice::from_ref(&summary)).await?;
    let body = ChatJson::new(summary, user.0, &online);
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// The chat as `viewer` sees it (403 when they are not in it).
async fn chat_json(
    db: &Db,
    rt: &Realtime,
    viewer: UserId,
    chat: ChatId,
) -> Result<ChatJson, ApiError> {
    let summary = chat_for_member(db, viewer, chat).await?;
    let presence = presence_in(db, rt, viewer, std::slice::from_ref(&summary)).await?;
    Ok(ChatJson::new(summary, viewer, &presence))
}

fn refused(why: Refusal, max: usize) -> ApiError {
    match why {
        Refusal::NotMember => ApiError::Forbidden("you are not a member of this chat"),
        Refusal::NotAGroup => ApiError::Conflict {
            code: ErrorCode::NotAGroup,
            message: "a direct chat has no title, roles or other members".into(),
        },
        Refusal::NotAllowed(why) => ApiError::Forbidden(why),
        Refusal::NoSuchMember => ApiError::NotFound("member"),
        Refusal::TooMany => ApiError::bad_request(
            ErrorCode::InvalidMember,
            format!("a group has 2 to {max} members"),
        ),
        Refusal::UnknownUser => ApiError::NotFound("user"),
        Refusal::Blocked => ApiError::Forbidden("you cannot add one of these users"),
        // Callers answer "unchanged" with the chat as it is; never an error.
        Refusal::Unchanged => ApiError::Conflict {
            code: ErrorCode::Conflict,
            message: "nothing to change".into(),
        },
    }
}

/// Tells everyone concerned about a group change, in this order: every node's
/// rooms load the members again (a removed member's sessions get nothing of the
/// chat from then on), the system messages go out as `message:received` to the
/// members and to whoever was removed (it is the last message they may read), the
/// members get `chat:updated`, the removed get `chat:removed` (and, as before,
/// `chat:member-left` goes to both), new members become contacts.
pub async fn announce(db: &Db, rt: &Realtime, change: &GroupChange) -> Result<(), ApiError> {
    rt.members_changed(change.chat);
    let mut audience = change.members.clone();
    audience.extend(change.removed.iter().copied());
    for m in &change.messages {
        rt.deliver_message(&audience, m);
    }
    if let Some(&someone) = change.members.first() {
        if let Some(summary) = db.chat_summary(someone, change.chat).await? {
            // One object for every member: nothing per viewer in it (no unread
            // count, no email, no presence, which blocks may hide per viewer).
            let none = Presence {
                online: HashSet::new(),
                hidden: HashSet::new(),
            };
            let mut chat = serde_json::to_value(ChatJson::new(summary, UserId(0), &none))
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("chat json: {e}")))?;
            if let Some(o) = chat.as_object_mut() {
                o.remove("unreadCount");
                o.remove("muted");
                o.remove("mutedUntil");
            }
            if let Some(members) = chat.get_mut("members").and_then(|m| m.as_array_mut()) {
                for m in members.iter_mut().filter_map(|m| m.as_object_mut()) {
                    m.remove("online");
                    m.remove("lastSeenAt");
                }
            }
            rt.notify_users(&change.members, &ServerEvent::ChatUpdated { chat: &chat });
        }
    }
    let first = change.messages.first().map(|m| m.id);
    for &gone in &change.removed {
        rt.notify_users(
            &[gone],
            &ServerEvent::ChatRemoved {
                chat_id: change.chat,
                message_id: first,
            },
        );
        rt.notify_users(
            &audience,
            &ServerEvent::ChatMemberLeft {
                chat_id: change.chat,
                user_id: gone,
            },
        );
    }
    if !change.added.is_empty() {
        rt.contacts_added(&change.members);
    }
    Ok(())
}

/// A change's outcome as the route answers it: the chat as the caller now sees it
/// (200), also when there was nothing to change.
async fn answer(
    db: &Db,
    rt: &Realtime,
    settings: &Settings,
    caller: UserId,
    chat: ChatId,
    outcome: Result<GroupChange, Refusal>,
) -> Result<HttpResponse, ApiError> {
    match outcome {
        Ok(change) => announce(db, rt, &change).await?,
        Err(Refusal::Unchanged) => {}
        Err(why) => return Err(refused(why, settings.limits.group_max_members)),
    }
    Ok(HttpResponse::Ok().json(chat_json(db, rt, caller, chat).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    title: String,
}

/// PATCH /api/chats/{id} {title}: the owner or an admin renames the group (200, the chat).
async fn rename(
    user: AuthUser,
    path: web::Path<u64>,
    body: web::Json<serde_json::Value>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
    limit: web::Data<ChatRateLimit>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let chat = ChatId(path.into_inner());
    let req: RenameBody = serde_json::from_value(body.into_inner())
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidField, "send {\"title\": \"…\"}"))?;
    let title = req.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidTitle,
            format!("a group title is 1 to {MAX_TITLE_CHARS} characters"),
        ));
    }
    limit.check_change(user.0)?;
    let outcome = db.rename_group(chat, user.0, title).await?;
    answer(&db, &rt, &settings, user.0, chat, outcome).await
}

/// The longest a chat is muted until a given time (longer: until unmuted).
const MAX_MUTE: chrono::TimeDelta = chrono::TimeDelta::days(366);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SettingsBody {
    muted: bool,
    #[serde(default)]
    muted_until: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettingsJson {
    chat_id: ChatId,
    muted: bool,
    muted_until: Option<Timestamp>,
}

/// PATCH /api/chats/{id}/settings {muted, mutedUntil?}: the caller's own settings
/// of a chat they are in (200 with them). `mutedUntil` (RFC 3339, ahead, at most
/// 366 days) mutes until then; without it, until unmuted. The caller's other
/// sessions get `chat:settings`.
async fn settings_of(
    user: AuthUser,
    path: web::Path<u64>,
    body: web::Json<serde_json::Value>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
) -> Result<HttpResponse, ApiError> {
    let chat = ChatId(path.into_inner());
    let body = body.into_inner();
    // An object only (serde would read `[true]` as `{muted: true}`).
    let req: SettingsBody = Some(body)
        .filter(serde_json::Value::is_object)
        .and_then(|b| serde_json::from_value(b).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidField,
                "send {\"muted\": true|false, \"mutedUntil\"?: RFC 3339 time}",
            )
        })?;
    let now = chrono::Utc::now();
    let until = match (req.muted, req.muted_until.as_deref()) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidField,
                "mutedUntil goes with muted: true",
            ))
        }
        (true, None) => Some(crate::db::chats::muted_forever()),
        (true, Some(t)) => {
            let at = chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    ApiError::bad_request(
                        ErrorCode::InvalidField,
                        "mutedUntil is an RFC 3339 time, e.g. 2026-01-31T08:00:00Z",
                    )
                })?
                .with_timezone(&chrono::Utc);
            if at <= now || at > now + MAX_MUTE {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidField,
                    "mutedUntil is ahead, at most 366 days (leave it out to mute until unmuted)",
                ));
            }
            // Stored to the millisecond, as DATETIME(3) keeps it.
            Some(
                chrono::DateTime::from_timestamp_millis(at.timestamp_millis())
                    .unwrap_or(at)
                    .naive_utc(),
            )
        }
    };
    if !db.set_muted(chat, user.0, until).await? {
        return Err(ApiError::Forbidden("you are not a member of this chat"));
    }
    let (muted, muted_until) = mute_fields(until);
    rt.notify_users(
        &[user.0],
        &ServerEvent::ChatSettings {
            chat_id: chat,
            muted,
            muted_until,
        },
    );
    Ok(HttpResponse::Ok().json(SettingsJson {
        chat_id: chat,
        muted,
        muted_until,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    #[serde(rename = "userIds")]
    user_ids: Vec<u64>,
}

/// POST /api/chats/{id}/members {userIds}: the owner or an admin adds people (200,
/// the chat); those already in it are skipped.
async fn add_members(
    user: AuthUser,
    path: web::Path<u64>,
    body: web::Json<serde_json::Value>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
    limit: web::Data<ChatRateLimit>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let chat = ChatId(path.into_inner());
    let max = settings.limits.group_max_members;
    let req: AddBody = serde_json::from_value(body.into_inner())
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidField, "send {\"userIds\": [ids]}"))?;
    // Bounded before anything looks at the ids: no group holds more.
    if req.user_ids.is_empty() || req.user_ids.len() > max {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidMember,
            format!("userIds holds 1 to {max} ids"),
        ));
    }
    let ids: Vec<UserId> = req.user_ids.into_iter().map(UserId).collect();
    limit.check_change(user.0)?;
    let outcome = db.add_members(chat, user.0, &ids, max).await?;
    answer(&db, &rt, &settings, user.0, chat, outcome).await
}

/// DELETE /api/chats/{id}/members/{userId}: removes a member (the owner anyone, an
/// admin plain members), or, for one's own id, leaves (204).
async fn remove_member(
    user: AuthUser,
    path: web::Path<(u64, u64)>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
    limit: web::Data<ChatRateLimit>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let (chat, target) = path.into_inner();
    let (chat, target) = (ChatId(chat), UserId(target));
    if target != user.0 {
        limit.check_change(user.0)?;
    }
    match db.remove_member(chat, user.0, target).await? {
        Ok(change) => {
            announce(&db, &rt, &change).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        Err(why) => Err(refused(why, settings.limits.group_max_members)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

/// PATCH /api/chats/{id}/members/{userId} {role}: the owner makes a member an
/// admin or a member again, or hands the group over (`owner`: they become an admin).
async fn set_role(
    user: AuthUser,
    path: web::Path<(u64, u64)>,
    body: web::Json<serde_json::Value>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
    limit: web::Data<ChatRateLimit>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let (chat, target) = path.into_inner();
    let (chat, target) = (ChatId(chat), UserId(target));
    let role = serde_json::from_value::<RoleBody>(body.into_inner())
        .ok()
        .and_then(|b| MemberRole::parse(&b.role))
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidField,
                "send {\"role\": \"admin\" | \"member\" | \"owner\"}",
            )
        })?;
    limit.check_change(user.0)?;
    let outcome = db.set_role(chat, user.0, target, role).await?;
    answer(&db, &rt, &settings, user.0, chat, outcome).await
}

/// DELETE /api/chats/{id}/members/me: the caller leaves the group (204): the same
/// as removing oneself. An owner hands the group to the oldest admin, else the
/// oldest member. From then on the caller gets nothing of the group and reads its
/// history only up to their departure.
async fn leave(
    user: AuthUser,
    path: web::Path<u64>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let chat = ChatId(path.into_inner());
    match db.leave_chat(chat, user.0).await? {
        Ok(change) => {
            announce(&db, &rt, &change).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        Err(Refusal::NotAGroup) => Err(ApiError::Conflict {
            code: ErrorCode::NotAGroup,
            message: "a direct chat cannot be left; only groups can".into(),
        }),
        Err(why) => Err(refused(why, settings.limits.group_max_members)),
    }
}
