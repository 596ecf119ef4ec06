//! Registration, login, sign-out, password change and WebSocket tickets.

use actix_web::{web, HttpRequest, HttpResponse};
use parley_actors::ErrorCode;
use serde::{Deserialize, Serialize};

use super::{resource, UserJson};
use crate::auth::password::{HashError, Verified};
use crate::auth::ticket::{TicketError, TICKET_TTL};
use crate::auth::{AuthSessions, AuthUser, Hasher, JwtKeys, LoginThrottle, WsTickets};
use crate::config::{RegistrationMode, Settings};
use crate::db::invites::InvitedOutcome;
use crate::db::users::{InsertOutcome, TakenField};
use crate::db::Db;
use crate::domain::token::TokenHash;
use crate::domain::{Device, Email, Login, Password, Username};
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/register").route(web::post().to(register)))
        .service(resource("/auth/registration").route(web::get().to(registration)))
        .service(resource("/auth/reset").route(web::post().to(reset_password)))
        .service(resource("/auth/login").route(web::post().to(login)))
        .service(resource("/auth/ws-ticket").route(web::post().to(ws_ticket)))
        .service(resource("/auth/logout").route(web::post().to(logout)))
        .service(resource("/auth/password").route(web::post().to(change_password)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    email: String,
    username: String,
    password: String,
    /// How this sign-in is listed in `GET /api/sessions` (else from the User-Agent).
    #[serde(default)]
    device: Option<String>,
    /// The invite token (`/register?invite=…`); needed in `invite` mode, ignored
    /// otherwise.
    #[serde(default)]
    invite: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResetBody {
    token: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    /// An email or a username.
    #[serde(alias = "username", alias = "login")]
    email: String,
    password: String,
    #[serde(default)]
    device: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// `{revoked: n}`: how many sessions a request revoked.
#[derive(Serialize)]
pub(super) struct Revoked {
    pub revoked: usize,
}

#[derive(Serialize)]
struct Session {
    token: String,
    user: UserJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ticket {
    ticket: String,
    ttl_seconds: u64,
}

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        match e {
            TicketError::TooMany(retry_after) => ApiError::RateLimited { retry_after },
            TicketError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "ticket store unavailable");
                ApiError::Unavailable("cannot issue or check tickets right now; retry shortly")
            }
        }
    }
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => ApiError::Unavailable("too many sign-ins at once; retry shortly"),
            HashError::Failed(m) => ApiError::internal(anyhow::anyhow!(m)),
        }
    }
}

/// GET /api/auth/registration: `{mode}`, `open`, `invite` or `closed`
/// (`auth.registration`), so the web client knows whether to ask for an invite.
async fn registration(settings: web::Data<Settings>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "mode": settings.auth.registration.as_str() }))
}

fn invite_invalid() -> ApiError {
    ApiError::Refused {
        code: ErrorCode::InviteInvalid,
        message: "this invite is unknown, used up, expired or revoked; ask for a new one",
    }
}

