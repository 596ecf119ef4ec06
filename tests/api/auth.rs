use mysql_async::prelude::Queryable;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn, spawn_app, spawn_app_with, test_settings, TestApp};

#[actix_web::test]
async fn register_signs_the_user_in() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "Ann@Example.com", "username": "Ann", "password": "correct horse"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert_eq!(body["user"]["username"], "ann");
    assert_eq!(body["user"]["hasPublicKey"], false);
    assert!(body["user"]["lastSeenAt"].is_null());
    let token = body["token"].as_str().unwrap();
    let me: Value = app
        .get_auth("/api/users/me", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], body["user"]["id"]);
}

#[actix_web::test]
async fn register_refuses_bad_input_with_a_code_per_case() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": "nope", "username": "ann", "password": "password1"}),
            "invalid_email",
            "email without @",
        ),
        (
            json!({"email": "a@b.c", "username": "an", "password": "password1"}),
            "invalid_username",
            "username too short",
        ),
        (
            json!({"email": "a@b.c", "username": "a".repeat(33), "password": "password1"}),
            "invalid_username",
            "username too long",
        ),
        (
            json!({"email": "a@b.c", "username": "ann smith", "password": "password1"}),
            "invalid_username",
            "space in username",
        ),
        (
            json!({"email": "a@b.c", "username": "ann", "password": "short"}),
            "invalid_password",
            "password too short",
        ),
        (
            json!({"email": "a@b.c", "username": "ann", "password": "x".repeat(129)}),
            "invalid_password",
            "password too long",
        ),
        (
            json!({"email": "a@b.c", "password": "password1"}),
            "invalid_field",
            "missing username",
        ),
        (
            json!({"email": 5, "username": "ann", "password": "password1"}),
            "invalid_field",
            "email is a number",
        ),
        (
            json!({"email": "a@b.c", "username": "ann", "password": "password1", "admin": true}),
            "invalid_field",
            "unknown field",
        ),
    ];
    for (body, code, why) in cases {
        let res = app.post_json("/api/auth/register", &body).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{why}");
        let b: Value = res.json().await.unwrap();
        assert_eq!(b["error"]["code"], code, "{why}: {b}");
    }
    // Not JSON at all.
    let res = app
        .http
        .post(app.url("/api/auth/register"))
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::BAD_REQUEST, "malformed_json").await;
    // Wrong content type.
    let res = app
        .http
        .post(app.url("/api/auth/register"))
        .header("content-type", "text/plain")
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // Over the body limit.
    let huge = json!({"email": "a@b.c", "username": "ann", "password": "x".repeat(100_000)});
    let res = app.post_json("/api/auth/register", &huge).await;
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    // Nothing was stored by any of it.
    let mut conn = app.mysql().await;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM users")
        .await
        .unwrap();
    assert_eq!(n, Some(0));
}

#[actix_web::test]
async fn a_taken_email_or_username_is_409_naming_the_field() {
    let app = spawn_app().await;
    app.register("ann").await;
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "ANN@example.com", "username": "other", "password": "password1"}),
        )
        .await;
    let body = assert_error(res, StatusCode::CONFLICT, "email_taken").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("email"));
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "new@example.com", "username": "ANN", "password": "password1"}),
        )
        .await;
    let body = assert_error(res, StatusCode::CONFLICT, "username_taken").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("username"));
}

#[actix_web::test]
async fn login_accepts_email_or_username_in_any_case() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    for login in [
        ann.email.clone(),
        ann.username.clone(),
        ann.email.to_uppercase(),
    ] {
        let res = app
            .post_json(
                "/api/auth/login",
                &json!({"email": login, "password": ann.password}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "login as {login}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["user"]["id"], ann.id);
        let token = body["token"].as_str().unwrap();
        assert_eq!(
            app.get_auth("/api/users/me", token).await.status(),
            StatusCode::OK
        );
    }
}

#[actix_web::test]
async fn unknown_account_and_wrong_password_look_the_same() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let wrong = app
        .post_json(
            "/api/auth/login",
            &json!({"email": ann.email, "password": "not-her-password"}),
        )
        .await;
    let unknown = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "ghost@example.com", "password": "whatever1"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let wrong: Value = wrong.json().await.unwrap();
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"]["code"], "invalid_credentials");
}

/// A login as if from `ip` (the test client is loopback, a trusted proxy).
async fn login_from(app: &TestApp, ip: &str, login: &str, password: &str) -> reqwest::Response {
    parley_testkit::client::login_from(&app.http, &app.address, ip, login, password).await
}

