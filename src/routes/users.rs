//! The signed-in user (and deleting or exporting their account) and user search.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use parley_actors::ErrorCode;
use parley_actors::{ChatId, Realtime, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{resource, UserJson, DELETED_ACCOUNT};
use crate::auth::{AuthSessions, AuthUser, Hasher, LoginThrottle};
use crate::config::Settings;
use crate::db::users::Identity;
use crate::db::{acting_for, Db, DbError};
use crate::domain::{fold, Email};
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/users/me")
            .route(web::get().to(me))
            .route(web::delete().to(delete_me)),
    )
    .service(resource("/users/me/export").route(web::get().to(export)))
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
        .filter(|r| !r.identity.is_deleted())
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    password: String,
}

/// DELETE /api/users/me `{password}` → 204: deletes the caller's account (see
/// `admin::delete_account`: email, username, password hash, public key and uploads
/// erased, every session revoked, every group left; direct chats and sent messages
/// stay, shown as from "Deleted account"). The password is checked like a login:
/// through the hashing pool's admission and the account's login delay, so this is
/// no faster a way to guess it; a wrong one is 403 `wrong_password`.
// Each argument is an extractor actix fills in; bundling them would only hide which.
#[allow(clippy::too_many_arguments)]
async fn delete_me(
    req: HttpRequest,
    user: AuthUser,
    body: web::Json<DeleteBody>,
    db: web::Data<Db>,
    hasher: web::Data<Hasher>,
    throttle: web::Data<LoginThrottle>,
    rt: web::Data<Realtime>,
    settings: web::Data<Settings>,
    sessions: web::Data<AuthSessions>,
) -> Result<HttpResponse, ApiError> {
    let admission = crate::auth::confirm::confirm_password(
        &req,
        user.0,
        &body.password,
        &db,
        &hasher,
        &throttle,
    )
    .await?;
    drop(admission);
    let Some(departure) =
        crate::admin::delete_account(&db, &settings.storage.uploads_dir, user.0).await?
    else {
        return Err(ApiError::Unauthorized(ErrorCode::InvalidToken));
    };
    // This node closes the account's sockets now; the others within their poll.
    sessions.revoked(&departure.revoked_sessions);
    // Each group hears it as a member leaving: the `left` line, `chat:updated`,
    // `chat:member-left`, on every node at once.
    for change in &departure.groups_left {
        crate::routes::chats::announce(&db, &rt, change).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Chats per page of an export.
const EXPORT_CHAT_PAGE: u32 = 64;
/// Messages per page of an export: a page is what the export holds in memory.
const EXPORT_MESSAGE_PAGE: u32 = 200;

/// Where the export's stream is.
enum ExportStep {
    Chats {
        after: ChatId,
        first: bool,
    },
    /// `after`: the client id the last page ended with (messages go in client-id
    /// order; each carries its id and time).
    Messages {
        after: String,
        first: bool,
    },
    Done,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportMember {
    id: UserId,
    username: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportMessage<'a> {
    id: u64,
    chat_id: ChatId,
    kind: &'a str,
    content: &'a str,
    encrypted: bool,
    /// The envelope as stored (only its recipients can read it).
    e2ee: Option<&'a serde_json::value::RawValue>,
    created_at: Timestamp,
    edited_at: Option<Timestamp>,
    deleted: bool,
}

/// GET /api/users/me/export → 200 a JSON document (`Content-Disposition:
/// attachment`): `{exportedAt, profile, chats:[{id, kind, title, createdAt,
/// members:[{id, username}]}], messages:[…the caller sent, oldest first]}`. Streamed:
/// chats and messages are read a page at a time as the client takes them, so an
/// account with millions of messages costs one page of memory. Once a minute per
/// user (429 `rate_limited` with `Retry-After`).
async fn export(
    user: AuthUser,
    db: web::Data<Db>,
    throttle: web::Data<LoginThrottle>,
) -> Result<HttpResponse, ApiError> {
    throttle
        .check_export(user.0)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let row = db
        .user_by_id(user.0)
        .await?
        .filter(|r| !r.identity.is_deleted())
        .ok_or(ApiError::Unauthorized(ErrorCode::InvalidToken))?;
    let head = format!(
        "{{\"exportedAt\":{},\"profile\":{},\"chats\":[",
        json!(Timestamp::now()),
        json!(UserJson::new(row, user.0, false))
    );
    let db = db.into_inner();
    let me = user.0;
    let pages = futures_util::stream::unfold(
        ExportStep::Chats {
            after: ChatId(0),
            first: true,
        },
        move |step| {
            let db = db.clone();
            async move {
                // The response is streamed after the handler returned: each page is
                // read on the caller's share of the pool, as the handler's own work.
                let (chunk, next) = match acting_for(me, export_page(&db, me, step)).await {
                    Ok(Some(page)) => page,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!(user_id = %me, error = %e, "export cut short");
                        return Some((Err(e), ExportStep::Done));
                    }
                };
                Some((Ok::<_, DbError>(Bytes::from(chunk)), next))
            }
        },
    );
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, DbError>(Bytes::from(head)) }),
        pages,
    );
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"parley-export-{me}.json\""),
        ))
        .streaming(body))
}

