//! The caller's sign-in sessions: list them, sign one out, sign out all the others.
//! Only ever the caller's own: another user's session id gets the same 404 as one
//! that does not exist, so ids cannot be probed.

use actix_web::{web, HttpResponse};
use parley_actors::{AuthSessionId, Timestamp};
use serde::Serialize;

use super::auth::Revoked;
use super::resource;
use crate::auth::{AuthSessions, AuthUser};
use crate::db::Db;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/sessions")
            .route(web::get().to(list))
            .route(web::delete().to(revoke_others)),
    )
    .service(resource("/sessions/{id}").route(web::delete().to(revoke)));
}

/// One session as `GET /api/sessions` lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionJson {
    id: AuthSessionId,
    device: String,
    /// The address it signed in from (only its owner ever sees this list).
    source: Option<String>,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    /// Whether this is the session making the request.
    current: bool,
}

/// GET /api/sessions: the caller's live sessions, newest first.
async fn list(user: AuthUser, db: web::Data<Db>) -> Result<HttpResponse, ApiError> {
    let rows = db.live_auth_sessions(user.0).await?;
    let list: Vec<SessionJson> = rows
        .into_iter()
        .map(|r| SessionJson {
            current: r.id == user.1,
            id: r.id,
            device: r.device,
            source: r.source,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(list))
}

/// DELETE /api/sessions/:id → 204; 404 when it is not the caller's or is revoked already.
async fn revoke(
    user: AuthUser,
    id: web::Path<u64>,
    sessions: web::Data<AuthSessions>,
) -> Result<HttpResponse, ApiError> {
    if sessions.revoke_one(user.0, AuthSessionId(*id)).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("session"))
    }
}

/// DELETE /api/sessions: signs out every session of the caller but this one → `{revoked}`.
async fn revoke_others(
    user: AuthUser,
    sessions: web::Data<AuthSessions>,
) -> Result<HttpResponse, ApiError> {
    let revoked = sessions.revoke_user(user.0, Some(user.1)).await?;
    Ok(HttpResponse::Ok().json(Revoked {
        revoked: revoked.len(),
    }))
}
