//! Web Push subscriptions: `GET /api/push/vapid-public-key`, `POST` and `DELETE
//! /api/push/subscriptions`. A subscription is the browser's endpoint (a URL the
//! server will POST to: checked by the SSRF guard, `push/endpoint.rs`) and its keys;
//! it belongs to the caller's sign-in session and goes when that session does.

use actix_web::{web, HttpResponse};
use parley_actors::ErrorCode;
use serde::{Deserialize, Serialize};

use super::resource;
use crate::auth::AuthUser;
use crate::config::Settings;
use crate::db::push::SubscribeOutcome;
use crate::db::Db;
use crate::error::ApiError;
use crate::push::endpoint::{check_url, parse_auth, parse_p256dh, resolve_public};
use crate::push::Push;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/push/vapid-public-key").route(web::get().to(public_key)))
        .service(
            resource("/push/subscriptions")
                .route(web::post().to(subscribe))
                .route(web::delete().to(unsubscribe)),
        );
}

fn disabled() -> ApiError {
    ApiError::Refused {
        code: ErrorCode::PushDisabled,
        message: "web push is not configured on this server",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PublicKey<'a> {
    public_key: &'a str,
}

/// GET /api/push/vapid-public-key: `{publicKey}` (the `applicationServerKey`).
async fn public_key(push: web::Data<Push>) -> Result<HttpResponse, ApiError> {
    let key = push.key.as_ref().ok_or_else(disabled)?;
    Ok(HttpResponse::Ok().json(PublicKey {
        public_key: key.public_base64url(),
    }))
}

/// `PushSubscription.toJSON()` as a browser gives it (`expirationTime` ignored).
#[derive(Deserialize)]
struct SubscriptionBody {
    endpoint: String,
    keys: SubscriptionKeys,
}

#[derive(Deserialize)]
struct SubscriptionKeys {
    p256dh: String,
    auth: String,
}

#[derive(Deserialize, Serialize)]
struct EndpointBody {
    endpoint: String,
}

fn invalid_endpoint(why: &'static str) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidEndpoint, why)
}

/// POST /api/push/subscriptions: 201 `{endpoint}`.
async fn subscribe(
    user: AuthUser,
    body: web::Json<SubscriptionBody>,
    push: web::Data<Push>,
    settings: web::Data<Settings>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    if push.key.is_none() {
        return Err(disabled());
    }
    let insecure = settings.push.allow_insecure_endpoints;
    let url = check_url(&body.endpoint, insecure).map_err(invalid_endpoint)?;
    let p256dh = parse_p256dh(&body.keys.p256dh)
        .map_err(|why| ApiError::bad_request(ErrorCode::InvalidKey, why))?;
    let auth = parse_auth(&body.keys.auth)
        .map_err(|why| ApiError::bad_request(ErrorCode::InvalidKey, why))?;
    // Counted once the request is well formed: what costs is the lookup and the write.
    push.subscribes
        .check(user.0 .0)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    resolve_public(&url, insecure)
        .await
        .map_err(invalid_endpoint)?;
    // Stored as the browser sent it (it is what a later DELETE names).
    let outcome = db
        .upsert_push_subscription(
            user.0,
            user.1,
            &body.endpoint,
            &p256dh,
            &auth,
            settings.push.max_subscriptions_per_user,
        )
        .await?;
    match outcome {
        SubscribeOutcome::Stored { .. } => Ok(HttpResponse::Created().json(EndpointBody {
            endpoint: body.into_inner().endpoint,
        })),
        SubscribeOutcome::SessionRevoked => Err(ApiError::Unauthorized(ErrorCode::SessionRevoked)),
    }
}

/// DELETE /api/push/subscriptions `{endpoint}`: 204; 404 when the caller has no
/// subscription with that endpoint (someone else's included).
async fn unsubscribe(
    user: AuthUser,
    body: web::Json<EndpointBody>,
    db: web::Data<Db>,
) -> Result<HttpResponse, ApiError> {
    if body.endpoint.len() > crate::push::endpoint::MAX_ENDPOINT_LEN {
        return Err(ApiError::NotFound("subscription"));
    }
    if db.delete_push_subscription(user.0, &body.endpoint).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("subscription"))
    }
}
