//! The protocol client: HTTP helpers (register, chats, tokens, the error body) and
//! the one WebSocket client every suite speaks JSON frames with.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

// ------------------------------------------------------------------ HTTP

/// A registered user as the tests see one.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: u64,
    pub email: String,
    pub username: String,
    pub password: String,
    pub token: String,
}

/// Registers `username` (`<username>@example.com`, password `pw-<username>-secret`).
pub async fn register(http: &reqwest::Client, base: &str, username: &str) -> TestUser {
    register_with(
        http,
        base,
        username,
        &format!("{username}@example.com"),
        &format!("pw-{username}-secret"),
    )
    .await
}

/// Registers with exactly this address and password; asserts `201 Created`.
pub async fn register_with(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    email: &str,
    password: &str,
) -> TestUser {
    let res = register_request(http, base, username, email, password).await;
    registered(res, username, email, password).await
}

/// The `POST /api/auth/register` response itself, for tests that check more of it
/// (headers) before [`registered`] reads the user from it.
pub async fn register_request(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    email: &str,
    password: &str,
) -> Response {
    http.post(format!("{base}/api/auth/register"))
        .json(&json!({"email": email, "username": username, "password": password}))
        .send()
        .await
        .expect("request")
}

/// The user a register response created; asserts `201 Created`.
pub async fn registered(res: Response, username: &str, email: &str, password: &str) -> TestUser {
    assert_eq!(res.status(), StatusCode::CREATED, "register {username}");
    let body: Value = res.json().await.expect("json");
    TestUser {
        id: body["user"]["id"].as_u64().expect("id"),
        email: email.to_string(),
        username: username.to_string(),
        password: password.to_string(),
        token: body["token"].as_str().expect("token").to_string(),
    }
}

/// A login as if from `ip`: the server trusts loopback's X-Forwarded-For, as behind
/// nginx, so a test can be many networks.
pub async fn login_from(
    http: &reqwest::Client,
    base: &str,
    ip: &str,
    login: &str,
    password: &str,
) -> Response {
    http.post(format!("{base}/api/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": login, "password": password}))
        .send()
        .await
        .expect("request")
}

/// A direct chat between two users (created, or the existing one).
pub async fn direct_chat(http: &reqwest::Client, base: &str, a: &TestUser, b: &TestUser) -> u64 {
    create_chat(http, base, a, &json!({"userId": b.id})).await
}

/// A group called "group" owned by `owner` with `others` in it.
pub async fn group_chat(
    http: &reqwest::Client,
    base: &str,
    owner: &TestUser,
    others: &[&TestUser],
) -> u64 {
    let ids: Vec<u64> = others.iter().map(|u| u.id).collect();
    create_chat(
        http,
        base,
        owner,
        &json!({"title": "group", "memberIds": ids}),
    )
    .await
}

async fn create_chat(http: &reqwest::Client, base: &str, as_user: &TestUser, body: &Value) -> u64 {
    let res = http
        .post(format!("{base}/api/chats"))
        .bearer_auth(&as_user.token)
        .json(body)
        .send()
        .await
        .expect("request");
    assert!(res.status().is_success(), "create chat: {}", res.status());
    res.json::<Value>().await.expect("chat")["id"]
        .as_u64()
        .expect("id")
}

/// Asserts the PROTOCOL.md error body and returns it.
pub async fn assert_error(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "status for expected code {code}");
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message present: {body}"
    );
    body
}

// ------------------------------------------------------------------ tokens

/// Signs claims with `secret` (HS256), as a stranger or an old token would be; `sid`
/// names the sign-in session (a row of `auth_sessions`, or none: refused as revoked).
pub fn sign_token(secret: &[u8], sub: u64, sid: u64, iat: u64, exp: u64) -> String {
    let keys = parley::auth::JwtKeys::new(secret, Duration::from_secs(60));
    keys.sign_claims(&parley::auth::jwt::Claims {
        sub: sub.to_string(),
        sid,
        iat,
        exp,
    })
    .unwrap()
}

