//! ICE servers for WebRTC: STUN as configured, TURN with time-limited credentials by
//! the TURN REST API scheme (coturn `use-auth-secret`): the username is
//! `<expiry unix time>:<user id>` and the credential is
//! `base64(HMAC-SHA1(turn_secret, username))`, so no TURN password is ever stored.

use actix_web::{web, HttpResponse};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use parley_actors::UserId;
use secrecy::ExposeSecret;
use serde::Serialize;
use sha1::Sha1;

use super::resource;
use crate::auth::jwt::unix_now;
use crate::auth::AuthUser;
use crate::config::Settings;
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/calls/ice-servers").route(web::get().to(ice_servers)));
}

/// An `RTCIceServer`.
#[derive(Serialize)]
pub struct IceServer {
    urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IceServers {
    ice_servers: Vec<IceServer>,
    ttl_seconds: u64,
}

/// The TURN REST API credential for `username`.
pub fn turn_credential(secret: &[u8], username: &str) -> Result<String, ApiError> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).map_err(ApiError::internal)?;
    mac.update(username.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// GET /api/calls/ice-servers
async fn ice_servers(
    user: AuthUser,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let c = &settings.calls;
    let mut servers = Vec::new();
    if !c.stun_urls.is_empty() {
        servers.push(IceServer {
            urls: c.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if let (false, Some(secret)) = (c.turn_urls.is_empty(), &c.turn_secret) {
        let username = turn_username(unix_now() + c.turn_ttl_secs, user.0);
        servers.push(IceServer {
            urls: c.turn_urls.clone(),
            credential: Some(turn_credential(
                secret.expose_secret().as_bytes(),
                &username,
            )?),
            username: Some(username),
        });
    }
    Ok(HttpResponse::Ok().json(IceServers {
        ice_servers: servers,
        ttl_seconds: c.turn_ttl_secs,
    }))
}

fn turn_username(expiry: u64, user: UserId) -> String {
    format!("{expiry}:{user}")
}
