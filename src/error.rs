//! One error vocabulary for every transport: `ApiError` maps to the JSON error body of
//! PROTOCOL.md (`{"error":{"code","message"}}`) and an HTTP status; the WebSocket
//! `error` event uses the same codes. Unexpected causes are logged with their chain
//! and never shown to a client.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Input that does not parse: the code names what was wrong.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// No token, a bad one or an expired one; the code says which.
    #[error("{}", unauthorized_message(.0))]
    Unauthorized(&'static str),
    #[error("email/username or password is wrong")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique value is taken; the code names the field.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    TooLarge(String),
    /// The user's stored uploads leave no room for this one.
    #[error("storage quota exceeded: your voice messages use {used} of your {quota} bytes; this upload does not fit")]
    QuotaExceeded { used: u64, quota: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests; retry in {}s", whole_secs(*.retry_after))]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    /// The user has as many WebSockets open as allowed.
    #[error("you have {0} connections open already; close one")]
    TooManySessions(usize),
    /// The disk for uploads is full.
    #[error("the server has no room for this file right now")]
    StorageFull,
    /// A dependency (MySQL, Redis, the hashing pool) cannot take the request now.
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Seconds to wait, rounded up (a client retrying after a rounded-down wait would be
/// refused again), at least 1.
fn whole_secs(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

fn unauthorized_message(code: &str) -> &'static str {
    match code {
        "token_expired" => "the token has expired; log in again",
        "invalid_token" => "the token is not valid",
        "invalid_ticket" => "the ticket is unknown, used or expired; fetch a new one",
        _ => "authentication required: send Authorization: Bearer <token>",
    }
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    /// The stable, snake_case code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized(code) => code,
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooLarge(_) => "too_large",
            ApiError::QuotaExceeded { .. } => "quota_exceeded",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::StorageFull => "storage_full",
            ApiError::TooManySessions(_) => "too_many_sessions",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody<'static> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QuotaExceeded { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::TooManySessions(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::RateLimited { retry_after } => {
                res.insert_header((header::RETRY_AFTER, whole_secs(*retry_after).to_string()));
            }
            ApiError::Unauthorized(_) | ApiError::InvalidCredentials => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Unavailable(_) => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        res.json(self.body())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => ApiError::Unavailable("the database is not answering"),
            other => ApiError::internal(other),
        }
    }
}

/// Turns actix's own extractor failures (bad JSON, wrong content type, body too
/// large, bad path or query) into the JSON error body instead of actix's plain text.
pub mod extractors {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::{web, HttpRequest};

    use super::ApiError;

    pub fn json_config(limit: usize) -> web::JsonConfig {
        web::JsonConfig::default()
            .limit(limit)
            .error_handler(|err, _req: &HttpRequest| json_error(err).into())
    }

    pub fn query_config() -> web::QueryConfig {
        web::QueryConfig::default().error_handler(|err, _req| query_error(err).into())
    }

    pub fn path_config() -> web::PathConfig {
        web::PathConfig::default().error_handler(|err, _req| path_error(err).into())
    }

    fn json_error(err: JsonPayloadError) -> ApiError {
        match err {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => {
                ApiError::TooLarge(format!("request body is larger than {limit} bytes"))
            }
            JsonPayloadError::ContentType => {
                ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
            }
            JsonPayloadError::Deserialize(e) if e.is_data() => {
                ApiError::bad_request("invalid_field", format!("invalid request body: {e}"))
            }
            JsonPayloadError::Deserialize(e) => {
                ApiError::bad_request("malformed_json", format!("malformed JSON: {e}"))
            }
            other => ApiError::bad_request("bad_request", format!("unreadable body: {other}")),
        }
    }

    fn query_error(err: QueryPayloadError) -> ApiError {
        ApiError::bad_request("invalid_query", format!("invalid query string: {err}"))
    }

    fn path_error(err: PathError) -> ApiError {
        match err {
            PathError::Deserialize(_) => ApiError::NotFound("resource"),
            other => ApiError::bad_request("invalid_path", other.to_string()),
        }
    }
}
