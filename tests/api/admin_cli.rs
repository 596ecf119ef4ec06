//! `parley admin …` (issue 19): the real binary against the test's real database,
//! beside the running application, as an operator would run it on the server.

use std::process::Output;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, two_nodes, Redis, TestApp};
use crate::sessions::closed_within;

/// Runs `parley admin <args>` on `app`'s database and uploads, with its address as
/// `server.public_url`.
pub async fn admin(app: &TestApp, args: &[&str]) -> Output {
    let mut cmd = parley_testkit::binary::command();
    cmd.env("PARLEY__DATABASE__URL", &app.db_url)
        .env(
            "PARLEY__STORAGE__UPLOADS_DIR",
            app.settings.storage.uploads_dir.display().to_string(),
        )
        .env("PARLEY__SERVER__PUBLIC_URL", &app.address)
        .arg("admin")
        .args(args);
    // Off the test's thread: the application's actors run on it.
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap()
}

/// `parley admin <args> --json`, which must succeed: its JSON document.
pub async fn admin_json(app: &TestApp, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = admin(app, &all).await;
    assert!(
        out.status.success(),
        "parley admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "parley admin {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The token of a printed link (`…?token=` or `…?invite=`).
pub fn token_of(link: &str) -> String {
    link.rsplit('=').next().unwrap().to_string()
}

/// A live sign-in session row for `user`, as login makes one (what disabling,
/// resets and deletion must revoke).
pub async fn session_row(app: &TestApp, user: u64) -> u64 {
    let mut conn = app.mysql().await;
    conn.exec_drop(
        "INSERT INTO auth_sessions (user_id, device) VALUES (?, 'test')",
        (user,),
    )
    .await
    .unwrap();
    conn.last_insert_id().unwrap()
}

pub async fn live_sessions(app: &TestApp, user: u64) -> u64 {
    let mut conn = app.mysql().await;
    conn.exec_first(
        "SELECT COUNT(*) FROM auth_sessions WHERE user_id = ? AND revoked_at IS NULL",
        (user,),
    )
    .await
    .unwrap()
    .unwrap()
}

async fn login(app: &TestApp, login: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/auth/login",
        &json!({"email": login, "password": password}),
    )
    .await
}

#[actix_web::test]
async fn user_list_show_and_stats_read_the_real_database() {
    let app = spawn_app().await;
    let ab = app.ann_bob().await;
    let list = admin_json(&app, &["user", "list"]).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "bob"]);
    assert_eq!(list[0]["email"], ab.ann.email);
    assert_eq!(list[0]["state"], "active");

    for key in [ab.bob.id.to_string(), "bob".into(), ab.bob.email.clone()] {
        let shown = admin_json(&app, &["user", "show", &key]).await;
        assert_eq!(shown["id"], ab.bob.id, "show {key}");
    }
    let text = admin(&app, &["user", "list"]).await;
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("ann") && text.contains("bob@example.com"),
        "{text}"
    );

    let stats = admin_json(&app, &["stats"]).await;
    assert_eq!(stats["users"], 2);
    assert_eq!(stats["directChats"], 1);
    assert_eq!(stats["deleted"], 0);
}

#[actix_web::test]
async fn bad_commands_are_refused_with_a_message_and_change_nothing() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    for (args, said) in [
        (vec!["user", "show", "nobody"], "no account"),
        (vec!["user", "delete", "ann"], "--yes"),
        (vec!["user", "disable", "999999"], "no account"),
        (vec!["invite", "create", "--uses", "0"], "--uses"),
        (vec!["invite", "create", "--expires", "7w"], "--expires"),
        (vec!["invite", "revoke", "424242"], "no invite"),
        (
            vec!["user", "create", "--email", "x", "--username", "ok"],
            "email",
        ),
        (
            vec!["user", "create", "--email", "a@b.org", "--username", "ann"],
            "taken",
        ),
    ] {
        let out = admin(&app, &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(said), "{args:?}: {err}");
    }
    let shown = admin_json(&app, &["user", "show", "ann"]).await;
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["id"], ann.id);
    let stats = admin_json(&app, &["stats"]).await;
    assert_eq!(
        (stats["users"].clone(), stats["usableInvites"].clone()),
        (json!(1), json!(0))
    );
}

