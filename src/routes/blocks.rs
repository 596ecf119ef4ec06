//! Blocking: `POST`/`DELETE /api/users/{id}/block`, `GET /api/users/blocked`.
//!
//! What a block does is enforced where each thing is judged: a direct chat cannot
//! be opened (routes/chats.rs), nobody is added to a group by someone they blocked
//! (db/groups.rs), a direct chat's room takes no message and no call either way
//! (its members carry `blocked`, loaded with them), and presence is hidden both
//! ways (db/chats.rs contacts, the chat object). Changing a block tells every
//! node's room for the direct chat, so the send path never asks.

use actix_web::{web, HttpResponse};
use parley_actors::{ErrorCode, Realtime, UserId};

use super::{resource, UserJson};
use crate::auth::AuthUser;
use crate::db::blocks::{BlockOutcome, MAX_BLOCKS};
use crate::db::Db;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/users/blocked").route(web::get().to(list)))
        .service(
            resource("/users/{id}/block")
                .route(web::post().to(block))
                .route(web::delete().to(unblock)),
        );
}

/// The direct chat of the two, if any, loads its members (and the block) again on
/// every node; a presence registry forgets them as each other's contacts here.
async fn settle(db: &Db, rt: &Realtime, a: UserId, b: UserId) -> Result<(), ApiError> {
    if let Some(chat) = db.direct_chat(a, b).await? {
        rt.members_changed(chat);
    }
    Ok(())
}

/// POST /api/users/{id}/block: 204, also when already blocked.
async fn block(
    user: AuthUser,
    path: web::Path<u64>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
) -> Result<HttpResponse, ApiError> {
    let other = UserId(path.into_inner());
    if other == user.0 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidMember,
            "you cannot block yourself",
        ));
    }
    match db.block(user.0, other).await? {
        BlockOutcome::Blocked => {}
        BlockOutcome::NoSuchUser => return Err(ApiError::NotFound("user")),
        BlockOutcome::Full => {
            return Err(ApiError::Conflict {
                code: ErrorCode::Conflict,
                message: format!("you can block at most {MAX_BLOCKS} users"),
            })
        }
    }
    settle(&db, &rt, user.0, other).await?;
    rt.contacts_removed(user.0, other);
    Ok(HttpResponse::NoContent().finish())
}

/// DELETE /api/users/{id}/block: 204, also when not blocked.
async fn unblock(
    user: AuthUser,
    path: web::Path<u64>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
) -> Result<HttpResponse, ApiError> {
    let other = UserId(path.into_inner());
    db.unblock(user.0, other).await?;
    settle(&db, &rt, user.0, other).await?;
    // Contacts again only if no block remains either way and they share a chat;
    // the presence registry learns it when either next connects (as for a new chat
    // made on another node).
    Ok(HttpResponse::NoContent().finish())
}

/// GET /api/users/blocked: the users the caller blocked, most recent first.
async fn list(user: AuthUser, db: web::Data<Db>) -> Result<HttpResponse, ApiError> {
    let rows = db.blocked_users(user.0).await?;
    // Blocked: their presence is not shown.
    let users: Vec<UserJson> = rows
        .into_iter()
        .map(|mut u| {
            u.last_seen_at = None;
            UserJson::new(u, user.0, false)
        })
        .collect();
    Ok(HttpResponse::Ok().json(users))
}
