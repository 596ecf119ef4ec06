//! Confirming the caller's own password before a change that needs it (a new
//! password, deleting the account). Checked as a login is — a place with the
//! hashers first, the per-IP limit, the account's login delay — so no such route
//! guesses a password faster than logging in, nor floods the hashing pool.

use actix_web::HttpRequest;
use parley_actors::{ErrorCode, UserId};

use super::password::{Admission, Verified};
use super::{Hasher, LoginThrottle};
use crate::db::Db;
use crate::error::ApiError;

/// Checks `password` against `user`'s: the hashing place it held on success (a
/// caller that hashes a new password reuses it), 403 `wrong_password` otherwise.
pub async fn confirm_password(
    req: &HttpRequest,
    user: UserId,
    password: &str,
    db: &Db,
    hasher: &Hasher,
    throttle: &LoginThrottle,
) -> Result<Admission, ApiError> {
    if password.len() > 1024 {
        return Err(ApiError::WrongPassword);
    }
    let ip = throttle.client_ip(req);
    throttle
        .check_login_ip(ip)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let admission = hasher.admit_paced().await?;
    let creds = db
        .credentials_by_id(user)
        .await?
        .ok_or(ApiError::Unauthorized(ErrorCode::InvalidToken))?;
    // The account's login delay applies: these checks and logins share it.
    let attempt = throttle
        .begin_password_check(user, ip)
        .await
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let verdict = hasher
        .verify(&admission, password.to_owned(), creds.password_hash)
        .await?;
    if !matches!(verdict, Verified::Yes { .. }) {
        drop(admission);
        attempt.failed();
        return Err(ApiError::WrongPassword);
    }
    attempt.succeeded();
    Ok(admission)
}
