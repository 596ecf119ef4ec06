//! One error vocabulary for every transport: `ApiError` maps to the JSON error body of
//! PROTOCOL.md (`{"error":{"code","message"}}`) and an HTTP status; the WebSocket
//! `error` event uses the same codes. Unexpected causes are logged with their chain
//! and never shown to a client.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use parley_actors::ErrorCode;

use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Input that does not parse: the code names what was wrong.
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    /// No token, a bad one or an expired one; the code says which.
    #[error("{}", unauthorized_message(*.0))]
    Unauthorized(ErrorCode),
    #[error("email/username or password is wrong")]
    InvalidCredentials,
    /// The password confirming a change is not the account's (403, not 401: the
    /// caller's token is fine, and a client must not sign out over it).
    #[error("the password is wrong")]
    WrongPassword,
    #[error("{0}")]
    Forbidden(&'static str),
    /// Refused for a reason the client may act on (a 403 with its own code:
    /// `invite_invalid`, `account_disabled`, `wrong_password`, …).
    #[error("{message}")]
    Refused {
        code: ErrorCode,
        message: &'static str,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique value is taken; the code names the field.
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    #[error("{0}")]
    TooLarge(String),
    /// The user's stored uploads leave no room for this one.
    #[error("storage quota exceeded: your uploads use {used} of your {quota} bytes; this upload does not fit")]
    QuotaExceeded { used: u64, quota: u64 },
    /// An image past `limits.image_max_pixels` or `limits.image_max_frames`.
    #[error("{0}")]
    ImageTooLarge(String),
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

fn unauthorized_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::TokenExpired => "the token has expired; log in again",
        ErrorCode::InvalidToken => "the token is not valid",
        ErrorCode::InvalidTicket => "the ticket is unknown, used or expired; fetch a new one",
        ErrorCode::SessionRevoked => "this session was signed out; sign in again",
        _ => "authentication required: send Authorization: Bearer <token>",
    }
}

#[derive(Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    /// The stable code clients switch on; it also decides the HTTP status.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unauthorized(code)
            | ApiError::Refused { code, .. } => *code,
            ApiError::InvalidCredentials => ErrorCode::InvalidCredentials,
            ApiError::WrongPassword => ErrorCode::WrongPassword,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::TooLarge(_) => ErrorCode::TooLarge,
            ApiError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            ApiError::ImageTooLarge(_) => ErrorCode::ImageTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::StorageFull => ErrorCode::StorageFull,
            ApiError::TooManySessions(_) => ErrorCode::TooManySessions,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn body(&self) -> ErrorBody {
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
        status_of(self.code())
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

/// The HTTP status of a code, as `ErrorCode::http_status` decides it.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => ApiError::Unavailable("the database is not answering"),
            // Nothing was written (the server rolled it back): the client may retry.
            DbError::Retry(_) => ApiError::Unavailable("the database is busy; retry"),
            other => ApiError::internal(other),
        }
    }
}

/// Turns actix's own extractor failures (bad JSON, wrong content type, body too
/// large, bad path or query) into the JSON error body instead of actix's plain text.
pub mod extractors {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::{web, HttpRequest};
    use parley_actors::ErrorCode;

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
            JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::bad_request(
                ErrorCode::InvalidField,
                format!("invalid request body: {e}"),
            ),
            JsonPayloadError::Deserialize(e) => {
                ApiError::bad_request(ErrorCode::MalformedJson, format!("malformed JSON: {e}"))
            }
            other => {
                ApiError::bad_request(ErrorCode::BadRequest, format!("unreadable body: {other}"))
            }
        }
    }

    fn query_error(err: QueryPayloadError) -> ApiError {
        ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("invalid query string: {err}"),
        )
    }

    fn path_error(err: PathError) -> ApiError {
        match err {
            PathError::Deserialize(_) => ApiError::NotFound("resource"),
            other => ApiError::bad_request(ErrorCode::InvalidPath, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    fn response(e: ApiError) -> (u16, serde_json::Value) {
        let res = e.error_response();
        let status = res.status().as_u16();
        let bytes = res.into_body().try_into_bytes().unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn the_code_decides_the_status_and_the_body_carries_its_string() {
        for (err, status, code) in [
            (
                ApiError::bad_request(ErrorCode::BadMultipart, "send one file"),
                400,
                "bad_multipart",
            ),
            (
                ApiError::Unauthorized(ErrorCode::TokenExpired),
                401,
                "token_expired",
            ),
            (ApiError::InvalidCredentials, 401, "invalid_credentials"),
            (ApiError::Forbidden("not yours"), 403, "forbidden"),
            (ApiError::NotFound("chat"), 404, "not_found"),
            (
                ApiError::Conflict {
                    code: ErrorCode::NotAGroup,
                    message: "direct".into(),
                },
                409,
                "not_a_group",
            ),
            (
                ApiError::QuotaExceeded { used: 2, quota: 1 },
                413,
                "quota_exceeded",
            ),
            (
                ApiError::ImageTooLarge("100000 × 100000".into()),
                413,
                "image_too_large",
            ),
            (ApiError::TooManySessions(32), 429, "too_many_sessions"),
            (ApiError::Unavailable("later"), 503, "unavailable"),
            (ApiError::StorageFull, 507, "storage_full"),
            (ApiError::internal(anyhow::anyhow!("boom")), 500, "internal"),
        ] {
            let (got, body) = response(err);
            assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)));
            assert!(body["error"]["message"].is_string());
        }
    }

    #[test]
    fn internal_causes_are_not_shown() {
        let (_, body) = response(ApiError::internal(anyhow::anyhow!("SELECT secret")));
        assert_eq!(body["error"]["message"], "internal error");
    }
}
