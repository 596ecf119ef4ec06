//! End-to-end encryption keys: publish yours, fetch someone's.

use actix_web::{web, HttpResponse};
use parley_actors::protocol::ServerEvent;
use parley_actors::ErrorCode;
use parley_actors::{Realtime, Timestamp, UserId};
use serde::{Deserialize, Serialize};

use super::resource;
use crate::auth::AuthUser;
use crate::db::keys::KeyRow;
use crate::db::Db;
use crate::e2ee::parse_public_key;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/encryption/public-key").route(web::post().to(publish)))
        .service(resource("/encryption/public-key/{userId}").route(web::get().to(fetch)));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PublishBody {
    public_key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyJson {
    user_id: UserId,
    public_key: String,
    fingerprint: String,
    updated_at: Timestamp,
}

impl From<KeyRow> for KeyJson {
    fn from(k: KeyRow) -> Self {
        KeyJson {
            user_id: k.user,
            public_key: k.pem,
            fingerprint: k.fingerprint,
            updated_at: k.updated_at,
        }
    }
}

/// POST /api/encryption/public-key: `{publicKey}` (SPKI PEM, RSA 2048–8192 bits).
/// Replacing a key tells everyone who shares a chat (`user:key-changed`).
async fn publish(
    user: AuthUser,
    body: web::Json<PublishBody>,
    db: web::Data<Db>,
    rt: web::Data<Realtime>,
) -> Result<HttpResponse, ApiError> {
    let parsed = parse_public_key(&body.public_key)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidKey, e.to_string()))?;
    let at = Timestamp::now();
    let previous = db
        .put_public_key(user.0, &parsed.pem, &parsed.fingerprint, at)
        .await?;
    if previous.is_some_and(|p| p != parsed.fingerprint) {
        let contacts = db.contacts(user.0).await?;
        rt.notify_users(
            &contacts,
            &ServerEvent::UserKeyChanged {
                user_id: user.0,
                fingerprint: &parsed.fingerprint,
            },
        );
    }
    Ok(HttpResponse::Ok().json(KeyJson {
        user_id: user.0,
        public_key: parsed.pem,
        fingerprint: parsed.fingerprint,
        updated_at: at,
    }))
}

/// GET /api/encryption/public-key/{userId}: 404 when the user has published none.
async fn fetch(
    _: AuthUser,
    path: web::Path<u64>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    let key = db
        .public_key(UserId(path.into_inner()))
        .await?
        .ok_or(ApiError::NotFound("public key"))?;
    Ok(HttpResponse::Ok().json(KeyJson::from(key)))
}
