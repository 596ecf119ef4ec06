//! Sign-in sessions: listing, signing out one, the others or the current one, the
//! password change, the per-account cap, and revocation reaching every node's
//! HTTP answers and WebSockets (closed with 4001) within 5 s, with or without Redis.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use parley_testkit::client::{sign_token_without_session, unix_now, Event};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, spawn_app, spawn_app_with, two_nodes, wait_until, Redis, TestApp, TestUser,
    WsClient, JWT_SECRET,
};

/// The bound the protocol promises for a revocation to reach every node.
const REVOCATION_BOUND: Duration = Duration::from_secs(5);

/// Logs `user` in again on `app` (a new session): its token.
async fn login(app: &TestApp, user: &TestUser, device: Option<&str>, ua: Option<&str>) -> String {
    let mut body = json!({"email": user.email, "password": user.password});
    if let Some(d) = device {
        body["device"] = json!(d);
    }
    let mut req = app.http.post(app.url("/api/auth/login")).json(&body);
    if let Some(ua) = ua {
        req = req.header("user-agent", ua);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "login {}", user.username);
    res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let res = app.get_auth("/api/sessions", token).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The id of the session `token` signs in as (the one listed as current).
async fn current_id(app: &TestApp, token: &str) -> u64 {
    sessions(app, token)
        .await
        .iter()
        .find(|s| s["current"] == true)
        .expect("one session is current")["id"]
        .as_u64()
        .unwrap()
}

async fn delete(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.http
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.get_auth("/api/users/me", token).await.status()
}

async fn assert_revoked(app: &TestApp, token: &str) {
    let res = app.get_auth("/api/users/me", token).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "session_revoked").await;
}

fn as_user(user: &TestUser, token: &str) -> TestUser {
    TestUser {
        token: token.to_owned(),
        ..user.clone()
    }
}

/// Waits (up to `limit`) for the socket to end; how it ended and when.
pub(crate) async fn closed_within(ws: &mut WsClient, limit: Duration) -> (Option<u16>, Duration) {
    let t = Instant::now();
    loop {
        let left = limit.saturating_sub(t.elapsed());
        match ws.recv_within(left).await {
            Some(Event::Frame(_)) => continue,
            Some(Event::Closed(code)) => return (code, t.elapsed()),
            Some(Event::Error(e)) => panic!("socket failed instead of closing: {e}"),
            None => panic!("socket still open after {limit:?}"),
        }
    }
}

#[actix_web::test]
async fn sign_ins_are_listed_newest_first_with_device_source_and_the_current_one() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let phone = login(&app, &ann, Some("  Ann's phone "), None).await;
    let firefox = login(
        &app,
        &ann,
        None,
        Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    )
    .await;

    let list = sessions(&app, &firefox).await;
    assert_eq!(list.len(), 3, "{list:?}");
    let devices: Vec<&str> = list.iter().map(|s| s["device"].as_str().unwrap()).collect();
    assert_eq!(
        devices,
        ["Firefox on Linux", "Ann's phone", "Unknown device"]
    );
    let current: Vec<bool> = list.iter().map(|s| s["current"] == true).collect();
    assert_eq!(current, [true, false, false]);
    for s in &list {
        assert_eq!(s["source"], "127.0.0.1", "{s}");
        for key in ["id", "createdAt", "lastSeenAt"] {
            assert!(!s[key].is_null(), "{key} in {s}");
        }
    }
    let ids: Vec<u64> = list.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    // The same list, seen from another of her sessions, marks that one current.
    let from_phone = sessions(&app, &phone).await;
    assert_eq!(from_phone[1]["current"], true);
    assert_eq!(from_phone[0]["current"], false);
    // The token carries the session's id.
    assert_eq!(current_id(&app, &phone).await, ids[1]);
}

#[actix_web::test]
async fn a_device_label_must_be_short_and_printable() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    for device in ["x".repeat(101), "bell\u{7}".into(), "two\nlines".into()] {
        let res = app
            .post_json(
                "/api/auth/login",
                &json!({"email": ann.email, "password": ann.password, "device": device}),
            )
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_field").await;
    }
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "bob@example.com", "username": "bob",
                    "password": "pw-bob-secret", "device": "d".repeat(101)}),
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_field").await;
    // Nothing was created by the refused attempts.
    assert_eq!(sessions(&app, &ann.token).await.len(), 1);
}