#[actix_web::test]
async fn a_disabled_user_cannot_log_in_and_is_signed_out_everywhere_until_enabled() {
    let app = spawn_app().await;
    let ab = app.ann_bob().await;
    session_row(&app, ab.ann.id).await;
    let mut ws = app.ws(&ab.ann).await;
    let live = live_sessions(&app, ab.ann.id).await;
    assert_eq!(live, 2, "registration's and the extra one");

    let out = admin_json(&app, &["user", "disable", "ann"]).await;
    assert_eq!(out["revoked"], live);
    assert_eq!(live_sessions(&app, ab.ann.id).await, 0);
    assert_eq!(live_sessions(&app, ab.bob.id).await, 1, "bob's untouched");
    // The CLI is another process: the server learns it from the revocation log and
    // closes her socket as revoked.
    let (code, after) = closed_within(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4001), "closed after {after:?}");
    let res = app.get_auth("/api/users/me", &ab.ann.token).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "session_revoked").await;

    // A guesser learns nothing: a wrong password is the usual 401.
    let res = login(&app, "ann", "wrong-password-here").await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = login(&app, "ann", &ab.ann.password).await;
    assert_error(res, StatusCode::FORBIDDEN, "account_disabled").await;
    assert_eq!(
        live_sessions(&app, ab.ann.id).await,
        0,
        "no session for her"
    );
    assert_eq!(
        admin_json(&app, &["user", "show", "ann"]).await["state"],
        "disabled"
    );
    assert_eq!(admin_json(&app, &["stats"]).await["disabled"], 1);

    admin_json(&app, &["user", "enable", &ab.ann.id.to_string()]).await;
    let res = login(&app, "ann", &ab.ann.password).await;
    assert_eq!(res.status(), StatusCode::OK);
    // bob was never affected.
    assert_eq!(
        app.get_auth("/api/users/me", &ab.bob.token).await.status(),
        StatusCode::OK
    );
}

#[actix_web::test]
async fn a_reset_link_sets_the_password_once_revokes_sessions_and_expires() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    session_row(&app, ann.id).await;
    let mut ws = app.ws(&ann).await;
    let printed = admin_json(&app, &["user", "reset-password", "ann"]).await;
    let link = printed["link"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{}/reset?token=", app.address)),
        "{link}"
    );
    let token = token_of(link);
    assert!(token.len() >= 43, "at least 256 bits: {token}");

    // A bad new password is refused without spending the token.
    let res = app
        .post_json(
            "/api/auth/reset",
            &json!({"token": token, "newPassword": "short"}),
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_password").await;
    let res = app
        .post_json(
            "/api/auth/reset",
            &json!({"token": token, "newPassword": "a-brand-new-password"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["revoked"], 2);
    assert_eq!(live_sessions(&app, ann.id).await, 0);
    let (code, _) = closed_within(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4001));
    let res = app.get_auth("/api/users/me", &ann.token).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "session_revoked").await;
    assert_eq!(
        login(&app, "ann", "a-brand-new-password").await.status(),
        StatusCode::OK
    );
    let res = login(&app, "ann", &ann.password).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // Once only.
    let res = app
        .post_json(
            "/api/auth/reset",
            &json!({"token": token, "newPassword": "yet-another-password"}),
        )
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "reset_token_invalid").await;

    // A link past its 24 h, a made-up one and a malformed one: the same refusal.
    let old = token_of(
        admin_json(&app, &["user", "reset-password", "ann"]).await["link"]
            .as_str()
            .unwrap(),
    );
    let mut conn = app.mysql().await;
    conn.query_drop(
        "UPDATE password_resets SET expires_at = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND \
         WHERE used_at IS NULL",
    )
    .await
    .unwrap();
    let made_up = "A".repeat(43);
    for t in [old.as_str(), made_up.as_str(), "not a token", ""] {
        let res = app
            .post_json(
                "/api/auth/reset",
                &json!({"token": t, "newPassword": "yet-another-password"}),
            )
            .await;
        assert_error(res, StatusCode::FORBIDDEN, "reset_token_invalid").await;
    }
    assert_eq!(
        login(&app, "ann", "a-brand-new-password").await.status(),
        StatusCode::OK
    );
    // The table holds hashes, never the token.
    let stored: Vec<Vec<u8>> = conn
        .query("SELECT token_hash FROM password_resets")
        .await
        .unwrap();
    assert!(stored.iter().all(|h| h.len() == 32 && h != old.as_bytes()));
}

