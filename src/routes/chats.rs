//! Chats: the list (paged), one chat, starting a direct or group chat, and leaving
//! a group.

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
use crate::db::chats::{ChatCursor, ChatSummary, Leave};
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
    .service(resource("/chats/{id}").route(web::get().to(one)))
    .service(resource("/chats/{id}/members/me").route(web::delete().to(leave)));
}

/// New chats per user per minute (`limits.chats_per_min`): starting chats puts rows
/// in other people's chat lists, so one account cannot fill everyone's. GCRA buckets
/// in memory per process, like the login throttle.
pub struct ChatRateLimit {
    by_user: DefaultKeyedRateLimiter<u64>,
    checks: AtomicU64,
}

impl ChatRateLimit {
    pub fn new(settings: &Settings) -> ChatRateLimit {
        let n = NonZeroU32::new(settings.limits.chats_per_min).unwrap_or(NonZeroU32::MIN);
        ChatRateLimit {
            by_user: RateLimiter::keyed(Quota::per_minute(n)),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one new chat for `user`; `RateLimited` when they started too many.
    fn check(&self, user: UserId) -> Result<(), ApiError> {
        // Buckets that are full again are forgotten now and then: memory stays bounded.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.by_user.retain_recent();
        }
        self.by_user.check_key(&user.0).map_err(|not_until| {
            let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited { retry_after: wait }
        })
    }
}

/// The `chat` object of PROTOCOL.md.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatJson {
    id: ChatId,
    kind: ChatKind,
    title: Option<String>,
    members: Vec<UserJson>,
    last_message: Option<Message>,
    unread_count: u64,
    created_at: Timestamp,
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
    /// `online`: which of the members have a session on any node (see [`online_in`]).
    fn new(c: ChatSummary, viewer: UserId, online: &HashSet<UserId>) -> ChatJson {
        ChatJson {
            id: c.id,
            kind: c.kind,
            title: c.title,
            members: c
                .members
                .into_iter()
                .map(|u| {
                    let on = online.contains(&u.id);
                    UserJson::new(u, viewer, on)
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
    let online = online_in(&rt, &chats).await;
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
    let chat = chat_for_member(&db, user.0, ChatId(path.into_inner())).await?;
    let online = online_in(&rt, std::slice::from_ref(&chat)).await;
    Ok(HttpResponse::Ok().json(ChatJson::new(chat, user.0, &online)))
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
            (db.create_group_chat(user.0, title, &members).await?, true)
        }
    };
    let summary = chat_for_member(&db, user.0, chat).await?;
    if created {
        let ids: Vec<UserId> = summary.members.iter().map(|m| m.id).collect();
        rt.contacts_added(&ids);
    }
    let online = online_in(&rt, std::slice::from_ref(&summary)).await;
    let body = ChatJson::new(summary, user.0, &online);
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// DELETE /api/chats/{id}/members/me: the caller leaves the group (204). The others
/// and the caller's other sessions get `chat:member-left`; from then on the caller
/// gets nothing of the group and may not read it (403, as an outsider).
async fn leave(
    user: AuthUser,
    path: web::Path<u64>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
) -> Result<HttpResponse, ApiError> {
    let chat = ChatId(path.into_inner());
    match db.leave_group(chat, user.0).await? {
        Leave::NotMember => Err(ApiError::Forbidden("you are not a member of this chat")),
        Leave::Direct => Err(ApiError::Conflict {
            code: ErrorCode::NotAGroup,
            message: "a direct chat cannot be left; only groups can".into(),
        }),
        Leave::Left { mut remaining } => {
            rt.members_changed(chat);
            remaining.push(user.0);
            rt.notify_users(
                &remaining,
                &ServerEvent::ChatMemberLeft {
                    chat_id: chat,
                    user_id: user.0,
                },
            );
            Ok(HttpResponse::NoContent().finish())
        }
    }
}
