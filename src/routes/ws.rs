//! GET /ws: authenticate (a one-use `?ticket=` from POST /api/auth/ws-ticket, or a
//! token in `?token=` or the Authorization header), check the Origin and the
//! connection caps, then upgrade into a session actor. Refusals are JSON, before the
//! upgrade.
//!
//! A request with `Upgrade: websocket` never reaches the `App`: the HTTP/1 dispatcher
//! hands it, with its socket, to [`upgrade_service`], which admits it and then runs
//! the connection in [`crate::transport`] instead of the dispatcher (whose 8 KiB
//! read and write buffers would otherwise stay allocated for the life of every
//! socket — most of an idle connection's memory). The `App` route below only sees
//! a GET /ws *without* the upgrade headers, and refuses it the same way.

use std::rc::Rc;

use actix_codec::{Framed, FramedParts};
use actix_http::body::BodySize;
use actix_http::{h1, Request, RequestHead};
use actix_web::dev::{fn_service, ServiceFactory};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::SinkExt;
use parley_actors::ErrorCode;
use parley_actors::{AuthSessionId, OpenRefused, Realtime, UserId};
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::auth::extractor::{admit, bearer_token_of, verify_token};
use crate::auth::jwt::Bearer;
use crate::auth::{AuthSessions, JwtKeys, WsTickets};
use crate::config::Settings;
use crate::error::ApiError;

/// Frames declared up to this size (or 4 × `limits.ws_frame_bytes`) are skipped and
/// refused with `too_large` while the connection stays usable; a header declaring
/// more closes the socket (1009) before any of its payload is read.
const HARD_FRAME_LIMIT: usize = 4 * 1024 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").route(web::get().to(not_upgraded)));
}

/// What deciding on an upgrade needs; one per HTTP worker.
#[derive(Clone)]
pub struct Gate {
    pub jwt: web::Data<JwtKeys>,
    pub settings: web::Data<Settings>,
    pub realtime: Realtime,
    pub tickets: web::Data<WsTickets>,
    /// Whether the token's (or ticket's) sign-in session is still live.
    pub sessions: web::Data<AuthSessions>,
    /// Every upgraded socket's task: shutdown waits for their closing handshakes
    /// (they run outside the HTTP server's connection accounting).
    pub sockets: tokio_util::task::TaskTracker,
}

#[derive(Deserialize)]
struct WsQuery {
    /// A long-lived JWT: works (scripts), but lands in every access log on the way.
    token: Option<String>,
    /// A one-use, 30-second ticket: what the web client sends.
    ticket: Option<String>,
}

impl Gate {
    /// The user (and sign-in) this request may open a session for, or why not.
    async fn admit(&self, head: &RequestHead) -> Result<(UserId, AuthSessionId), ApiError> {
        let query =
            web::Query::<WsQuery>::from_query(head.uri.query().unwrap_or("")).map_err(|_| {
                ApiError::bad_request(ErrorCode::InvalidQuery, "the query string is malformed")
            })?;
        let forbidden_origin = || ApiError::Forbidden("this origin may not open a WebSocket here");
        let bearer = match query.ticket.as_deref() {
            Some(ticket) => {
                // The Origin first: a page that may not connect must not burn the ticket.
                if !self.origin_allowed(head) {
                    return Err(forbidden_origin());
                }
                let (user, sid) = self
                    .tickets
                    .redeem(ticket)
                    .await?
                    .ok_or(ApiError::Unauthorized(ErrorCode::InvalidTicket))?;
                Bearer { user, sid }
            }
            None => {
                let token = query
                    .token
                    .as_deref()
                    .or_else(|| bearer_token_of(&head.headers));
                let bearer = verify_token(&self.jwt, token)?;
                if !self.origin_allowed(head) {
                    return Err(forbidden_origin());
                }
                bearer
            }
        };
        // A ticket issued before its session was revoked is refused too.
        admit(&self.sessions, bearer).await?;
        let user = bearer.user;
        let limits = &self.settings.limits;
        match self
            .realtime
            .may_open(user, limits.max_sessions_per_user, limits.max_connections)
        {
            Ok(()) => Ok((user, bearer.sid)),
            Err(OpenRefused::TooManySessions) => {
                Err(ApiError::TooManySessions(limits.max_sessions_per_user))
            }
            Err(OpenRefused::ServerFull) => Err(ApiError::Unavailable(
                "this server holds as many connections as it may; retry shortly",
            )),
        }
    }