#[actix_web::test]
async fn a_created_account_has_no_password_until_its_link_sets_one() {
    let app = spawn_app().await;
    let made = admin_json(
        &app,
        &[
            "user",
            "create",
            "--email",
            "Cat@Example.org",
            "--username",
            "cat",
        ],
    )
    .await;
    let id = made["id"].as_u64().unwrap();
    assert_eq!(
        admin_json(&app, &["user", "show", "cat@example.org"]).await["state"],
        "no password yet"
    );
    // No password is no way in, whatever is tried.
    for pw in ["", "password", "anything-at-all"] {
        let res = login(&app, "cat", pw).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let token = token_of(made["link"].as_str().unwrap());
    let res = app
        .post_json(
            "/api/auth/reset",
            &json!({"token": token, "newPassword": "cats-own-password"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = login(&app, "cat@example.org", "cats-own-password").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["user"]["id"], id);
}

#[actix_web::test]
async fn malformed_reset_requests_get_the_json_error_body() {
    let app = spawn_app().await;
    for (body, status, code) in [
        (json!({}), StatusCode::BAD_REQUEST, "invalid_field"),
        (
            json!({"token": 1, "newPassword": "long-enough-pw"}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            json!({"token": "A".repeat(43), "newPassword": "long-enough-pw", "userId": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            json!({"token": "A".repeat(100_000), "newPassword": "long-enough-pw"}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ] {
        let res = app.post_json("/api/auth/reset", &body).await;
        assert_error(res, status, code).await;
    }
    let res = app
        .http
        .post(app.url("/api/auth/reset"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::BAD_REQUEST, "malformed_json").await;
}

#[actix_web::test]
async fn disabling_closes_the_users_sockets_on_every_node_within_5_s() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let ann = n1.register("ann").await;
    let bob = n1.register("bob").await;
    let mut on_n1 = n1.ws(&ann).await;
    let mut on_n2 = n2.ws(&ann).await;
    let mut bobs = n2.ws(&bob).await;
    admin_json(&n1, &["user", "disable", "ann"]).await;
    for ws in [&mut on_n1, &mut on_n2] {
        let (code, after) = closed_within(ws, Duration::from_secs(5)).await;
        assert_eq!(code, Some(4001), "after {after:?}");
    }
    for node in [&n1, &n2] {
        let res = node.get_auth("/api/users/me", &ann.token).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "session_revoked").await;
    }
    // bob's socket on the same node stays open and working.
    bobs.assert_quiet(Duration::from_millis(300), &["user:online", "user:offline"])
        .await;
    assert_eq!(
        n2.get_auth("/api/users/me", &bob.token).await.status(),
        StatusCode::OK
    );
}

#[actix_web::test]
async fn the_cli_reads_the_services_config_file_and_needs_no_secret() {
    let app = spawn_app().await;
    app.register("ann").await;
    // What an operator runs: `parley --config /etc/parley/parley.toml admin …`, with
    // the settings in the file only (the secret lives in parley.env, not needed here).
    let dir = parley_testkit::util::TempDir::new("admin-config");
    let file = dir.join("parley.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\npublic_url = \"https://chat.example.org/\"\n\
             [database]\nurl = \"{}\"\n[auth]\nregistration = \"invite\"\n",
            app.db_url
        ),
    )
    .unwrap();
    let mut cmd = parley_testkit::binary::command();
    cmd.arg("--config")
        .arg(&file)
        .args(["admin", "invite", "create", "--json"]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = made["link"].as_str().unwrap();
    // The trailing slash of public_url is not doubled.
    assert!(
        link.starts_with("https://chat.example.org/register?invite="),
        "{link}"
    );
    // Nothing but the document on stdout: scripts can parse it.
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let stats = admin_json(&app, &["stats"]).await;
    assert_eq!(
        (stats["users"].clone(), stats["usableInvites"].clone()),
        (json!(1), json!(1))
    );
}