/// POST /api/auth/register: creates the account and signs it in (201 `{token, user}`).
/// `auth.registration` decides who may: anyone (`open`), someone with an invite
/// (`invite`: the invite is checked before the password is hashed, and consumed in
/// the transaction that creates the user) or nobody (`closed`).
// Each argument is an extractor actix fills in; bundling them would only hide which.
#[allow(clippy::too_many_arguments)]
async fn register(
    req: HttpRequest,
    body: web::Json<RegisterBody>,
    db: web::Data<Db>,
    hasher: web::Data<Hasher>,
    keys: web::Data<JwtKeys>,
    throttle: web::Data<LoginThrottle>,
    sessions: web::Data<AuthSessions>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let mode = settings.auth.registration;
    if mode == RegistrationMode::Closed {
        return Err(ApiError::Refused {
            code: ErrorCode::RegistrationClosed,
            message: "registration is closed on this server",
        });
    }
    let email = Email::parse(&body.email)?;
    let username = Username::parse(&body.username)?;
    let password = Password::parse(&body.password)?;
    let device = Device::parse(body.device.as_deref().unwrap_or(""))?;
    let ip = throttle.client_ip(&req);
    throttle
        .check_register(ip)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let invite = match mode {
        RegistrationMode::Invite => {
            let token = body
                .invite
                .as_deref()
                .and_then(TokenHash::of_presented)
                .ok_or_else(invite_invalid)?;
            if !db.invite_usable(&token).await? {
                return Err(invite_invalid());
            }
            Some(token)
        }
        _ => None,
    };
    let admission = hasher.admit_paced().await?;
    let hash = hasher
        .hash(&admission, password.expose().to_owned())
        .await?;
    drop(admission);
    let outcome = match invite {
        None => db.insert_user(&email, &username, Some(&hash)).await?,
        Some(token) => match db
            .insert_invited_user(&token, &email, &username, &hash)
            .await?
        {
            InvitedOutcome::Registered(outcome) => outcome,
            // Used up (or revoked) while the password was being hashed.
            InvitedOutcome::InviteInvalid => return Err(invite_invalid()),
        },
    };
    let id = match outcome {
        InsertOutcome::Created(id) => id,
        InsertOutcome::Taken(TakenField::Email) => {
            return Err(ApiError::Conflict {
                code: ErrorCode::EmailTaken,
                message: "email is already registered".into(),
            })
        }
        InsertOutcome::Taken(TakenField::Username) => {
            return Err(ApiError::Conflict {
                code: ErrorCode::UsernameTaken,
                message: "username is already taken".into(),
            })
        }
    };
    tracing::info!(user_id = %id, "registered");
    let user = db
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("new user {id} vanished")))?;
    let token = sign_in(&req, &sessions, &keys, id, device, ip).await?;
    Ok(HttpResponse::Created().json(Session {
        token,
        user: UserJson::new(user, id, false),
    }))
}

/// POST /api/auth/login: `{email, password}` (email also takes the username) → `{token, user}`.
/// Unknown account and wrong password answer the same 401, after the same work.
/// The identifier is folded to the form registration stores (and refused with 400
/// `invalid_login` if it holds invisible or control characters), resolved to the
/// account, and the account's delay is keyed on its id — so every spelling MySQL's
/// collation would match shares one limit (see `auth::login_delay`).
async fn login(
    req: HttpRequest,
    body: web::Json<LoginBody>,
    db: web::Data<Db>,
    hasher: web::Data<Hasher>,
    keys: web::Data<JwtKeys>,
    throttle: web::Data<LoginThrottle>,
    sessions: web::Data<AuthSessions>,
) -> Result<HttpResponse, ApiError> {
    let login = Login::parse(&body.email)?;
    let device = Device::parse(body.device.as_deref().unwrap_or(""))?;
    if body.password.len() > 1024 {
        return Err(ApiError::InvalidCredentials);
    }
    let ip = throttle.client_ip(&req);
    throttle
        .check_login_ip(ip)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    // A place with the hashers first: a login that would be refused costs no query.
    let admission = hasher.admit_paced().await?;
    let creds = db.credentials_by_login(&login).await?;
    let (id, stored, disabled) = match creds {
        Some(c) => (Some(c.id), c.password_hash, c.disabled),
        None => (None, None, false),
    };
    // Too early for this account (from this source): 429 at once. The admission is
    // dropped with the error, so the wait holds no hashing place and no connection.
    let attempt = throttle
        .begin_login(id, &login, ip)
        .await
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let verdict = hasher
        .verify(&admission, body.password.clone(), stored)
        .await?;
    drop(admission);
    let (Some(id), Verified::Yes { rehash }) = (id, verdict) else {
        attempt.failed();
        return Err(ApiError::InvalidCredentials);
    };
    attempt.succeeded();
    // Said only after the right password: to a guesser a disabled account looks
    // like any other.
    if disabled {
        return Err(ApiError::Refused {
            code: ErrorCode::AccountDisabled,
            message: "this account has been disabled by an administrator",
        });
    }
    throttle.signed_in(id, ip).await;
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
    let token = sign_in(&req, &sessions, &keys, id, device, ip).await?;
    Ok(HttpResponse::Ok().json(Session {
        token,
        user: UserJson::new(user, id, false),
    }))
}

