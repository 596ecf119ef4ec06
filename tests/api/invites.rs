//! Registration modes and invites (issue 19): `auth.registration`, invites made by
//! `parley admin invite create`, consumed by `POST /api/auth/register {invite}`.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use parley::config::RegistrationMode;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::admin_cli::{admin, admin_json, token_of};
use crate::helpers::{assert_error, spawn_app, spawn_app_with, TestApp};

async fn register(app: &TestApp, name: &str, invite: Option<&str>) -> reqwest::Response {
    let mut body = json!({"email": format!("{name}@example.com"), "username": name,
                          "password": format!("pw-{name}-secret")});
    if let Some(i) = invite {
        body["invite"] = json!(i);
    }
    app.post_json("/api/auth/register", &body).await
}

async fn invite_app() -> TestApp {
    spawn_app_with(|s| s.auth.registration = RegistrationMode::Invite).await
}

/// A new invite's token, through the CLI.
async fn invite(app: &TestApp, args: &[&str]) -> String {
    let mut all = vec!["invite", "create"];
    all.extend_from_slice(args);
    let made = admin_json(app, &all).await;
    let link = made["link"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{}/register?invite=", app.address)),
        "{link}"
    );
    assert_eq!(made["token"].as_str().unwrap(), token_of(link));
    token_of(link)
}

async fn uses(app: &TestApp) -> Vec<(u64, u32)> {
    let mut conn = app.mysql().await;
    conn.query("SELECT id, uses FROM invites ORDER BY id")
        .await
        .unwrap()
}

#[actix_web::test]
async fn the_mode_is_public_and_open_is_the_default() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/api/auth/registration"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"mode": "open"}));
    // Open: an invite is neither needed nor looked at.
    assert_eq!(
        register(&app, "ann", None).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        register(&app, "bob", Some("whatever")).await.status(),
        StatusCode::CREATED
    );

    let app = invite_app().await;
    let mode: Value = app
        .http
        .get(app.url("/api/auth/registration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mode["mode"], "invite");
}

#[actix_web::test]
async fn closed_registration_refuses_everyone() {
    let app = spawn_app_with(|s| s.auth.registration = RegistrationMode::Closed).await;
    let token = invite(&app, &[]).await;
    for invite in [None, Some(token.as_str())] {
        let res = register(&app, "ann", invite).await;
        assert_error(res, StatusCode::FORBIDDEN, "registration_closed").await;
    }
    // The CLI still makes accounts.
    admin_json(
        &app,
        &[
            "user",
            "create",
            "--email",
            "ann@example.com",
            "--username",
            "ann",
        ],
    )
    .await;
}

#[actix_web::test]
async fn invite_mode_needs_a_usable_invite_and_each_registration_uses_one() {
    let app = invite_app().await;
    let made_up = "A".repeat(43);
    for (invite, why) in [
        (None, "missing"),
        (Some(""), "empty"),
        (Some("not-a-token"), "malformed"),
        (Some(made_up.as_str()), "unknown"),
    ] {
        let res = register(&app, "ann", invite).await;
        assert_error(res, StatusCode::FORBIDDEN, "invite_invalid").await;
        let _ = why;
    }

    let two = invite(&app, &["--uses", "2"]).await;
    assert_eq!(
        register(&app, "ann", Some(&two)).await.status(),
        StatusCode::CREATED
    );
    // A taken email (or username) is refused without burning a use.
    let res = register(&app, "ann", Some(&two)).await;
    assert_error(res, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(uses(&app).await[0].1, 1);
    assert_eq!(
        register(&app, "bob", Some(&two)).await.status(),
        StatusCode::CREATED
    );
    // Used up.
    let res = register(&app, "cat", Some(&two)).await;
    assert_error(res, StatusCode::FORBIDDEN, "invite_invalid").await;
    assert_eq!(uses(&app).await[0].1, 2);

    // Revoked.
    let revoked = invite(&app, &["--uses", "5"]).await;
    let id = uses(&app).await[1].0;
    admin_json(&app, &["invite", "revoke", &id.to_string()]).await;
    let res = register(&app, "cat", Some(&revoked)).await;
    assert_error(res, StatusCode::FORBIDDEN, "invite_invalid").await;

    // Expired.
    let brief = invite(&app, &["--expires", "1s"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let res = register(&app, "cat", Some(&brief)).await;
    assert_error(res, StatusCode::FORBIDDEN, "invite_invalid").await;

    // One that never expires still works.
    let forever = invite(&app, &["--expires", "never"]).await;
    assert_eq!(
        register(&app, "cat", Some(&forever)).await.status(),
        StatusCode::CREATED
    );

    let list = admin_json(&app, &["invite", "list"]).await;
    let usable: Vec<bool> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["usable"].as_bool().unwrap())
        .collect();
    // Newest first: never-expiring (used up: 1 of 1), expired, revoked, used up.
    assert_eq!(usable, [false, false, false, false]);
    let text = String::from_utf8(admin(&app, &["invite", "list"]).await.stdout).unwrap();
    for state in ["used up", "expired", "revoked"] {
        assert!(text.contains(state), "{state}: {text}");
    }
    // Only hashes are stored.
    let mut conn = app.mysql().await;
    let hashes: Vec<Vec<u8>> = conn.query("SELECT token_hash FROM invites").await.unwrap();
    assert!(hashes.iter().all(|h| h.len() == 32 && h != two.as_bytes()));
}

#[actix_web::test]
async fn two_registrations_racing_for_the_last_use_exactly_one_wins() {
    let app = invite_app().await;
    for round in 0..5 {
        let token = invite(&app, &["--uses", "1"]).await;
        let (a, b) = (format!("alpha{round}"), format!("bravo{round}"));
        let (ra, rb) = tokio::join!(
            register(&app, &a, Some(&token)),
            register(&app, &b, Some(&token))
        );
        let mut statuses = [ra.status(), rb.status()];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::CREATED, StatusCode::FORBIDDEN],
            "round {round}"
        );
    }
    let mut conn = app.mysql().await;
    let users: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM users")
        .await
        .unwrap();
    assert_eq!(users, Some(5));
    assert!(uses(&app).await.iter().all(|(_, n)| *n == 1));
}
