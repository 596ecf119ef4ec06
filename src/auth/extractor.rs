//! `AuthUser`: a handler that takes one is only reached with a valid bearer token
//! whose sign-in session is live (checked from memory, see `auth::sessions`).

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use parley_actors::ErrorCode;
use parley_actors::{AuthSessionId, UserId};

use super::jwt::{Bearer, JwtKeys, TokenError};
use super::sessions::{AuthSessions, SessionError};
use crate::error::ApiError;

/// The caller: a user, and the sign-in session their token names.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId, pub AuthSessionId);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<AuthUser, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verified = authenticate(req, bearer_token(req));
        let sessions = req.app_data::<web::Data<AuthSessions>>().cloned();
        Box::pin(async move {
            let bearer = verified?;
            let sessions = sessions.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("AuthSessions not registered"))
            })?;
            admit(&sessions, bearer).await?;
            Ok(AuthUser(bearer.user, bearer.sid))
        })
    }
}

/// Whether `bearer`'s session is live: 401 `session_revoked` when not.
pub async fn admit(sessions: &AuthSessions, bearer: Bearer) -> Result<(), ApiError> {
    sessions.admit(bearer).await.map_err(ApiError::from)
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Revoked => ApiError::Unauthorized(ErrorCode::SessionRevoked),
            SessionError::Db(e) => e.into(),
        }
    }
}

/// The token of `Authorization: Bearer <token>`, if any.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    bearer_token_of(req.headers())
}

/// The token of `Authorization: Bearer <token>` among `headers`, if any.
pub fn bearer_token_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Verifies `token` with the app's keys (the signature; not yet the session).
pub fn authenticate(req: &HttpRequest, token: Option<&str>) -> Result<Bearer, ApiError> {
    let keys = req
        .app_data::<web::Data<JwtKeys>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("JwtKeys not registered")))?;
    verify_token(keys, token)
}

/// Verifies `token` with `keys`: the bearer, or the error a client is told. A token
/// from before sessions existed is treated as revoked: its owner signs in once more.
pub fn verify_token(keys: &JwtKeys, token: Option<&str>) -> Result<Bearer, ApiError> {
    let token = token.ok_or(ApiError::Unauthorized(ErrorCode::MissingToken))?;
    match keys.verify(token) {
        Ok(bearer) => Ok(bearer),
        Err(TokenError::Expired) => Err(ApiError::Unauthorized(ErrorCode::TokenExpired)),
        Err(TokenError::Invalid) => Err(ApiError::Unauthorized(ErrorCode::InvalidToken)),
        Err(TokenError::NoSession) => Err(ApiError::Unauthorized(ErrorCode::SessionRevoked)),
    }
}

/// Middleware for `/api`: a request with a valid bearer token runs as its user, so
/// every pooled connection it takes counts against that user's share of the pool
/// (`database.per_user_connections`). The handler's `AuthUser` still does the
/// checking and the refusing; this only attributes the work (from the signature alone:
/// a revoked token's request is refused by the extractor before it queries much).
pub async fn act_as_caller(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let user = req
        .app_data::<web::Data<JwtKeys>>()
        .zip(bearer_token_of(req.headers()))
        .and_then(|(keys, token)| keys.verify(token).ok())
        .map(|bearer| bearer.user);
    match user {
        Some(user) => crate::db::acting_for(user, next.call(req)).await,
        None => next.call(req).await,
    }
}
