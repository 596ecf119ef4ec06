//! Chats: the list, one chat, and starting a direct or group chat.

use actix_web::{web, HttpResponse};
use parley_actors::store::{ChatKind, Message};
use parley_actors::{ChatId, Realtime, Timestamp, UserId};
use serde::{Deserialize, Serialize};

use super::{resource, UserJson};
use crate::auth::AuthUser;
use crate::db::chats::ChatSummary;
use crate::db::Db;
use crate::error::ApiError;

/// Most members of a group, the creator included.
pub const MAX_GROUP_MEMBERS: usize = 256;
const MAX_TITLE_CHARS: usize = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/chats")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(resource("/chats/{id}").route(web::get().to(one)));
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

impl ChatJson {
    fn new(c: ChatSummary, viewer: UserId, rt: &Realtime) -> ChatJson {
        ChatJson {
            id: c.id,
            kind: c.kind,
            title: c.title,
            members: c
                .members
                .into_iter()
                .map(|u| {
                    let online = rt.is_online(u.id);
                    UserJson::new(u, viewer, online)
                })
                .collect(),
            last_message: c.last_message,
            unread_count: c.unread_count,
            created_at: c.created_at,
        }
    }
}

/// GET /api/chats: the caller's chats, newest activity first.
async fn list(
    user: AuthUser,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
) -> Result<HttpResponse, ApiError> {
    let chats = db.chat_summaries(user.0, None).await?;
    let body: Vec<ChatJson> = chats
        .into_iter()
        .map(|c| ChatJson::new(c, user.0, &rt))
        .collect();
    Ok(HttpResponse::Ok().json(body))
}

/// Loads one chat for a member: 404 when it does not exist, 403 when not theirs.
pub async fn chat_for_member(db: &Db, user: UserId, chat: ChatId) -> Result<ChatSummary, ApiError> {
    super::require_member(db, chat, user).await?;
    db.chat_summaries(user, Some(chat))
        .await?
        .pop()
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
    Ok(HttpResponse::Ok().json(ChatJson::new(chat, user.0, &rt)))
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
) -> Result<HttpResponse, ApiError> {
    let req: CreateChat = serde_json::from_value(body.into_inner()).map_err(|_| {
        ApiError::bad_request(
            "invalid_field",
            "send {\"userId\": id} for a direct chat or {\"title\", \"memberIds\": [ids]} for a group",
        )
    })?;
    let (chat, created) = match req {
        CreateChat::Direct { user_id } => {
            let other = UserId(user_id);
            if other == user.0 {
                return Err(ApiError::bad_request(
                    "invalid_member",
                    "you cannot start a chat with yourself",
                ));
            }
            if db.count_users(&[other]).await? != 1 {
                return Err(ApiError::NotFound("user"));
            }
            db.create_direct_chat(user.0, other).await?
        }
        CreateChat::Group { title, member_ids } => {
            let title = title.trim();
            if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
                return Err(ApiError::bad_request(
                    "invalid_title",
                    format!("a group title is 1 to {MAX_TITLE_CHARS} characters"),
                ));
            }
            let mut members: Vec<UserId> = member_ids.into_iter().map(UserId).collect();
            members.push(user.0);
            members.sort();
            members.dedup();
            if members.len() < 2 || members.len() > MAX_GROUP_MEMBERS {
                return Err(ApiError::bad_request(
                    "invalid_member",
                    format!("a group has 2 to {MAX_GROUP_MEMBERS} members, you included"),
                ));
            }
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
    let body = ChatJson::new(summary, user.0, &rt);
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}
