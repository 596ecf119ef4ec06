//! GET /ws: authenticate (token in `?token=` or the Authorization header), check the
//! Origin, then upgrade into a session actor. Refusals are JSON, before the upgrade.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use parley_actors::{OpenRefused, Realtime};
use serde::Deserialize;

use crate::auth::extractor::{authenticate, bearer_token};
use crate::config::Settings;
use crate::error::ApiError;

/// The codec's hard ceiling: frames up to this size are read whole and refused with
/// `too_large` while the connection stays usable; beyond it the socket is closed.
const HARD_FRAME_LIMIT: usize = 4 * 1024 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").route(web::get().to(upgrade)));
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
}

/// Whether a browser page from `origin` may open a socket here.
fn origin_allowed(req: &HttpRequest, settings: &Settings) -> bool {
    let Some(origin) = req.headers().get("origin") else {
        // Not a browser (websocat, scripts): cross-site hijacking needs a browser.
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let allowed = &settings.server.allowed_origins;
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a.trim_end_matches('/') == origin);
    }
    let host = req.connection_info().host().to_owned();
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    authority == host
}

/// GET /ws?token=…: a WebSocket speaking the JSON frames of PROTOCOL.md.
async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    query: web::Query<WsQuery>,
    realtime: web::Data<Realtime>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, ApiError> {
    let token = query.token.as_deref().or_else(|| bearer_token(&req));
    let user = authenticate(&req, token)?;
    if !origin_allowed(&req, &settings) {
        return Err(ApiError::Forbidden(
            "this origin may not open a WebSocket here",
        ));
    }
    let limits = &settings.limits;
    match realtime.may_open(user.0, limits.max_sessions_per_user, limits.max_connections) {
        Ok(()) => {}
        Err(OpenRefused::TooManySessions) => {
            return Err(ApiError::TooManySessions(limits.max_sessions_per_user))
        }
        Err(OpenRefused::ServerFull) => {
            return Err(ApiError::Unavailable(
                "this server holds as many connections as it may; retry shortly",
            ))
        }
    }
    let frame_size = HARD_FRAME_LIMIT.max(settings.limits.ws_frame_bytes * 4);
    ws::WsResponseBuilder::new(realtime.session(user.0), &req, stream)
        .frame_size(frame_size)
        .start()
        .map_err(|e| {
            ApiError::bad_request(
                "not_a_websocket",
                format!("WebSocket handshake failed: {e}"),
            )
        })
}