/// A token as issued before sign-in sessions existed: validly signed, no `sid`.
pub fn sign_token_without_session(secret: &[u8], sub: u64, iat: u64, exp: u64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub.to_string(), "iat": iat, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

pub fn unix_now() -> u64 {
    parley::auth::jwt::unix_now()
}

/// An unsigned `alg: none` token for `sub`.
pub fn alg_none_token(sub: u64) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = unix_now();
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64.encode(
        json!({"sub": sub.to_string(), "iat": now, "exp": now + 3600})
            .to_string()
            .as_bytes(),
    );
    format!("{header}.{claims}.")
}

// ------------------------------------------------------------------ WebSocket

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// `<base>/ws?token=<token>`, `base` being `ws://host:port`.
pub fn ws_url(base: &str, token: &str) -> String {
    format!("{base}/ws?token={token}")
}

/// What the socket delivered.
#[derive(Debug)]
pub enum Event {
    Frame(Value),
    /// A close frame (code) or the end of the stream (None).
    Closed(Option<u16>),
    Error(String),
}

/// Why an upgrade failed: the HTTP status and body, or a transport error.
#[derive(Debug)]
pub struct Refused {
    pub status: Option<u16>,
    pub body: Option<Value>,
    pub error: String,
}

/// A WebSocket client speaking the JSON frames; frames are read in the background,
/// so a test that does not read never stalls the server. Dropping it sends a close.
///
/// Two ways to read: `next`/`wait_for`/`reply_to` panic on a close (the API tests'
/// style), `recv`/`wait_event`/`reply` return what happened (the fault tests', where
/// a close is an outcome).
pub struct WsClient {
    tx: mpsc::UnboundedSender<WsMessage>,
    rx: mpsc::UnboundedReceiver<Event>,
    /// Frames skipped by `wait_for`/`reply_to`, oldest first, for later assertions.
    pub skipped: Vec<Value>,
    /// Frames already read that the readers hand out first.
    backlog: VecDeque<Value>,
}

impl WsClient {
    /// Connects or fails the test.
    pub async fn connect(url: &str) -> WsClient {
        WsClient::try_connect(url)
            .await
            .unwrap_or_else(|e| panic!("ws connects to {url}: {e:?}"))
    }

    /// Connects, or says why the upgrade was refused (within 10 s).
    pub async fn try_connect(url: &str) -> Result<WsClient, Refused> {
        WsClient::connect_with(url, &[]).await
    }