#[actix_web::test]
async fn failed_logins_earn_a_delay_with_retry_after_but_never_lock_out_the_owner() {
    let app = spawn_app_with(|s| s.limits.login_free_failures = 3).await;
    let ann = app.register("ann").await;
    // Ann signs in from home: that network becomes a known source.
    let res = login_from(&app, "192.0.2.10", &ann.email, &ann.password).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Someone else fails from several networks; after three, each must wait 1 s,
    // then 2 s, then 4 s…
    for i in 0..5 {
        if i >= 3 {
            let early = login_from(&app, "198.51.9.7", &ann.email, "wrong-password").await;
            assert_error(early, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
            tokio::time::sleep(std::time::Duration::from_millis(1100 << (i - 3))).await;
        }
        let res = login_from(&app, &format!("198.51.{i}.7"), &ann.email, "wrong-password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let res = login_from(&app, "198.51.9.7", &ann.email, "wrong-password").await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3..=4).contains(&retry), "retry-after {retry}");
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Ann at home (same /24) is not slowed by any of it.
    let res = login_from(&app, "192.0.2.55", &ann.username, &ann.password).await;
    assert_eq!(res.status(), StatusCode::OK);
    // From a network she never used she waits like everyone else (not locked: slowed).
    let res = login_from(&app, "203.0.113.1", &ann.email, &ann.password).await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another account is not affected by ann's count.
    let bob = app.register("bob").await;
    let res = login_from(&app, "198.51.9.7", &bob.username, &bob.password).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn spellings_of_one_account_share_its_limit_and_invisible_ones_are_refused() {
    let app = spawn_app_with(|s| s.limits.login_free_failures = 3).await;
    let ann = app.register("ann").await;
    for login in ["ANN", "\u{ff41}\u{ff4e}\u{ff4e}", "Ann@Example.COM"] {
        let res = login_from(&app, "198.51.100.1", login, "wrong-password").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{login:?}");
    }
    let res = login_from(&app, "198.51.100.1", "ann", "wrong-password").await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    for login in [
        "a\u{200b}nn",
        "a\u{1}nn",
        "an\u{200d}n@example.com",
        "\u{feff}ann",
        "\u{e2}nn",
    ] {
        let res = login_from(&app, "198.51.100.2", login, &ann.password).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_login").await;
    }
    for (email, username, code) in [
        ("a\u{200b}b@example.com", "abc", "invalid_email"),
        ("abc@example.com", "a\u{200b}bc", "invalid_username"),
        ("abc@example.com", "a\u{1}bc", "invalid_username"),
        ("abc@example.com", "v\u{ee}ctor", "invalid_username"),
    ] {
        let res = app
            .post_json(
                "/api/auth/register",
                &json!({"email": email, "username": username, "password": "password1"}),
            )
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, code).await;
    }
    // Registration folds as login does, and the unique keys (case- and
    // accent-insensitive) agree with login: these are all ann again.
    for (email, username, code) in [
        ("ANN@example.com", "ann2", "email_taken"),
        ("\u{e2}nn@example.com", "ann3", "email_taken"),
        (
            "ann4@example.com",
            "\u{ff41}\u{ff4e}\u{ff4e}",
            "username_taken",
        ),
    ] {
        let res = app
            .post_json(
                "/api/auth/register",
                &json!({"email": email, "username": username, "password": "password1"}),
            )
            .await;
        assert_error(res, StatusCode::CONFLICT, code).await;
    }
}

#[actix_web::test]
async fn ws_tickets_are_issued_to_the_caller_and_work_once() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let res = app
        .http
        .post(app.url("/api/auth/ws-ticket"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    let res = app
        .post_auth("/api/auth/ws-ticket", &ann.token, &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ttlSeconds"], 30);
    let ticket = body["ticket"].as_str().unwrap().to_string();
    assert!(ticket.len() >= 32 && !ticket.contains(&ann.token));
    let url = format!("ws://127.0.0.1:{}/ws?ticket={ticket}", app.port);
    let mut ws = crate::helpers::WsClient::connect(&url).await;
    assert_eq!(ws.wait_for("ready").await["data"]["userId"], ann.id);
    // Used once: refused as JSON before the upgrade.
    for t in [ticket.as_str(), "garbage", ann.token.as_str()] {
        let res = app
            .http
            .get(format!("{}/ws?ticket={t}", app.address))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_ticket").await;
    }
}

#[actix_web::test]
async fn logins_are_rate_limited_per_ip() {
    let app = spawn_app_with(|s| s.limits.login_per_ip_per_min = 4).await;
    for i in 0..4 {
        let res = app
            .post_json(
                "/api/auth/login",
                &json!({"email": format!("user{i}"), "password": "password1"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "user9", "password": "password1"}),
        )
        .await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[actix_web::test]
async fn registrations_are_rate_limited_per_ip() {
    let app = spawn_app_with(|s| s.limits.register_per_ip_per_min = 2).await;
    app.register("ann").await;
    app.register("bob").await;
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "cy@example.com", "username": "cy_", "password": "password1"}),
        )
        .await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[actix_web::test]
async fn passwords_are_stored_as_pbkdf2_phc_strings_and_rehashed_when_weaker() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let mut conn = app.mysql().await;
    let hash: String = conn
        .exec_first("SELECT password_hash FROM users WHERE id = ?", (ann.id,))
        .await
        .unwrap()
        .unwrap();
    assert!(hash.starts_with("$pbkdf2-sha256$i=1000,"), "{hash}");
    assert!(!hash.contains(&ann.password));

    // A second node on the same database with a higher count upgrades the hash on login.
    let mut stronger = test_settings();
    stronger.database.url = app.settings.database.url.clone();
    stronger.auth.pbkdf2_iterations = 2000;
    let node2 = spawn(stronger, false).await;
    let res = node2
        .post_json(
            "/api/auth/login",
            &json!({"email": ann.email, "password": ann.password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let hash: String = conn
        .exec_first("SELECT password_hash FROM users WHERE id = ?", (ann.id,))
        .await
        .unwrap()
        .unwrap();
    assert!(hash.starts_with("$pbkdf2-sha256$i=2000,"), "{hash}");
    // ...and the old node still verifies it (the count travels with the hash).
    let res = app
        .post_json(
            "/api/auth/login",
            &json!({"email": ann.email, "password": ann.password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
