use std::time::Duration;

use parley::auth::jwt::{unix_now, Claims, JwtKeys};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app, spawn_app_with, JWT_SECRET};

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[actix_web::test]
async fn me_shows_the_user_their_own_email() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let res = app.get_auth("/api/users/me", &ann.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["id"], ann.id);
    assert_eq!(me["email"], ann.email);
    assert_eq!(me["username"], "ann");
    for key in ["online", "lastSeenAt", "hasPublicKey"] {
        assert!(me.get(key).is_some(), "{key} missing in {me}");
    }
}

#[actix_web::test]
async fn bad_tokens_are_refused_with_401() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let now = unix_now();

    let forged = JwtKeys::new(
        b"some-other-secret-some-other-secret",
        Duration::from_secs(60),
    )
    .issue(parley::UserId(ann.id), parley::AuthSessionId(1))
    .unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(format!(r#"{{"sub":"{}","iat":{now},"exp":{}}}"#, ann.id, now + 3600).as_bytes())
    );
    // The right secret, but an algorithm other than HS256.
    let hs512 = {
        use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
        let claims = Claims {
            sub: ann.id.to_string(),
            sid: 1,
            iat: now,
            exp: now + 3600,
        };
        encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let keys = JwtKeys::new(JWT_SECRET.as_bytes(), Duration::from_secs(60));
    let expired = keys
        .sign_claims(&Claims {
            sub: ann.id.to_string(),
            sid: 1,
            iat: now - 7200,
            exp: now - 3600,
        })
        .unwrap();
    let mut tampered = ann.token.clone();
    tampered.pop();
    tampered.push(if ann.token.ends_with('A') { 'B' } else { 'A' });

    for (token, code, why) in [
        (
            forged.as_str(),
            "invalid_token",
            "signed with another secret",
        ),
        (alg_none.as_str(), "invalid_token", "alg none"),
        (hs512.as_str(), "invalid_token", "HS512 instead of HS256"),
        (expired.as_str(), "token_expired", "expired"),
        (tampered.as_str(), "invalid_token", "tampered signature"),
        ("garbage", "invalid_token", "not a JWT"),
    ] {
        let res = app.get_auth("/api/users/me", token).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{why}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{why}: {body}");
    }
    let res = app.http.get(app.url("/api/users/me")).send().await.unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    let res = app
        .http
        .get(app.url("/api/users/me"))
        .header("authorization", format!("Basic {}", ann.token))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[actix_web::test]
async fn search_matches_email_or_username_and_hides_other_emails() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    app.register("annabel").await;
    app.register("bob").await;
    app.register("joanna").await;

    let found: Vec<Value> = app
        .get_auth("/api/users/search?query=ANN", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = found
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    // The caller is excluded; prefix matches come first.
    assert_eq!(names, vec!["annabel", "joanna"]);
    for u in &found {
        assert!(u.get("email").is_none(), "another user's email shown: {u}");
    }
    // By email only as the whole address, case-insensitively; a part of one (or a
    // domain) finds nobody, so addresses cannot be spelled out.
    let found: Vec<Value> = app
        .get_auth("/api/users/search?query=Bob@Example.COM", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["username"], "bob");
    assert!(found[0].get("email").is_none());
    for q in [
        "Bob@Example",
        "bob@",
        "@example.com",
        "example.com",
        "b@example.com",
    ] {
        let found: Vec<Value> = app
            .get_auth(&format!("/api/users/search?query={q}"), &ann.token)
            .await
            .json()
            .await
            .unwrap();
        assert!(found.is_empty(), "{q}: {found:?}");
    }
}

#[actix_web::test]
async fn searches_are_rate_limited_per_user() {
    let app = spawn_app_with(|s| s.limits.search_per_min = 3).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    for _ in 0..3 {
        let res = app.get_auth("/api/users/search?query=bo", &ann.token).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app.get_auth("/api/users/search?query=bo", &ann.token).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another user has a bucket of their own.
    let res = app.get_auth("/api/users/search?query=an", &bob.token).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn search_treats_like_wildcards_literally() {
    let app = spawn_app().await;
    let me = app.register("searcher").await;
    app.register("a_b_c").await;
    app.register("axbxc").await;
    app.register("pct").await;
    let names = |v: Vec<Value>| -> Vec<String> {
        v.iter()
            .map(|u| u["username"].as_str().unwrap().to_string())
            .collect()
    };
    let found: Vec<Value> = app
        .get_auth("/api/users/search?query=a_b", &me.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        names(found),
        vec!["a_b_c"],
        "_ must not match any character"
    );
    let found: Vec<Value> = app
        .get_auth("/api/users/search?query=%25%25", &me.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(found.is_empty(), "%% must not match everyone: {found:?}");
    let found: Vec<Value> = app
        .get_auth("/api/users/search?query=a%5C", &me.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(found.is_empty(), "a backslash is literal");
}

#[actix_web::test]
async fn search_needs_two_characters_and_returns_at_most_twenty() {
    let app = spawn_app().await;
    let me = app.register("searcher").await;
    for i in 0..25 {
        app.register(&format!("member{i:02}")).await;
    }
    for q in ["", "m", "%20m%20"] {
        let res = app
            .get_auth(&format!("/api/users/search?query={q}"), &me.token)
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "query_too_short").await;
    }
    let res = app.get_auth("/api/users/search", &me.token).await;
    assert_error(res, StatusCode::BAD_REQUEST, "query_too_short").await;
    let found: Vec<Value> = app
        .get_auth("/api/users/search?query=member", &me.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found.len(), 20);
    let res = app
        .http
        .get(app.url("/api/users/search?query=member"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
}
