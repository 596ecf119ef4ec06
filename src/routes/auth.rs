//! Registration and login.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{resource, UserJson};
use crate::auth::password::{HashError, Verified};
use crate::auth::{Hasher, JwtKeys, LoginThrottle};
use crate::db::users::{InsertOutcome, TakenField};
use crate::db::Db;
use crate::domain::{Email, Password, Username};
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/register").route(web::post().to(register)))
        .service(resource("/auth/login").route(web::post().to(login)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    email: String,
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    /// An email or a username.
    #[serde(alias = "username", alias = "login")]
    email: String,
    password: String,
}

#[derive(Serialize)]
struct Session {
    token: String,
    user: UserJson,
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => ApiError::Unavailable("too many sign-ins at once; retry shortly"),
            HashError::Failed(m) => ApiError::internal(anyhow::anyhow!(m)),
        }
    }
}

/// POST /api/auth/register: creates the account and signs it in (201 `{token, user}`).
async fn register(
    req: HttpRequest,
    body: web::Json<RegisterBody>,
    db: web::Data<Db>,
    hasher: web::Data<Hasher>,
    keys: web::Data<JwtKeys>,
    throttle: web::Data<LoginThrottle>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&body.email)?;
    let username = Username::parse(&body.username)?;
    let password = Password::parse(&body.password)?;
    throttle
        .check_register(throttle.client_ip(&req))
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let admission = hasher.admit_paced().await?;
    let hash = hasher
        .hash(&admission, password.expose().to_owned())
        .await?;
    drop(admission);
    let id = match db.insert_user(&email, &username, &hash).await? {
        InsertOutcome::Created(id) => id,
        InsertOutcome::Taken(TakenField::Email) => {
            return Err(ApiError::Conflict {
                code: "email_taken",
                message: "email is already registered".into(),
            })
        }
        InsertOutcome::Taken(TakenField::Username) => {
            return Err(ApiError::Conflict {
                code: "username_taken",
                message: "username is already taken".into(),
            })
        }
    };
    tracing::info!(user_id = %id, "registered");
    let user = db
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("new user {id} vanished")))?;
    let token = keys.issue(id).map_err(ApiError::internal)?;
    Ok(HttpResponse::Created().json(Session {
        token,
        user: UserJson::new(user, id, false),
    }))
}

/// POST /api/auth/login: `{email, password}` (email also takes the username) → `{token, user}`.
/// Unknown account and wrong password answer the same 401, after the same work.
async fn login(
    req: HttpRequest,
    body: web::Json<LoginBody>,
    db: web::Data<Db>,
    hasher: web::Data<Hasher>,
    keys: web::Data<JwtKeys>,
    throttle: web::Data<LoginThrottle>,
) -> Result<HttpResponse, ApiError> {
    let login = body.email.trim().to_lowercase();
    if login.is_empty() || login.len() > 254 || body.password.len() > 1024 {
        return Err(ApiError::InvalidCredentials);
    }
    throttle
        .check_login(throttle.client_ip(&req), &login)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    // A place with the hashers first: a login that would be refused costs no query.
    let admission = hasher.admit_paced().await?;
    let creds = db.credentials_by_login(&login).await?;
    let (id, stored) = match creds {
        Some(c) => (Some(c.id), Some(c.password_hash)),
        None => (None, None),
    };
    let verdict = hasher
        .verify(&admission, body.password.clone(), stored)
        .await?;
    drop(admission);
    let (Some(id), Verified::Yes { rehash }) = (id, verdict) else {
        return Err(ApiError::InvalidCredentials);
    };
    if let Some(new_hash) = rehash {
        // Best effort: the login stands even if the upgrade has to wait for next time.
        if let Err(e) = db.update_password_hash(id, &new_hash).await {
            tracing::warn!(user_id = %id, error = %e, "could not store a rehashed password");
        }
    }
    let user = db
        .user_by_id(id)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let token = keys.issue(id).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(Session {
        token,
        user: UserJson::new(user, id, false),
    }))
}