#[actix_web::test]
async fn a_revoked_session_gets_401_session_revoked_and_the_others_carry_on() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let second = login(&app, &ann, None, None).await;
    let first_id = current_id(&app, &ann.token).await;
    assert_eq!(me_status(&app, &ann.token).await, StatusCode::OK);

    let res = delete(&app, &format!("/api/sessions/{first_id}"), &second).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_revoked(&app, &ann.token).await;
    assert_eq!(me_status(&app, &second).await, StatusCode::OK);
    // Gone from the list; revoking it again is a 404.
    let list = sessions(&app, &second).await;
    assert_eq!(list.len(), 1);
    assert!(list.iter().all(|s| s["id"] != first_id));
    let res = delete(&app, &format!("/api/sessions/{first_id}"), &second).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = delete(&app, "/api/sessions/not-a-number", &second).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    // A revoked token cannot reach anything, sign out the others or get a ticket.
    for res in [
        delete(&app, "/api/sessions", &ann.token).await,
        app.post_auth("/api/auth/ws-ticket", &ann.token, &json!({}))
            .await,
        app.post_auth("/api/auth/logout", &ann.token, &json!({}))
            .await,
    ] {
        assert_error(res, StatusCode::UNAUTHORIZED, "session_revoked").await;
    }
    assert_eq!(me_status(&app, &second).await, StatusCode::OK);
}

#[actix_web::test]
async fn nobody_can_list_or_revoke_the_sessions_of_another_user() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let anns = current_id(&app, &ann.token).await;
    let bobs = current_id(&app, &bob.token).await;

    let res = delete(&app, &format!("/api/sessions/{anns}"), &bob.token).await;
    let body = assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    // The same answer as for an id that does not exist at all.
    let missing = delete(&app, "/api/sessions/999999", &bob.token).await;
    let missing = assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(body, missing);
    assert_eq!(me_status(&app, &ann.token).await, StatusCode::OK);

    // Bob's list is his alone, and signing out "the others" spares ann.
    let list = sessions(&app, &bob.token).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], bobs);
    let res = delete(&app, "/api/sessions", &bob.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"revoked": 0}));
    assert_eq!(me_status(&app, &ann.token).await, StatusCode::OK);
    let res = app.get_auth("/api/sessions", "").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn logout_signs_out_this_session_only() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let other = login(&app, &ann, None, None).await;
    let res = app
        .post_auth("/api/auth/logout", &ann.token, &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_revoked(&app, &ann.token).await;
    assert_eq!(me_status(&app, &other).await, StatusCode::OK);
    assert_eq!(sessions(&app, &other).await.len(), 1);
}

#[actix_web::test]
async fn signing_out_the_other_sessions_keeps_the_current_one() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let b = login(&app, &ann, None, None).await;
    let c = login(&app, &ann, None, None).await;
    let bob = app.register("bob").await;
    let res = delete(&app, "/api/sessions", &c).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"revoked": 2}));
    assert_revoked(&app, &ann.token).await;
    assert_revoked(&app, &b).await;
    assert_eq!(me_status(&app, &c).await, StatusCode::OK);
    assert_eq!(sessions(&app, &c).await.len(), 1);
    assert_eq!(me_status(&app, &bob.token).await, StatusCode::OK);
}