/// POST /api/auth/reset: `{token, newPassword}` (the link `parley admin user
/// reset-password` printed) → 200 `{revoked}`: the password is set, the token and
/// every other reset of the account are spent, and all its sessions are revoked.
/// The token is looked up before the password is hashed, so a made-up one costs a
/// read; tries count against `limits.login_per_ip_per_min` like logins.
async fn reset_password(
    req: HttpRequest,
    body: web::Json<ResetBody>,
    db: web::Data<Db>,
    hasher: web::Data<Hasher>,
    throttle: web::Data<LoginThrottle>,
    sessions: web::Data<AuthSessions>,
) -> Result<HttpResponse, ApiError> {
    let invalid = || ApiError::Refused {
        code: ErrorCode::ResetTokenInvalid,
        message: "this reset link is unknown, used or expired; ask an administrator for a new one",
    };
    throttle
        .check_login_ip(throttle.client_ip(&req))
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let password = Password::parse(&body.new_password)?;
    let token = TokenHash::of_presented(&body.token).ok_or_else(invalid)?;
    if !db.password_reset_usable(&token).await? {
        return Err(invalid());
    }
    let admission = hasher.admit_paced().await?;
    let hash = hasher
        .hash(&admission, password.expose().to_owned())
        .await?;
    drop(admission);
    let user = db
        .redeem_password_reset(&token, &hash)
        .await?
        .ok_or_else(invalid)?;
    // Whoever held the account's tokens (the reason for a reset, often) is out: this
    // node closes their sockets now, the others once they read the revocation log.
    let revoked = sessions.revoke_user(user, None).await?;
    tracing::info!(user_id = %user, "password reset");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "revoked": revoked.len() })))
}

/// POST /api/auth/ws-ticket: a single-use ticket for `/ws?ticket=`, bound to the
/// caller and valid for 30 s → `{ticket, ttlSeconds}`. The web client connects with
/// one of these so that its long-lived token never appears in a URL (or a log).
async fn ws_ticket(
    user: AuthUser,
    tickets: web::Data<WsTickets>,
) -> Result<HttpResponse, ApiError> {
    let ticket = tickets.issue(user.0, user.1).await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(Ticket {
            ticket,
            ttl_seconds: TICKET_TTL.as_secs(),
        }))
}

/// A new sign-in session of `user` (named by the client's `device`, else its
/// User-Agent; from `ip`) and its token.
async fn sign_in(
    req: &HttpRequest,
    sessions: &AuthSessions,
    keys: &JwtKeys,
    user: parley_actors::UserId,
    device: Option<Device>,
    ip: std::net::IpAddr,
) -> Result<String, ApiError> {
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let device = Device::or_from_user_agent(device, user_agent);
    let source = ip.to_canonical().to_string();
    let sid = sessions
        .sign_in(user, device.as_str(), Some(&source))
        .await?;
    keys.issue(user, sid).map_err(ApiError::internal)
}

/// POST /api/auth/logout: revokes the caller's session (its sockets close, everywhere) → 204.
async fn logout(
    user: AuthUser,
    sessions: web::Data<AuthSessions>,
) -> Result<HttpResponse, ApiError> {
    sessions.revoke_one(user.0, user.1).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// POST /api/auth/password `{currentPassword, newPassword}` → 200 `{revoked}`: the new
/// password is set and every other session of the caller revoked (a thief signed in
/// elsewhere is out). The current password is checked as a login is — a place with
/// the hashers first, the per-IP limit, the account's login delay — so this route
/// cannot be used to guess it faster than logging in, nor to flood the hashing pool.
/// A wrong one is 403 `wrong_password` (not 401: the caller's token is fine).
async fn change_password(
    req: HttpRequest,
    user: AuthUser,
    body: web::Json<PasswordBody>,
    db: web::Data<Db>,
    hasher: web::Data<Hasher>,
    throttle: web::Data<LoginThrottle>,
    sessions: web::Data<AuthSessions>,
) -> Result<HttpResponse, ApiError> {
    let new_password = Password::parse(&body.new_password)?;
    let admission = crate::auth::confirm::confirm_password(
        &req,
        user.0,
        &body.current_password,
        &db,
        &hasher,
        &throttle,
    )
    .await?;
    let hash = hasher
        .hash(&admission, new_password.expose().to_owned())
        .await?;
    drop(admission);
    db.update_password_hash(user.0, &hash).await?;
    let revoked = sessions.revoke_user(user.0, Some(user.1)).await?;
    tracing::info!(user_id = %user.0, revoked = revoked.len(), "password changed");
    Ok(HttpResponse::Ok().json(Revoked {
        revoked: revoked.len(),
    }))
}
