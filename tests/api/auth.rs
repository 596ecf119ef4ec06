use mysql_async::prelude::Queryable;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn, spawn_app, spawn_app_with, test_settings};

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

#[actix_web::test]
async fn logins_are_rate_limited_per_account_with_retry_after() {
    let app = spawn_app_with(|s| s.limits.login_per_account_per_min = 3).await;
    let ann = app.register("ann").await;
    for _ in 0..3 {
        let res = app
            .post_json(
                "/api/auth/login",
                &json!({"email": ann.email, "password": "wrong-password"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while the account is throttled.
    let res = app
        .post_json(
            "/api/auth/login",
            &json!({"email": ann.email, "password": ann.password}),
        )
        .await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another account from the same IP is not affected by ann's bucket.
    let bob = app.register("bob").await;
    let res = app
        .post_json(
            "/api/auth/login",
            &json!({"email": bob.username, "password": bob.password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
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
