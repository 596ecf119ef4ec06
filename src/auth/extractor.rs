//! `AuthUser`: a handler that takes one is only reached with a valid bearer token.

use std::future::{ready, Ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpRequest};
use parley_actors::ErrorCode;
use parley_actors::UserId;

use super::jwt::{JwtKeys, TokenError};
use crate::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<AuthUser, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, bearer_token(req)))
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

/// Verifies `token` with the app's keys.
pub fn authenticate(req: &HttpRequest, token: Option<&str>) -> Result<AuthUser, ApiError> {
    let keys = req
        .app_data::<web::Data<JwtKeys>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("JwtKeys not registered")))?;
    verify_token(keys, token)
}

/// Verifies `token` with `keys`: the user, or the error a client is told.
pub fn verify_token(keys: &JwtKeys, token: Option<&str>) -> Result<AuthUser, ApiError> {
    let token = token.ok_or(ApiError::Unauthorized(ErrorCode::MissingToken))?;
    match keys.verify(token) {
        Ok(id) => Ok(AuthUser(id)),
        Err(TokenError::Expired) => Err(ApiError::Unauthorized(ErrorCode::TokenExpired)),
        Err(TokenError::Invalid) => Err(ApiError::Unauthorized(ErrorCode::InvalidToken)),
    }
}

/// Middleware for `/api`: a request with a valid bearer token runs as its user, so
/// every pooled connection it takes counts against that user's share of the pool
/// (`database.per_user_connections`). The handler's `AuthUser` still does the
/// checking and the refusing; this only attributes the work.
pub async fn act_as_caller(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let user = req
        .app_data::<web::Data<JwtKeys>>()
        .zip(bearer_token_of(req.headers()))
        .and_then(|(keys, token)| keys.verify(token).ok());
    match user {
        Some(user) => crate::db::acting_for(user, next.call(req)).await,
        None => next.call(req).await,
    }
}
