//! A mock Web Push service on 127.0.0.1 (RFC 8030), for tests with
//! `push.allow_insecure_endpoints = true`. Each [`MockPush::subscribe`] makes what a
//! browser would: a P-256 key pair and a 16-byte auth secret, and an endpoint on the
//! mock. Each POST is checked as a real push service would (the VAPID JWT: ES256
//! with the `k=` key, `aud` = the mock's origin, `exp` at most 24 h ahead, `sub`
//! present) and its body decrypted per RFC 8291 with the subscription's private
//! key; what arrived is recorded per endpoint. Each endpoint answers as told
//! ([`Answer`]): 201, 404, 410, 429 with `Retry-After`, 500, or never.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{json, Value};

/// How an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 201 Created (after checking and decrypting).
    Accept,
    /// 404: the subscription expired.
    NotFound,
    /// 410 Gone: the user unsubscribed.
    Gone,
    /// The first `times` attempts get 429 with `Retry-After: secs`, then 201.
    TooManyRequests { times: u32, secs: u64 },
    /// 500, always.
    ServerError,
    /// Never answers (the request hangs until the client gives up).
    Hang,
}

/// One push that arrived and passed the checks.
#[derive(Debug, Clone)]
pub struct Received {
    /// Lower-cased header names.
    pub headers: HashMap<String, String>,
    /// The decrypted payload.
    pub payload: Value,
    /// The raw (encrypted) body.
    pub body: Vec<u8>,
    /// The VAPID JWT's claims.
    pub claims: Value,
    pub at: Instant,
}

struct Sub {
    secret: p256::SecretKey,
    auth: [u8; 16],
    answer: Answer,
    attempts: u32,
    received: Vec<Received>,
    /// Requests that failed a check, with why.
    errors: Vec<String>,
}

#[derive(Default)]
struct State {
    origin: String,
    subs: HashMap<String, Sub>,
    /// Every request, whatever its path.
    requests: u64,
}

/// A browser's subscription on the mock.
#[derive(Debug, Clone)]
pub struct MockSubscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

impl MockSubscription {
    /// The body of `POST /api/push/subscriptions` (as `PushSubscription.toJSON()`).
    pub fn json(&self) -> Value {
        json!({"endpoint": self.endpoint, "expirationTime": null,
               "keys": {"p256dh": self.p256dh, "auth": self.auth}})
    }
}

#[derive(Clone)]
pub struct MockPush {
    pub origin: String,
    state: Arc<Mutex<State>>,
}

