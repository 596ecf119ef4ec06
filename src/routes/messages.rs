//! Message history (older pages, the page around a message, newer pages) and message
//! search.

use actix_web::{web, HttpResponse};
use parley_actors::store::Message;
use parley_actors::ErrorCode;
use parley_actors::{ChatId, MessageId};
use serde::{Deserialize, Serialize};

use super::resource;
use crate::auth::{AuthUser, LoginThrottle};
use crate::db::groups::HistoryAccess;
use crate::db::history::Window;
use crate::db::search::SearchPage;
use crate::db::Db;
use crate::domain::search_text::QueryWords;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/messages").route(web::get().to(page)))
        .service(resource("/messages/search").route(web::get().to(search)));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageQuery {
    chat_id: Option<u64>,
    before: Option<u64>,
    around: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    messages: Vec<Message>,
    next_before: Option<MessageId>,
}

/// A page that can go on both ways (`around`, `after`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WindowPage {
    messages: Vec<Message>,
    next_before: Option<MessageId>,
    next_after: Option<MessageId>,
}

impl From<Window> for WindowPage {
    fn from(w: Window) -> Self {
        WindowPage {
            messages: w.messages,
            next_before: w.next_before,
            next_after: w.next_after,
        }
    }
}

/// `limit`, or `default` when absent; 400 `invalid_query` outside 1..=`max`.
fn limit_of(limit: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {max}"),
        ))
    }
}

/// GET /api/messages?chatId=&before=|around=|after=&limit=: newest first, keyset-paged
/// on id. `before`: older than it (`nextBefore` is the next older page's `before`,
/// null at the start of the chat). `around`: the page centred on that message of the
/// chat (404 when it is not one). `after`: the oldest `limit` newer than it. The last
/// two also say `nextAfter` (the next newer page's `after`, null at the present).
async fn page(
    user: AuthUser,
    q: web::Query<PageQuery>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let chat = ChatId(
        q.chat_id
            .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidQuery, "chatId is required"))?,
    );
    let limit = limit_of(q.limit, 50, 100)?;
    let anchors = [q.before, q.around, q.after].iter().flatten().count();
    if anchors > 1 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "give at most one of before, around and after",
        ));
    }
    // A former member of a group reads what was sent up to their departure (its
    // system message included) and nothing after: every page is cut there.
    let up_to = match db.history_access(chat, user.0).await? {
        HistoryAccess::Member => None,
        HistoryAccess::Former { up_to } => Some(up_to),
        HistoryAccess::None => {
            return Err(ApiError::Forbidden("you are not a member of this chat"))
        }
    };
    let cut = |mut w: Window| {
        if let Some(up_to) = up_to {
            let before = w.messages.len();
            w.messages.retain(|m| m.id <= up_to);
            if w.messages.len() != before || w.next_after.is_some_and(|a| a >= up_to) {
                w.next_after = None;
            }
        }
        WindowPage::from(w)
    };
    if let Some(at) = q.around.map(MessageId) {
        if !db.is_message_of(chat, at).await? || up_to.is_some_and(|u| at > u) {
            return Err(ApiError::NotFound("message"));
        }
        let window = db.messages_around(chat, at, limit).await?;
        return Ok(HttpResponse::Ok().json(cut(window)));
    }
    if let Some(after) = q.after.map(MessageId) {
        let window = db.messages_after_in(chat, after, limit).await?;
        return Ok(HttpResponse::Ok().json(cut(window)));
    }
    let before = match (q.before.map(MessageId), up_to) {
        (Some(b), Some(u)) => Some(b.min(MessageId(u.0 + 1))),
        (None, Some(u)) => Some(MessageId(u.0 + 1)),
        (b, None) => b,
    };
    let (messages, more) = db.messages_page(chat, before, limit).await?;
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchQuery {
    query: Option<String>,
    chat_id: Option<u64>,
    before: Option<u64>,
    limit: Option<u32>,
}

/// Longest query, in characters.
const QUERY_MAX_CHARS: usize = 100;

/// GET /api/messages/search?query=&chatId=&before=&limit=: the plaintext text messages
/// of the caller's chats (of one chat with `chatId`) in which every word of the query
/// (of 2 characters or more) starts a word, newest first, keyset-paged on id like the
/// history. Limited per user (`limits.search_per_min`, a bucket of its own).
async fn search(
    user: AuthUser,
    q: web::Query<SearchQuery>,
    db: web::Data<Db>,
    throttle: web::Data<LoginThrottle>,
) -> Result<HttpResponse, ApiError> {
    throttle
        .check_message_search(user.0)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let raw = q.query.as_deref().unwrap_or_default().trim();
    // Counted before anything else looks at it: a huge query costs nothing more.
    if raw.chars().nth(QUERY_MAX_CHARS).is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::QueryTooLong,
            format!("query is longer than {QUERY_MAX_CHARS} characters"),
        ));
    }
    let words = QueryWords::parse(raw).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::QueryTooShort,
            "query needs a word of at least 2 letters or digits",
        )
    })?;
    let limit = limit_of(q.limit, 20, 50)?;
    let chat = q.chat_id.map(ChatId);
    if let Some(chat) = chat {
        super::require_member(&db, chat, user.0).await?;
    }
    match db
        .search_messages(user.0, chat, &words, q.before.map(MessageId), limit)
        .await?
    {
        SearchPage::Found { messages, more } => {
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
        SearchPage::TooBroad => Err(ApiError::Unavailable(
            "the search took too long: add words or search one chat",
        )),
    }
}
