//! Web Push (issue 20): the VAPID key route, subscriptions (validation, the SSRF
//! guard, the per-user cap, ownership), revocation removing them, and the engine
//! against the mock push service (testkit/src/push.rs): decrypted payloads, VAPID,
//! headers, 404/410, 429 with Retry-After, a hanging push service, the bounded queue.
//!
//! The engine is offered events directly here (`TestApp.push`); which messages and
//! calls produce offers is the realtime core's part (tested with it).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parley::config::Settings;
use parley_actors::push::{PushEvent, PushOffer, PushSink};
use parley_actors::{CallId, ChatId, MessageId, UserId};
use parley_testkit::push::{Answer, MockPush, MockSubscription};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::*;

const SUBJECT: &str = "mailto:ops@example.org";

fn with_push(s: &mut Settings) {
    let (private, _) = parley::push::vapid::generate();
    s.push.vapid_private_key = Some(SecretString::from(private));
    s.push.subject = Some(SUBJECT.into());
    s.push.allow_insecure_endpoints = true;
}

async fn push_app(more: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        with_push(s);
        more(s);
    })
    .await
}

async fn subscribe(app: &TestApp, user: &TestUser, body: &Value) -> reqwest::Response {
    app.post_auth("/api/push/subscriptions", &user.token, body)
        .await
}

async fn unsubscribe(app: &TestApp, token: &str, endpoint: &str) -> reqwest::Response {
    app.http
        .delete(app.url("/api/push/subscriptions"))
        .bearer_auth(token)
        .json(&json!({ "endpoint": endpoint }))
        .send()
        .await
        .unwrap()
}

async fn subscribed(app: &TestApp, user: &TestUser, sub: &MockSubscription) {
    let res = subscribe(app, user, &sub.json()).await;
    assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
}

async fn count(app: &TestApp, sql: &str) -> u64 {
    use mysql_async::prelude::Queryable;
    let mut conn = app.mysql().await;
    conn.query_first(sql).await.unwrap().unwrap_or(0)
}

async fn subscriptions_of(app: &TestApp, user: &TestUser) -> u64 {
    count(
        app,
        &format!(
            "SELECT COUNT(*) FROM push_subscriptions WHERE user_id = {}",
            user.id
        ),
    )
    .await
}

fn engine(app: &TestApp) -> &Arc<parley::push::engine::PushEngine> {
    app.push.engine.as_ref().expect("push is on")
}

fn message(chat: u64, message: u64, sender: &TestUser, preview: Option<&str>) -> PushEvent {
    PushEvent::Message {
        chat: ChatId(chat),
        message: MessageId(message),
        sender: UserId(sender.id),
        preview: preview.map(Arc::from),
    }
}

fn offer(app: &TestApp, to: &[&TestUser], event: PushEvent) {
    engine(app).offer(PushOffer {
        users: to.iter().map(|u| UserId(u.id)).collect(),
        event,
    });
}

#[actix_web::test]
async fn the_vapid_key_is_served_and_push_is_off_without_one() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let res = app.get_auth("/api/push/vapid-public-key", &ann.token).await;
    assert_error(res, StatusCode::NOT_FOUND, "push_disabled").await;
    let mock = MockPush::start().await;
    let res = subscribe(&app, &ann, &mock.subscribe(Answer::Accept).json()).await;
    assert_error(res, StatusCode::NOT_FOUND, "push_disabled").await;

    let (private, public) = parley::push::vapid::generate();
    let app = spawn_app_with(|s| {
        s.push.vapid_private_key = Some(SecretString::from(private));
    })
    .await;
    let res = app
        .http
        .get(app.url("/api/push/vapid-public-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({ "publicKey": public })
    );
}

