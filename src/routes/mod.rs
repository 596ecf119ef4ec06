//! HTTP handlers, one file per API area, each with `configure`. Handlers are thin:
//! typed input, a call into `db` / the actors, `Result<HttpResponse, ApiError>`.

pub mod auth;
pub mod blocks;
pub mod calls;
pub mod chats;
pub mod downloads;
pub mod encryption;
pub mod health;
pub mod media;
pub mod messages;
pub mod push;
pub mod sessions;
pub mod spa;
pub mod users;
pub mod ws;

use actix_web::{web, HttpResponse};
use parley_actors::{Timestamp, UserId};
use serde::Serialize;

use crate::db::users::{Identity, UserRow};
use crate::error::ApiError;

/// Everything under `/api`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    auth::configure(cfg);
    sessions::configure(cfg);
    users::configure(cfg);
    blocks::configure(cfg);
    chats::configure(cfg);
    messages::configure(cfg);
    media::configure(cfg);
    encryption::configure(cfg);
    calls::configure(cfg);
    push::configure(cfg);
}

/// A resource whose unsupported methods get the JSON 405 body.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed(
            "this method is not allowed on this path",
        ))
    }))
}

/// Only members may see or touch a chat. A chat that does not exist gets the same
/// 403 as someone else's, so an outsider cannot learn which ids exist.
pub async fn require_member(
    db: &crate::db::Db,
    chat: parley_actors::ChatId,
    user: UserId,
) -> Result<(), ApiError> {
    if db.is_member_of(chat, user).await? {
        Ok(())
    } else {
        Err(ApiError::Forbidden("you are not a member of this chat"))
    }
}

/// JSON 404 for unknown `/api` paths.
pub async fn api_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}

/// The `user` object of PROTOCOL.md. `email` only when the viewer is the user. A
/// deleted account is `{id, username: "Deleted account", deleted: true, …}`: its
/// messages stay in other people's chats and need a sender to show.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJson {
    pub id: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub username: String,
    pub online: bool,
    pub last_seen_at: Option<Timestamp>,
    pub has_public_key: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// The name shown for a deleted account (PROTOCOL.md, README "Operating a community").
pub const DELETED_ACCOUNT: &str = "Deleted account";

impl UserJson {
    pub fn new(row: UserRow, viewer: UserId, online: bool) -> UserJson {
        match row.identity {
            Identity::Active { email, username } => UserJson {
                id: row.id,
                email: (row.id == viewer).then_some(email),
                username,
                online,
                last_seen_at: row.last_seen_at,
                has_public_key: row.has_public_key,
                deleted: false,
            },
            // Nothing of who it was: no presence, no last seen, no key.
            Identity::Deleted => UserJson {
                id: row.id,
                email: None,
                username: DELETED_ACCOUNT.to_owned(),
                online: false,
                last_seen_at: None,
                has_public_key: false,
                deleted: true,
            },
        }
    }
}