/// The next piece of the export after `step`, and the step after it; None at the end.
async fn export_page(
    db: &Db,
    me: UserId,
    step: ExportStep,
) -> Result<Option<(String, ExportStep)>, DbError> {
    match step {
        ExportStep::Chats { after, first } => {
            let chats = db.export_chats_after(me, after, EXPORT_CHAT_PAGE).await?;
            let Some(last) = chats.last().map(|c| c.id) else {
                return Ok(Some((
                    "],\"messages\":[".to_owned(),
                    ExportStep::Messages {
                        after: String::new(),
                        first: true,
                    },
                )));
            };
            let mut out = String::new();
            for (i, c) in chats.into_iter().enumerate() {
                if !(first && i == 0) {
                    out.push(',');
                }
                // Other members' emails are theirs: only their names go in.
                let members: Vec<ExportMember> = c
                    .members
                    .into_iter()
                    .map(|(id, identity)| match identity {
                        Identity::Active { username, .. } => ExportMember {
                            id,
                            username,
                            deleted: false,
                        },
                        Identity::Deleted => ExportMember {
                            id,
                            username: DELETED_ACCOUNT.to_owned(),
                            deleted: true,
                        },
                    })
                    .collect();
                out.push_str(
                    &json!({
                        "id": c.id,
                        "kind": c.kind,
                        "title": c.title,
                        "createdAt": c.created_at,
                        "members": members,
                    })
                    .to_string(),
                );
            }
            Ok(Some((
                out,
                ExportStep::Chats {
                    after: last,
                    first: false,
                },
            )))
        }
        ExportStep::Messages { after, first } => {
            let (messages, cursor) = db
                .sent_messages_after(me, &after, EXPORT_MESSAGE_PAGE)
                .await?;
            let Some(last) = cursor else {
                return Ok(Some(("]}".to_owned(), ExportStep::Done)));
            };
            let mut out = String::new();
            for (i, m) in messages.iter().enumerate() {
                if !(first && i == 0) {
                    out.push(',');
                }
                let e2ee = m
                    .e2ee
                    .as_deref()
                    .and_then(|e| serde_json::from_str::<&serde_json::value::RawValue>(e).ok());
                let item = ExportMessage {
                    id: m.id,
                    chat_id: m.chat_id,
                    kind: &m.kind,
                    content: &m.content,
                    encrypted: m.encrypted,
                    e2ee,
                    created_at: m.created_at,
                    edited_at: m.edited_at,
                    deleted: m.deleted,
                };
                out.push_str(&serde_json::to_string(&item).map_err(|e| {
                    DbError::Mapping(format!("message {} does not serialise: {e}", m.id))
                })?);
            }
            Ok(Some((
                out,
                ExportStep::Messages {
                    after: last,
                    first: false,
                },
            )))
        }
        ExportStep::Done => Ok(None),
    }
}