#[actix_web::test]
async fn changing_the_password_needs_the_current_one_and_signs_out_every_other_session() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let other = login(&app, &ann, None, None).await;
    let mut ws_other = app.ws(&as_user(&ann, &other)).await;

    let res = app
        .post_auth(
            "/api/auth/password",
            &ann.token,
            &json!({"currentPassword": "not-her-password", "newPassword": "a-new-secret-pw"}),
        )
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "wrong_password").await;
    let res = app
        .post_auth(
            "/api/auth/password",
            &ann.token,
            &json!({"currentPassword": ann.password, "newPassword": "short"}),
        )
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_password").await;
    let res = app
        .post_auth(
            "/api/auth/password",
            &ann.token,
            &json!({"currentPassword": ann.password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Nothing changed so far.
    assert_eq!(me_status(&app, &other).await, StatusCode::OK);

    let res = app
        .post_auth(
            "/api/auth/password",
            &ann.token,
            &json!({"currentPassword": ann.password, "newPassword": "a-new-secret-pw"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"revoked": 1}));
    assert_revoked(&app, &other).await;
    let (code, _) = closed_within(&mut ws_other, REVOCATION_BOUND).await;
    assert_eq!(code, Some(4001));
    assert_eq!(me_status(&app, &ann.token).await, StatusCode::OK);

    let old = app
        .post_json(
            "/api/auth/login",
            &json!({"email": ann.email, "password": ann.password}),
        )
        .await;
    assert_error(old, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let new = app
        .post_json(
            "/api/auth/login",
            &json!({"email": ann.email, "password": "a-new-secret-pw"}),
        )
        .await;
    assert_eq!(new.status(), StatusCode::OK);
}

#[actix_web::test]
async fn guessing_the_current_password_is_paced_like_a_login() {
    let app = spawn_app_with(|s| s.limits.login_free_failures = 2).await;
    let ann = app.register("ann").await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let res = app
            .post_auth(
                "/api/auth/password",
                &ann.token,
                &json!({"currentPassword": format!("guess-{i}"), "newPassword": "a-new-secret-pw"}),
            )
            .await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(&statuses[..2], [403, 403], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    // The token still works: guessing wrong is not a reason to sign anyone out.
    assert_eq!(me_status(&app, &ann.token).await, StatusCode::OK);
}

#[actix_web::test]
async fn a_token_from_before_sessions_is_refused_over_http_and_websocket() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let now = unix_now();
    let old = sign_token_without_session(JWT_SECRET.as_bytes(), ann.id, now, now + 3600);
    assert_revoked(&app, &old).await;
    let refused = WsClient::try_connect(&app.ws_url(&old))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, Some(401));
    assert_eq!(
        refused.body.unwrap()["error"]["code"],
        "session_revoked",
        "the JSON error body"
    );
}

#[actix_web::test]
async fn a_revoked_sessions_socket_is_closed_with_4001_and_its_ticket_refused() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let chat = app.direct_chat(&ann, &bob).await;
    let keep = login(&app, &ann, None, None).await;
    let mut doomed = app.ws(&ann).await;
    let mut kept = app.ws(&as_user(&ann, &keep)).await;
    let mut b = app.ws(&bob).await;
    let res = app
        .post_auth("/api/auth/ws-ticket", &ann.token, &json!({}))
        .await;
    let ticket = res.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();

    let doomed_id = current_id(&app, &ann.token).await;
    let res = delete(&app, &format!("/api/sessions/{doomed_id}"), &keep).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (code, after) = closed_within(&mut doomed, REVOCATION_BOUND).await;
    assert_eq!(code, Some(4001), "closed as revoked");
    assert!(after < REVOCATION_BOUND);

    // The ticket issued before the revocation opens nothing now; nor does the token.
    let url = format!("ws://127.0.0.1:{}/ws?ticket={ticket}", app.port);
    let refused = WsClient::try_connect(&url).await.err().expect("refused");
    assert_eq!(refused.status, Some(401));
    assert_eq!(refused.body.unwrap()["error"]["code"], "session_revoked");
    let refused = WsClient::try_connect(&app.ws_url(&ann.token))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, Some(401));

    // The message path of the sessions left is untouched.
    let m = kept.send_text(chat, "k1", "still here").await;
    assert_eq!(b.wait_for("message:received").await["data"]["id"], m["id"]);
    let r = b.send_text(chat, "b1", "hello").await;
    assert_eq!(
        kept.wait_for("message:received").await["data"]["id"],
        r["id"]
    );
}