    /// Whether a browser page from the request's `Origin` may open a socket here.
    fn origin_allowed(&self, head: &RequestHead) -> bool {
        let Some(origin) = head.headers.get(header::ORIGIN) else {
            // Not a browser (websocat, scripts): cross-site hijacking needs a browser.
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let allowed = &self.settings.server.allowed_origins;
        if !allowed.is_empty() {
            return allowed.iter().any(|a| a.trim_end_matches('/') == origin);
        }
        // The server's own origin: the host the client asked for (through nginx,
        // the one it forwarded).
        let host = [
            header::HeaderName::from_static("x-forwarded-host"),
            header::HOST,
        ]
        .iter()
        .find_map(|h| head.headers.get(h)?.to_str().ok())
        .and_then(|h| h.split(',').next())
        .map(str::trim)
        .unwrap_or("");
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or("");
        !host.is_empty() && authority == host
    }

    async fn upgrade(&self, req: Request, mut framed: Framed<TcpStream, h1::Codec>) {
        let head = req.head();
        if head.uri.path() != "/ws" {
            return refuse(framed, ApiError::NotFound("WebSocket endpoint")).await;
        }
        let (user, sid) = match self.admit(head).await {
            Ok(admitted) => admitted,
            Err(e) => return refuse(framed, e).await,
        };
        let accept = match actix_http::ws::handshake(head) {
            Ok(mut res) => res.finish().drop_body(),
            Err(e) => {
                let e = ApiError::bad_request(
                    ErrorCode::NotAWebsocket,
                    format!("WebSocket handshake failed: {e}"),
                );
                return refuse(framed, e).await;
            }
        };
        if let Err(e) = framed
            .send(h1::Message::Item((accept, BodySize::None)))
            .await
        {
            tracing::debug!(error = %e, "writing the WebSocket handshake");
            return;
        }
        // From here on the connection is ours. The request (its header map alone is
        // kilobytes) and the dispatcher's buffers are dropped; frames the client sent
        // right behind its request are already read, and are handed on. The session
        // runs in a task of its own, so the dispatcher's (larger) task ends too.
        let FramedParts { io, read_buf, .. } = framed.into_parts();
        let early = bytes::Bytes::copy_from_slice(&read_buf);
        drop(read_buf);
        drop(req);
        let limits = &self.settings.limits;
        let limits = crate::transport::Limits {
            frame: limits.ws_frame_bytes,
            hard: HARD_FRAME_LIMIT.max(limits.ws_frame_bytes * 4) as u64,
            outbound: limits.ws_outbound_bytes,
        };
        let session = self.realtime.session(user, sid);
        actix_web::rt::spawn(
            self.sockets
                .track_future(crate::transport::serve(io, early, session, limits)),
        );
    }
}

/// Answers with the JSON error body and ends the connection.
async fn refuse(framed: Framed<TcpStream, h1::Codec>, e: ApiError) {
    let (mut head, body) = e.error_response().into_parts();
    let body = actix_web::body::to_bytes(body).await.unwrap_or_default();
    let headers = head.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    let mut res: actix_http::Response<bytes::Bytes> = head.set_body(body).into();
    // The encoder writes `Connection` from the head's type, not from the headers.
    res.head_mut()
        .set_connection_type(actix_http::ConnectionType::Close);
    if let Err(e) = h1::SendResponse::new(framed, res).await {
        tracing::debug!(error = %e, "writing a WebSocket refusal");
    }
}

/// The HTTP/1 upgrade service: every request with `Upgrade: websocket` (and
/// `CONNECT`, which nothing here serves) arrives here with its socket.
pub fn upgrade_service(
    gate: Gate,
) -> impl ServiceFactory<
    (Request, Framed<TcpStream, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
> {
    let gate = Rc::new(gate);
    fn_service(
        move |(req, framed): (Request, Framed<TcpStream, h1::Codec>)| {
            let gate = gate.clone();
            async move {
                gate.upgrade(req, framed).await;
                Ok(())
            }
        },
    )
}

/// GET /ws without `Upgrade: websocket`: the same checks, then a clear refusal.
async fn not_upgraded(req: HttpRequest, gate: web::Data<Gate>) -> Result<HttpResponse, ApiError> {
    gate.admit(req.head()).await?;
    Err(ApiError::bad_request(
        ErrorCode::NotAWebsocket,
        "GET /ws needs the WebSocket upgrade headers",
    ))
}