impl MockPush {
    /// Starts the service on a free loopback port (inside an actix system).
    pub async fn start() -> MockPush {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let origin = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State {
            origin: origin.clone(),
            ..State::default()
        }));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024))
                .route("/push/{token}", web::post().to(receive))
                .default_service(web::to(|data: web::Data<Mutex<State>>| async move {
                    data.lock().unwrap().requests += 1;
                    HttpResponse::NotFound().finish()
                }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        actix_web::rt::spawn(server);
        MockPush { origin, state }
    }

    /// A new subscription answering `answer`.
    pub fn subscribe(&self, answer: Answer) -> MockSubscription {
        let secret = loop {
            let bytes: [u8; 32] = rand_bytes();
            if let Ok(s) = p256::SecretKey::from_slice(&bytes) {
                break s;
            }
        };
        let auth: [u8; 16] = rand_bytes();
        let token = URL_SAFE_NO_PAD.encode(rand_bytes::<18>());
        let point = secret.public_key().to_encoded_point(false);
        let sub = MockSubscription {
            endpoint: format!("{}/push/{token}", self.origin),
            p256dh: URL_SAFE_NO_PAD.encode(point.as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth),
        };
        self.state.lock().unwrap().subs.insert(
            token,
            Sub {
                secret,
                auth,
                answer,
                attempts: 0,
                received: Vec::new(),
                errors: Vec::new(),
            },
        );
        sub
    }

    fn with<T>(&self, endpoint: &str, f: impl FnOnce(&mut Sub) -> T) -> T {
        let token = endpoint.rsplit('/').next().unwrap_or_default();
        let mut state = self.state.lock().unwrap();
        f(state
            .subs
            .get_mut(token)
            .expect("a subscription of this mock"))
    }

    pub fn set_answer(&self, endpoint: &str, answer: Answer) {
        self.with(endpoint, |s| s.answer = answer);
    }

    /// Pushes that arrived at `endpoint` and passed the checks.
    pub fn received(&self, endpoint: &str) -> Vec<Received> {
        self.with(endpoint, |s| s.received.clone())
    }

    /// Requests to `endpoint`, answered or not.
    pub fn attempts(&self, endpoint: &str) -> u32 {
        self.with(endpoint, |s| s.attempts)
    }

    /// Requests that failed a check.
    pub fn errors(&self, endpoint: &str) -> Vec<String> {
        self.with(endpoint, |s| s.errors.clone())
    }

    /// Every request the mock had.
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Waits until `endpoint` has `n` pushes (panics after `timeout`).
    pub async fn wait_for(&self, endpoint: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received(endpoint);
            if got.len() >= n {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "{n} pushes expected at {endpoint} within {timeout:?}, got {}; errors: {:?}",
                    got.len(),
                    self.errors(endpoint)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(16) {
        let u = uuid::Uuid::new_v4();
        chunk.copy_from_slice(&u.as_bytes()[..chunk.len()]);
    }
    out
}

async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    data: web::Data<Mutex<State>>,
) -> HttpResponse {
    let answer = {
        let mut state = data.lock().unwrap();
        state.requests += 1;
        let Some(sub) = state.subs.get_mut(path.as_str()) else {
            return HttpResponse::NotFound().finish();
        };
        sub.attempts += 1;
        sub.answer
    };
    match answer {
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return HttpResponse::ServiceUnavailable().finish();
        }
        Answer::NotFound => return HttpResponse::NotFound().finish(),
        Answer::Gone => return HttpResponse::Gone().finish(),
        Answer::ServerError => return HttpResponse::InternalServerError().finish(),
        Answer::TooManyRequests { times, secs } => {
            let attempts = data.lock().unwrap().subs[path.as_str()].attempts;
            if attempts <= times {
                return HttpResponse::TooManyRequests()
                    .insert_header(("Retry-After", secs.to_string()))
                    .finish();
            }
        }
        Answer::Accept => {}
    }
    let mut state = data.lock().unwrap();
    let origin = state.origin.clone();
    let sub = state.subs.get_mut(path.as_str()).expect("checked above");
    match check(&req, &body, sub, &origin) {
        Ok(received) => {
            sub.received.push(received);
            HttpResponse::Created().finish()
        }
        Err(why) => {
            sub.errors.push(why);
            HttpResponse::BadRequest().finish()
        }
    }
}

/// What a push service checks, then the decryption a browser does.
fn check(req: &HttpRequest, body: &[u8], sub: &Sub, origin: &str) -> Result<Received, String> {
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let auth = headers.get("authorization").ok_or("no Authorization")?;
    let (t, k) = auth
        .strip_prefix("vapid t=")
        .and_then(|a| a.split_once(", k="))
        .ok_or_else(|| format!("not a vapid header: {auth}"))?;
    let point = URL_SAFE_NO_PAD
        .decode(k)
        .map_err(|_| "k= is not base64url".to_owned())?;
    if point.len() != 65 || point[0] != 4 {
        return Err("k= is not an uncompressed P-256 point".into());
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[origin]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(
        t,
        &jsonwebtoken::DecodingKey::from_ec_der(&point),
        &validation,
    )
    .map_err(|e| format!("VAPID JWT: {e}"))?
    .claims;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if exp > now + 24 * 3600 {
        return Err(format!("exp {exp} is more than 24 h ahead"));
    }
    if claims["sub"].as_str().is_none_or(str::is_empty) {
        return Err("no sub".into());
    }
    if headers.get("content-encoding").map(String::as_str) != Some("aes128gcm") {
        return Err("Content-Encoding is not aes128gcm".into());
    }
    if !headers.contains_key("ttl") {
        return Err("no TTL".into());
    }
    let auth = web_push_native::Auth::from(sub.auth);
    let plain = web_push_native::decrypt(body.to_vec(), &sub.secret, &auth)
        .map_err(|e| format!("decrypt: {e}"))?;
    let payload: Value =
        serde_json::from_slice(&plain).map_err(|e| format!("payload is not JSON: {e}"))?;
    Ok(Received {
        headers,
        payload,
        body: body.to_vec(),
        claims,
        at: Instant::now(),
    })
}