    /// [`WsClient::try_connect`] with extra request headers (`Origin`, …).
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, Refused> {
        let mut req = url.into_client_request().expect("request");
        for (k, v) in headers {
            req.headers_mut()
                .insert(http_name(k), v.parse().expect("header value"));
        }
        let fut = tokio_tungstenite::connect_async(req);
        let stream = match tokio::time::timeout(Duration::from_secs(10), fut).await {
            Err(_) => {
                return Err(Refused {
                    status: None,
                    body: None,
                    error: "connect timed out".into(),
                })
            }
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(res))) => {
                let status = res.status().as_u16();
                let body = res
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok());
                return Err(Refused {
                    status: Some(status),
                    body,
                    error: format!("http {status}"),
                });
            }
            Ok(Err(e)) => {
                return Err(Refused {
                    status: None,
                    body: None,
                    error: e.to_string(),
                })
            }
            Ok(Ok((s, _))) => s,
        };
        Ok(WsClient::from_stream(stream))
    }

    /// Connects and waits (15 s) for `ready`; the frames pushed before it (the
    /// catch-up) are returned beside the client.
    pub async fn ready(url: &str) -> (WsClient, Vec<Value>) {
        let mut c = WsClient::try_connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e:?}"));
        let mut before = Vec::new();
        loop {
            match c.recv_within(Duration::from_secs(15)).await {
                Some(Event::Frame(v)) if v["event"] == "ready" => return (c, before),
                Some(Event::Frame(v)) => before.push(v),
                other => panic!("no ready: {other:?}"),
            }
        }
    }

    /// Connects and waits for `ready`; the frames before it stay readable, in order.
    pub async fn connect_ready(url: &str) -> WsClient {
        let mut c = WsClient::connect(url).await;
        let mut before = Vec::new();
        loop {
            let v = c.next().await;
            if v["event"] == "ready" {
                break;
            }
            before.push(v);
        }
        c.backlog.extend(before);
        c
    }

    /// [`WsClient::connect_ready`] that also hands back the `ready` frame itself (its
    /// `pushed` and `lastChange`).
    pub async fn connect_ready_frame(url: &str) -> (WsClient, Value) {
        let mut c = WsClient::connect(url).await;
        let mut before = Vec::new();
        loop {
            let v = c.next().await;
            if v["event"] == "ready" {
                c.backlog.extend(before);
                return (c, v);
            }
            before.push(v);
        }
    }

    pub fn from_stream<S>(stream: tokio_tungstenite::WebSocketStream<S>) -> WsClient
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut source) = stream.split();
        let (tx, mut out_rx) = mpsc::unbounded_channel::<WsMessage>();
        let (in_tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let close = matches!(m, WsMessage::Close(_));
                if sink.send(m).await.is_err() || close {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        tokio::spawn(async move {
            loop {
                let ev = match source.next().await {
                    Some(Ok(WsMessage::Text(t))) => match serde_json::from_str::<Value>(&t) {
                        Ok(v) => Event::Frame(v),
                        Err(e) => Event::Error(format!("not JSON from the server: {e}: {t}")),
                    },
                    Some(Ok(WsMessage::Close(c))) => Event::Closed(c.map(|c| u16::from(c.code))),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Event::Error(e.to_string()),
                    None => Event::Closed(None),
                };
                let end = !matches!(ev, Event::Frame(_));
                if in_tx.send(ev).is_err() || end {
                    break;
                }
            }
        });
        WsClient {
            tx,
            rx,
            skipped: Vec::new(),
            backlog: VecDeque::new(),
        }
    }

    // -------------------------------------------------------------- writing

    /// Queues a JSON frame; false once the connection is gone.
    pub fn send(&self, frame: Value) -> bool {
        self.tx
            .send(WsMessage::Text(frame.to_string().into()))
            .is_ok()
    }

    pub fn send_raw(&self, m: WsMessage) -> bool {
        self.tx.send(m).is_ok()
    }

    pub fn close(&self) {
        let _ = self.tx.send(WsMessage::Close(None));
    }

    /// Sends a text message and returns the stored message from the ack.
    pub async fn send_text(&mut self, chat: u64, client_id: &str, text: &str) -> Value {
        self.send(json!({"event": "message:send", "ref": client_id, "data": {
            "chatId": chat, "clientId": client_id, "kind": "text", "content": text}}));
        let reply = self.reply_to(client_id).await;
        assert_eq!(reply["event"], "ack", "send {client_id}: {reply}");
        reply["data"].clone()
    }

    // -------------------------------------------------------------- reading: outcomes

    /// What happened next (None: the reader has stopped).
    pub async fn recv(&mut self) -> Option<Event> {
        if let Some(v) = self.backlog.pop_front() {
            return Some(Event::Frame(v));
        }
        self.rx.recv().await
    }

    /// What happened within `d` (None: nothing, or the reader has stopped).
    pub async fn recv_within(&mut self, d: Duration) -> Option<Event> {
        if let Some(v) = self.backlog.pop_front() {
            return Some(Event::Frame(v));
        }
        tokio::time::timeout(d, self.rx.recv()).await.ok().flatten()
    }

    /// The next frame with this event within `d`; others are dropped.
    pub async fn wait_event(&mut self, event: &str, d: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Some(Event::Frame(v)) if v["event"] == event => return Ok(v),
                Some(Event::Frame(_)) => continue,
                Some(other) => return Err(format!("{other:?}")),
                None => return Err(format!("no {event} within {d:?}")),
            }
        }
    }

    /// The reply (ack or error) with this ref within `d`; other frames are dropped.
    pub async fn reply(&mut self, reference: &str, d: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Some(Event::Frame(v)) if v["ref"] == reference => return Ok(v),
                Some(Event::Frame(_)) => continue,
                Some(other) => return Err(format!("{other:?}")),
                None => return Err(format!("no reply to {reference} within {d:?}")),
            }
        }
    }

    // -------------------------------------------------------------- reading: expectations

    /// The next frame; panics on timeout ([`WAIT`]) or close.
    pub async fn next(&mut self) -> Value {
        if let Some(v) = self.backlog.pop_front() {
            return v;
        }
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(Event::Frame(v))) => v,
            Ok(Some(other)) => panic!("socket ended: {}", ended(other)),
            Ok(None) => panic!("socket ended"),
            Err(_) => panic!(
                "no frame within {WAIT:?}; skipped so far: {:?}",
                self.skipped
            ),
        }
    }

    /// The next frame within `d`, `Err("closed:<code>")`/`Err("error: …")` if the
    /// socket ended, or None.
    pub async fn next_within(&mut self, d: Duration) -> Option<Result<Value, String>> {
        match self.recv_within(d).await? {
            Event::Frame(v) => Some(Ok(v)),
            other => Some(Err(ended(other))),
        }
    }

    /// The first frame of `event` not yet consumed: one skipped earlier (by
    /// `reply_to` or `wait_for`), else the next to arrive; others go to `skipped`.
    pub async fn wait_for(&mut self, event: &str) -> Value {
        if let Some(i) = self.skipped.iter().position(|v| v["event"] == event) {
            return self.skipped.remove(i);
        }
        loop {
            let v = self.next().await;
            if v["event"] == event {
                return v;
            }
            self.skipped.push(v);
        }
    }

    /// Waits for the reply (ack or error) carrying `reference`.
    pub async fn reply_to(&mut self, reference: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["ref"] == reference {
                return v;
            }
            self.skipped.push(v);
        }
    }

    /// Asserts nothing arrives for `d` (other than what `ignore` accepts).
    pub async fn assert_quiet(&mut self, d: Duration, ignore: &[&str]) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_within(left).await {
                None => return,
                Some(Ok(v)) if ignore.iter().any(|e| v["event"] == *e) => continue,
                Some(other) => panic!("expected quiet, got {other:?}"),
            }
        }
    }
}

