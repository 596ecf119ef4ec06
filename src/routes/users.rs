//! The signed-in user and user search.

use actix_web::{web, HttpResponse};
use parley_actors::ErrorCode;
use parley_actors::Realtime;
use serde::Deserialize;

use super::{resource, UserJson};
use crate::auth::{AuthUser, LoginThrottle};
use crate::db::Db;
use crate::domain::{fold, Email};
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/users/me").route(web::get().to(me)))
        .service(resource("/users/search").route(web::get().to(search)));
}

/// Most results of one search.
const SEARCH_LIMIT: u32 = 20;

/// GET /api/users/me
async fn me(
    user: AuthUser,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
) -> Result<HttpResponse, ApiError> {
    let row = db
        .user_by_id(user.0)
        .await?
        .ok_or(ApiError::Unauthorized(ErrorCode::InvalidToken))?;
    let online = rt.is_online(user.0).await;
    Ok(HttpResponse::Ok().json(UserJson::new(row, user.0, online)))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(alias = "q")]
    query: Option<String>,
}

/// GET /api/users/search?query=: users whose username contains the text (≥ 2
/// characters; prefix matches first), or — when the text has an `@` — the one user
/// whose whole email address it is; the caller excluded, at most 20; other users'
/// emails are never shown. Part of an address finds nothing, so addresses cannot be
/// spelled out a fragment at a time; searches are limited per user
/// (`limits.search_per_min`).
async fn search(
    user: AuthUser,
    q: web::Query<SearchQuery>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
    throttle: web::Data<LoginThrottle>,
) -> Result<HttpResponse, ApiError> {
    throttle
        .check_search(user.0)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let raw = q.query.as_deref().unwrap_or_default();
    if raw.len() > 1024 {
        return Err(ApiError::bad_request(
            ErrorCode::QueryTooLong,
            "query is too long",
        ));
    }
    let needle = fold::fold(raw).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "query may not contain invisible or control characters",
        )
    })?;
    let n = needle.chars().count();
    if n < 2 {
        return Err(ApiError::bad_request(
            ErrorCode::QueryTooShort,
            "query must be at least 2 characters",
        ));
    }
    if n > 254 {
        return Err(ApiError::bad_request(
            ErrorCode::QueryTooLong,
            "query is too long",
        ));
    }
    let rows = if needle.contains('@') {
        match Email::parse(&needle) {
            Ok(email) => db
                .user_by_email(&email, user.0)
                .await?
                .into_iter()
                .collect(),
            // Not a whole address: it names nobody (and no username has an `@`).
            Err(_) => Vec::new(),
        }
    } else {
        db.search_usernames(&needle, user.0, SEARCH_LIMIT).await?
    };
    let ids: Vec<_> = rows.iter().map(|r| r.id).collect();
    let online = rt.online(&ids).await;
    let users: Vec<UserJson> = rows
        .into_iter()
        .zip(online)
        .map(|(r, online)| UserJson::new(r, user.0, online))
        .collect();
    Ok(HttpResponse::Ok().json(users))
}
