//! Message history.

use actix_web::{web, HttpResponse};
use parley_actors::store::Message;
use parley_actors::ErrorCode;
use parley_actors::{ChatId, MessageId};
use serde::{Deserialize, Serialize};

use super::resource;
use crate::auth::AuthUser;
use crate::db::Db;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/messages").route(web::get().to(page)));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageQuery {
    chat_id: Option<u64>,
    before: Option<u64>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    messages: Vec<Message>,
    next_before: Option<MessageId>,
}

/// GET /api/messages?chatId=&before=&limit=: newest first, keyset-paged on id;
/// `nextBefore` is the `before` of the next (older) page, null at the start.
async fn page(
    user: AuthUser,
    q: web::Query<PageQuery>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let chat = ChatId(
        q.chat_id
            .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidQuery, "chatId is required"))?,
    );
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "limit must be 1 to 100",
        ));
    }
    super::require_member(&db, chat, user.0).await?;
    let (messages, more) = db
        .messages_page(chat, q.before.map(MessageId), limit)
        .await?;
    let next_before = if more {
        messages.last().map(|m| m.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(Page {
        messages,
        next_before,
    }))
}