/// How a socket's end reads in assertions: `closed:<code>` (1005: no code, or no
/// close frame at all) or `error: …`.
fn ended(e: Event) -> String {
    match e {
        Event::Frame(v) => format!("frame {v}"),
        Event::Closed(code) => format!("closed:{}", code.unwrap_or(1005)),
        Event::Error(e) => format!("error: {e}"),
    }
}

fn http_name(k: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sockets_end_reads_as_the_suites_compare_it() {
        assert_eq!(ended(Event::Closed(Some(1001))), "closed:1001");
        assert_eq!(ended(Event::Closed(None)), "closed:1005");
        assert_eq!(ended(Event::Error("reset".into())), "error: reset");
    }

    #[test]
    fn a_forged_token_has_no_signature_and_a_signed_one_verifies() {
        let none = alg_none_token(7);
        assert!(none.ends_with('.'), "{none}");
        assert_eq!(none.split('.').count(), 3);
        let now = unix_now();
        let t = sign_token(crate::JWT_SECRET.as_bytes(), 7, 3, now, now + 60);
        let keys =
            parley::auth::JwtKeys::new(crate::JWT_SECRET.as_bytes(), Duration::from_secs(60));
        assert_eq!(
            keys.verify(&t).map(|b| (b.user.0, b.sid.0)).ok(),
            Some((7, 3))
        );
    }
}