/// A revocation written straight to the database (as `parley admin` does from another
/// process) reaches a node without Redis through its poll of the revocation log.
#[actix_web::test]
async fn a_node_without_redis_notices_a_revocation_made_elsewhere_within_5_s() {
    let app = spawn_app().await;
    assert!(app.settings.redis.url.is_none());
    let ann = app.register("ann").await;
    let mut ws = app.ws(&ann).await;
    assert_eq!(
        me_status(&app, &ann.token).await,
        StatusCode::OK,
        "cached as live"
    );

    let mut conn = app.mysql().await;
    conn.exec_drop(
        "UPDATE auth_sessions SET revoked_at = NOW(3) WHERE user_id = ?",
        (ann.id,),
    )
    .await
    .unwrap();
    let (code, after) = closed_within(&mut ws, REVOCATION_BOUND).await;
    assert_eq!(code, Some(4001));
    assert!(after < REVOCATION_BOUND, "{after:?}");
    assert_revoked(&app, &ann.token).await;
}

#[actix_web::test]
async fn a_revocation_on_one_node_closes_the_sockets_on_the_other_within_5_s() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let ann = n1.register("ann").await;
    let keep = login(&n1, &ann, None, None).await;
    // Known (and cached as live) on node 2 before it is revoked on node 1.
    assert_eq!(me_status(&n2, &ann.token).await, StatusCode::OK);
    let mut on_n2 = n2.ws(&ann).await;
    let mut also_n2 = n2.ws(&ann).await;
    let mut kept_n2 = n2.ws(&as_user(&ann, &keep)).await;

    let res = delete(&n1, "/api/sessions", &keep).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"revoked": 1}));
    let t = Instant::now();
    for ws in [&mut on_n2, &mut also_n2] {
        let (code, _) = closed_within(ws, REVOCATION_BOUND).await;
        assert_eq!(code, Some(4001));
    }
    assert!(t.elapsed() < REVOCATION_BOUND, "{:?}", t.elapsed());
    wait_until(REVOCATION_BOUND, "node 2 refuses the token", || async {
        me_status(&n2, &ann.token).await == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_revoked(&n2, &ann.token).await;
    // The session kept is alive on both nodes, its socket open.
    assert_eq!(me_status(&n2, &keep).await, StatusCode::OK);
    assert_eq!(me_status(&n1, &keep).await, StatusCode::OK);
    kept_n2
        .assert_quiet(Duration::from_millis(500), &["user:online", "user:offline"])
        .await;
}

#[actix_web::test]
async fn past_the_cap_a_new_sign_in_revokes_the_oldest() {
    let app = spawn_app_with(|s| s.auth.max_sessions_per_user = 2).await;
    let ann = app.register("ann").await;
    let mut oldest_ws = app.ws(&ann).await;
    let second = login(&app, &ann, None, None).await;
    let third = login(&app, &ann, None, None).await;
    assert_revoked(&app, &ann.token).await;
    let (code, _) = closed_within(&mut oldest_ws, REVOCATION_BOUND).await;
    assert_eq!(code, Some(4001));
    assert_eq!(me_status(&app, &second).await, StatusCode::OK);
    let list = sessions(&app, &third).await;
    assert_eq!(list.len(), 2);
    let mut conn = app.mysql().await;
    let live: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM auth_sessions WHERE user_id = ? AND revoked_at IS NULL",
            (ann.id,),
        )
        .await
        .unwrap();
    assert_eq!(live, Some(2));
}

#[actix_web::test]
async fn concurrent_sign_ins_of_one_account_all_get_a_session() {
    // Each sign-in inserts its row and trims the account's live rows past the cap
    // in one transaction; two at once used to deadlock (1213 → 500) on each
    // other's new rows. Rounds of simultaneous logins: every one answered, none 5xx.
    let app = spawn_app_with(|s| s.auth.max_sessions_per_user = 3).await;
    let ann = app.register("ann").await;
    for _ in 0..4 {
        let statuses = futures_util::future::join_all((0..6).map(|_| {
            app.http
                .post(app.url("/api/auth/login"))
                .json(&json!({"email": ann.email, "password": ann.password}))
                .send()
        }))
        .await;
        for s in statuses {
            let s = s.unwrap().status();
            assert!(
                s == StatusCode::OK || s == StatusCode::TOO_MANY_REQUESTS,
                "a simultaneous sign-in got {s}"
            );
        }
    }
    let mut conn = app.mysql().await;
    let live: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM auth_sessions WHERE user_id = ? AND revoked_at IS NULL",
            (ann.id,),
        )
        .await
        .unwrap();
    assert_eq!(live, Some(3), "the cap holds under concurrency");
}