#[actix_web::test]
async fn endpoints_on_private_addresses_and_bad_keys_are_refused() {
    // The guard as shipped: no insecure endpoints.
    let app = push_app(|s| s.push.allow_insecure_endpoints = false).await;
    let ann = app.register("ann").await;
    let mock = MockPush::start().await;
    let good = mock.subscribe(Answer::Accept);
    for endpoint in [
        "https://127.0.0.1/push/x",
        "https://10.0.0.1/push/x",
        "https://172.16.5.4/push/x",
        "https://192.168.1.1/push/x",
        "https://100.64.0.1/push/x",
        "https://[::1]/push/x",
        "https://[::ffff:127.0.0.1]/push/x",
        "https://[fe80::1]/push/x",
        "https://[fd00::1]/push/x",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/push/x",
        "https://localhost/push/x",
        // The mock itself: http and loopback.
        good.endpoint.as_str(),
        "http://push.example.net/x",
        "https://push.example.net:8443/x",
        "https://user:pw@push.example.net/x",
        "ftp://push.example.net/x",
        "not a url",
    ] {
        let mut body = good.json();
        body["endpoint"] = json!(endpoint);
        let res = subscribe(&app, &ann, &body).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_endpoint").await;
    }
    let mut long = good.json();
    long["endpoint"] = json!(format!("https://push.example.net/{}", "a".repeat(1100)));
    assert_error(
        subscribe(&app, &ann, &long).await,
        StatusCode::BAD_REQUEST,
        "invalid_endpoint",
    )
    .await;
    let https = |keys: Value| json!({"endpoint": "https://push.example.net/x", "keys": keys});
    for keys in [
        json!({"p256dh": "AAAA", "auth": good.auth}),
        // 65 bytes, uncompressed tag, but not a point on the curve.
        json!({"p256dh": URL_SAFE_NO_PAD.encode([4u8; 65]), "auth": good.auth}),
        json!({"p256dh": good.p256dh, "auth": "AAAA"}),
        json!({"p256dh": "not base64!", "auth": good.auth}),
    ] {
        let res = subscribe(&app, &ann, &https(keys)).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_key").await;
    }
    let res = subscribe(
        &app,
        &ann,
        &json!({"endpoint": "https://push.example.net/x"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app.post_json("/api/push/subscriptions", &good.json()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(subscriptions_of(&app, &ann).await, 0);
    // Nothing was ever sent anywhere: the mock saw no request.
    assert_eq!(mock.requests(), 0);
}

/// Each subscribe costs a DNS lookup and a transaction: one account cannot loop on
/// it (20 a minute), and its limit is not anyone else's.
#[actix_web::test]
async fn subscribing_is_rate_limited_per_account() {
    let app = push_app(|_| {}).await;
    let AnnBob { ann, bob, .. } = app.ann_bob().await;
    let mock = MockPush::start().await;
    for _ in 0..parley::push::SUBSCRIBES_PER_MIN {
        subscribed(&app, &ann, &mock.subscribe(Answer::Accept)).await;
    }
    let res = subscribe(&app, &ann, &mock.subscribe(Answer::Accept).json()).await;
    assert!(res.headers().contains_key("retry-after"), "{res:?}");
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    subscribed(&app, &bob, &mock.subscribe(Answer::Accept)).await;
}

#[actix_web::test]
async fn ten_per_user_the_oldest_replaced_and_only_ones_own_deleted() {
    let app = push_app(|_| {}).await;
    let AnnBob { ann, bob, .. } = app.ann_bob().await;
    let mock = MockPush::start().await;
    let subs: Vec<MockSubscription> = (0..11).map(|_| mock.subscribe(Answer::Accept)).collect();
    for sub in &subs {
        subscribed(&app, &ann, sub).await;
        // created_at has millisecond precision: keep the order unambiguous.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(subscriptions_of(&app, &ann).await, 10);
    let oldest = count(
        &app,
        &format!(
            "SELECT COUNT(*) FROM push_subscriptions WHERE endpoint = '{}'",
            subs[0].endpoint
        ),
    )
    .await;
    assert_eq!(oldest, 0, "the oldest was replaced");
    // The same endpoint again updates it.
    subscribed(&app, &ann, &subs[5]).await;
    assert_eq!(subscriptions_of(&app, &ann).await, 10);

    // bob cannot delete ann's; a browser's endpoint subscribed by bob becomes his.
    let res = unsubscribe(&app, &bob.token, &subs[3].endpoint).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(subscriptions_of(&app, &ann).await, 10);
    subscribed(&app, &bob, &subs[3]).await;
    assert_eq!(subscriptions_of(&app, &ann).await, 9);
    assert_eq!(subscriptions_of(&app, &bob).await, 1);
    let res = unsubscribe(&app, &ann.token, &subs[3].endpoint).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = unsubscribe(&app, &bob.token, &subs[3].endpoint).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(subscriptions_of(&app, &bob).await, 0);
    let res = unsubscribe(&app, &bob.token, &subs[3].endpoint).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[actix_web::test]
async fn a_message_push_arrives_encrypted_signed_and_with_the_right_headers() {
    let app = push_app(|_| {}).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mock = MockPush::start().await;
    let sub = mock.subscribe(Answer::Accept);
    subscribed(&app, &bob, &sub).await;

    let started = Instant::now();
    offer(&app, &[&bob], message(chat, 42, &ann, Some("hello bob")));
    let got = mock
        .wait_for(&sub.endpoint, 1, Duration::from_secs(2))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let push = &got[0];
    assert_eq!(
        push.payload,
        json!({"type": "message", "chatId": chat, "messageId": 42,
               "title": "ann", "body": "hello bob"})
    );
    assert_eq!(push.headers["ttl"], "86400");
    assert_eq!(push.headers["urgency"], "high");
    assert_eq!(push.headers["topic"], format!("chat-{chat}"));
    assert_eq!(push.headers["content-encoding"], "aes128gcm");
    assert_eq!(push.headers["content-type"], "application/octet-stream");
    assert_eq!(push.claims["aud"], mock.origin);
    assert_eq!(push.claims["sub"], SUBJECT);
    assert!(!String::from_utf8_lossy(&push.body).contains("hello bob"));

    // A group's title names it; the sender never gets their own push.
    let group = app.group_chat(&ann, &[&bob]).await;
    offer(
        &app,
        &[&bob, &ann],
        message(group, 43, &ann, Some("hi all")),
    );
    let got = mock
        .wait_for(&sub.endpoint, 2, Duration::from_secs(2))
        .await;
    assert_eq!(got[1].payload["chatId"], group);
    assert_eq!(got[1].payload["title"], "ann in group");
    wait_until(Duration::from_secs(2), "2 counted as sent", || async {
        engine(&app).stats().sent.load(Ordering::Relaxed) == 2
    })
    .await;
    assert_eq!(mock.errors(&sub.endpoint), Vec::<String>::new());
}

#[actix_web::test]
async fn calls_and_encrypted_messages_carry_no_content() {
    let app = push_app(|_| {}).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mock = MockPush::start().await;
    let sub = mock.subscribe(Answer::Accept);
    subscribed(&app, &bob, &sub).await;

    offer(
        &app,
        &[&bob],
        PushEvent::Call {
            chat: ChatId(chat),
            call: CallId("c-123".into()),
            caller: UserId(ann.id),
        },
    );
    let got = mock
        .wait_for(&sub.endpoint, 1, Duration::from_secs(2))
        .await;
    assert_eq!(
        got[0].payload,
        json!({"type": "call", "chatId": chat, "callId": "c-123",
               "title": "ann", "body": "Incoming call"})
    );
    assert_eq!(got[0].headers["ttl"], "60");

    // Encrypted: the offer has no preview; the body is generic.
    offer(&app, &[&bob], message(chat, 7, &ann, None));
    let got = mock
        .wait_for(&sub.endpoint, 2, Duration::from_secs(2))
        .await;
    assert_eq!(got[1].payload["body"], "New message");
    assert_eq!(got[1].payload["messageId"], 7);

    // push.include_content = false: no plaintext content either.
    let app = push_app(|s| s.push.include_content = false).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let sub = mock.subscribe(Answer::Accept);
    subscribed(&app, &bob, &sub).await;
    offer(&app, &[&bob], message(chat, 8, &ann, Some("secret plans")));
    let got = mock
        .wait_for(&sub.endpoint, 1, Duration::from_secs(2))
        .await;
    assert_eq!(got[0].payload["body"], "New message");
    assert!(!got[0].payload.to_string().contains("secret plans"));
}

#[actix_web::test]
async fn gone_and_not_found_remove_the_subscription() {
    let app = push_app(|_| {}).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mock = MockPush::start().await;
    let gone = mock.subscribe(Answer::Gone);
    let missing = mock.subscribe(Answer::NotFound);
    subscribed(&app, &bob, &gone).await;
    subscribed(&app, &bob, &missing).await;
    offer(&app, &[&bob], message(chat, 1, &ann, Some("one")));
    wait_until(Duration::from_secs(3), "subscriptions deleted", || async {
        subscriptions_of(&app, &bob).await == 0
    })
    .await;
    assert_eq!(mock.attempts(&gone.endpoint), 1);
    assert_eq!(mock.attempts(&missing.endpoint), 1);
    offer(&app, &[&bob], message(chat, 2, &ann, Some("two")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mock.attempts(&gone.endpoint), 1, "no more sends");
    assert_eq!(engine(&app).stats().failed.load(Ordering::Relaxed), 2);
}

#[actix_web::test]
async fn too_many_requests_is_retried_after_retry_after_and_errors_up_to_max_attempts() {
    let app = push_app(|s| s.push.max_attempts = 3).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mock = MockPush::start().await;
    let slow = mock.subscribe(Answer::TooManyRequests { times: 1, secs: 1 });
    let broken = mock.subscribe(Answer::ServerError);
    subscribed(&app, &bob, &slow).await;
    subscribed(&app, &bob, &broken).await;
    let started = Instant::now();
    offer(&app, &[&bob], message(chat, 1, &ann, Some("later")));
    let got = mock
        .wait_for(&slow.endpoint, 1, Duration::from_secs(5))
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(got[0].payload["body"], "later");
    assert_eq!(mock.attempts(&slow.endpoint), 2);
    // 500: backoff 1 s, 2 s, then given up after 3 attempts; the row stays.
    wait_until(Duration::from_secs(6), "given up", || async {
        engine(&app).stats().failed.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(mock.attempts(&broken.endpoint), 3);
    assert_eq!(subscriptions_of(&app, &bob).await, 2);
}

#[actix_web::test]
async fn revoking_a_session_changing_the_password_or_deleting_the_account_removes_subscriptions() {
    let app = push_app(|_| {}).await;
    let ann = app.register("ann").await;
    let mock = MockPush::start().await;
    let login = |app: &TestApp, u: &TestUser| {
        let (http, url, body) = (
            app.http.clone(),
            app.url("/api/auth/login"),
            json!({"email": u.email, "password": u.password}),
        );
        async move {
            let res = http.post(url).json(&body).send().await.unwrap();
            res.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let as_token = |u: &TestUser, token: String| TestUser { token, ..u.clone() };
    // Sign-out removes that session's subscription only.
    let second = as_token(&ann, login(&app, &ann).await);
    subscribed(&app, &ann, &mock.subscribe(Answer::Accept)).await;
    subscribed(&app, &second, &mock.subscribe(Answer::Accept)).await;
    let res = app
        .post_auth("/api/auth/logout", &second.token, &json!({}))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(subscriptions_of(&app, &ann).await, 1);
    // Signing out the others (DELETE /api/sessions) removes theirs.
    let third = as_token(&ann, login(&app, &ann).await);
    subscribed(&app, &third, &mock.subscribe(Answer::Accept)).await;
    let res = app
        .http
        .delete(app.url("/api/sessions"))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(subscriptions_of(&app, &ann).await, 1);
    // A revoked session cannot subscribe.
    let res = subscribe(&app, &third, &mock.subscribe(Answer::Accept).json()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A password change keeps the current session's, removes the others'.
    let fourth = as_token(&ann, login(&app, &ann).await);
    subscribed(&app, &fourth, &mock.subscribe(Answer::Accept)).await;
    assert_eq!(subscriptions_of(&app, &ann).await, 2);
    let res = app
        .post_auth(
            "/api/auth/password",
            &ann.token,
            &json!({"currentPassword": ann.password, "newPassword": "a-new-secret-pw"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(subscriptions_of(&app, &ann).await, 1);
    // Deleting the account removes all.
    let res = app
        .http
        .delete(app.url("/api/users/me"))
        .bearer_auth(&ann.token)
        .json(&json!({"password": "a-new-secret-pw"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(subscriptions_of(&app, &ann).await, 0);
}

#[actix_web::test]
async fn a_hanging_push_service_delays_no_one_else_and_messaging_goes_on() {
    let app = push_app(|s| {
        s.push.workers = 2;
        s.push.timeout_ms = 10_000;
    })
    .await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let carl = app.register("carl").await;
    let carls = app.direct_chat(&ann, &carl).await;
    let mock = MockPush::start().await;
    let dead = mock.subscribe(Answer::Hang);
    let alive = mock.subscribe(Answer::Accept);
    subscribed(&app, &bob, &dead).await;
    subscribed(&app, &carl, &alive).await;
    for i in 0..20 {
        offer(&app, &[&bob], message(chat, i, &ann, Some("to the void")));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    offer(&app, &[&carl], message(carls, 99, &ann, Some("hi carl")));
    mock.wait_for(&alive.endpoint, 1, Duration::from_secs(2))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // One request at a time per subscription; newer pushes replace the waiting one.
    assert_eq!(mock.attempts(&dead.endpoint), 1);
    assert!(engine(&app).stats().dropped.load(Ordering::Relaxed) >= 18);
    // Messaging is untouched.
    let mut ws = app.ws(&ann).await;
    let started = Instant::now();
    ws.send_text(chat, "still-here-1", "still here").await;
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[actix_web::test]
async fn a_full_queue_drops_the_oldest_offers() {
    let app = push_app(|s| s.push.queue = 10).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mock = MockPush::start().await;
    let sub = mock.subscribe(Answer::Accept);
    subscribed(&app, &bob, &sub).await;
    // Offered back to back on this thread: the dispatcher cannot run meanwhile.
    for i in 0..100 {
        offer(
            &app,
            &[&bob],
            message(chat, i, &ann, Some(&format!("m{i}"))),
        );
    }
    assert_eq!(engine(&app).queued(), 10);
    assert_eq!(engine(&app).stats().dropped.load(Ordering::Relaxed), 90);
    // The newest survive (and the push service keeps the newest per topic).
    wait_until(Duration::from_secs(3), "the newest push", || async {
        mock.received(&sub.endpoint)
            .iter()
            .any(|r| r.payload["messageId"] == 99)
    })
    .await;
    assert!(mock
        .received(&sub.endpoint)
        .iter()
        .all(|r| r.payload["messageId"].as_u64().unwrap() >= 90));
}

/// End to end with the realtime core: messages from a WebSocket produce pushes for
/// an offline or hidden recipient, none for a visible one or a muted chat.
#[actix_web::test]
async fn pushes_go_to_offline_and_hidden_users_never_to_visible_ones_or_muted_chats() {
    let app = push_app(|_| {}).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mock = MockPush::start().await;
    let sub = mock.subscribe(Answer::Accept);
    subscribed(&app, &bob, &sub).await;
    let mut ws_ann = app.ws(&ann).await;

    // bob offline: a push within 2 s, with the text.
    let started = Instant::now();
    let sent = ws_ann.send_text(chat, "e2e-1", "are you there?").await;
    let got = mock
        .wait_for(&sub.endpoint, 1, Duration::from_secs(2))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(got[0].payload["body"], "are you there?");
    assert_eq!(got[0].payload["messageId"], sent["id"]);
    assert_eq!(got[0].payload["title"], "ann");

    // bob connected (visible until told otherwise): no push.
    let mut ws_bob = app.ws(&bob).await;
    ws_ann.send_text(chat, "e2e-2", "now?").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.received(&sub.endpoint).len(), 1);

    // bob's tab hidden: a push again.
    ws_bob.send(json!({"event": "client:state", "data": {"visible": false}, "ref": "vis"}));
    ws_bob.reply_to("vis").await;
    ws_ann.send_text(chat, "e2e-3", "hidden?").await;
    let got = mock
        .wait_for(&sub.endpoint, 2, Duration::from_secs(2))
        .await;
    assert_eq!(got[1].payload["body"], "hidden?");

    // Muted: none.
    let res = app
        .http
        .patch(app.url(&format!("/api/chats/{chat}/settings")))
        .bearer_auth(&bob.token)
        .json(&json!({"muted": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    ws_ann.send_text(chat, "e2e-4", "muted?").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mock.received(&sub.endpoint).len(), 2);
}
