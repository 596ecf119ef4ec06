//! Account deletion (issue 19): `DELETE /api/users/me {password}` and `parley admin
//! user delete`. The account keeps its id and its sent messages; everything that
//! was it — names, password, key, uploads, sessions, group memberships — is gone.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::admin_cli::{admin, admin_json, live_sessions, session_row};
use crate::helpers::{assert_error, spawn_app, two_nodes, Redis, TestApp, TestUser};
use crate::sessions::closed_within;
use parley_testkit::media::{files_in, upload_audio};
use parley_testkit::pictures::{media_form, png};

async fn delete_me(app: &TestApp, user: &TestUser, body: &Value) -> reqwest::Response {
    app.http
        .delete(app.url("/api/users/me"))
        .bearer_auth(&user.token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Every file under the uploads directory (media, thumbnails, audio).
fn upload_files(app: &TestApp) -> Vec<String> {
    let root = &app.settings.storage.uploads_dir;
    let mut all = Vec::new();
    for dir in ["media", "media/thumbs", "audio"] {
        all.extend(
            files_in(&root.join(dir))
                .into_iter()
                .filter(|n| n != "thumbs")
                .map(|n| format!("{dir}/{n}")),
        );
    }
    all.sort();
    all
}

async fn count(app: &TestApp, sql: &str, user: u64) -> u64 {
    let mut conn = app.mysql().await;
    conn.exec_first(sql, (user,)).await.unwrap().unwrap()
}

/// What a deleted account must have left behind: its id and messages only.
async fn assert_erased(app: &TestApp, id: u64) {
    let mut conn = app.mysql().await;
    let row: (Option<String>, Option<String>, Option<String>, bool) = conn
        .exec_first(
            "SELECT email, username, password_hash, deleted_at IS NOT NULL FROM users WHERE id = ?",
            (id,),
        )
        .await
        .unwrap()
        .expect("the row stays (messages name it)");
    assert_eq!(row, (None, None, None, true));
    for (table, sql) in [
        (
            "public_keys",
            "SELECT COUNT(*) FROM public_keys WHERE user_id = ?",
        ),
        (
            "media_files",
            "SELECT COUNT(*) FROM media_files WHERE uploader_id = ?",
        ),
        (
            "user_storage",
            "SELECT COUNT(*) FROM user_storage WHERE user_id = ?",
        ),
        (
            "password_resets",
            "SELECT COUNT(*) FROM password_resets WHERE user_id = ?",
        ),
        (
            "auth_sessions (live)",
            "SELECT COUNT(*) FROM auth_sessions WHERE user_id = ? AND revoked_at IS NULL",
        ),
        (
            "chat_members (groups)",
            "SELECT COUNT(*) FROM chat_members cm JOIN chats c ON c.id = cm.chat_id \
             WHERE cm.user_id = ? AND c.kind = 'group'",
        ),
    ] {
        assert_eq!(
            count(app, sql, id).await,
            0,
            "{table} still holds the account"
        );
    }
}

#[actix_web::test]
async fn a_deleted_account_is_gone_from_every_table_and_shown_as_deleted() {
    let app = spawn_app().await;
    let ab = app.ann_bob().await;
    let (ann, bob) = (&ab.ann, &ab.bob);
    let cat = app.register("cat").await;
    let group = app.group_chat(ann, &[bob, &cat]).await;
    // ann has a key, a reset link, a session, an upload sent in a message and one
    // not sent; bob has an upload of his own, which stays.
    let mut conn = app.mysql().await;
    conn.exec_drop(
        "INSERT INTO public_keys (user_id, public_key, fingerprint) VALUES (?, 'pem', ?)",
        (ann.id, "0".repeat(64)),
    )
    .await
    .unwrap();
    admin_json(&app, &["user", "reset-password", "ann"]).await;
    session_row(&app, ann.id).await;
    let up = |user: &TestUser, name: &str| {
        let form = media_form(ab.chat, png(64, 48), name);
        let token = user.token.clone();
        let url = app.url("/api/media");
        let http = app.http.clone();
        async move {
            let res = upload_audio(&http, &url, &token, form).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            res.json::<Value>().await.unwrap()
        }
    };
    let sent = up(ann, "sent.png").await;
    up(ann, "unsent.png").await;
    let bobs = up(bob, "bobs.png").await;
    let mut ws = app.ws(ann).await;
    let image = ws
        .acked(
            "message:send",
            json!({"chatId": ab.chat, "clientId": "img", "kind": "image", "mediaId": sent["mediaId"]}),
        )
        .await;
    let text = ws.send_text(ab.chat, "t1", "hello from ann").await;
    ws.send_text(group, "t2", "hello group").await;
    let files_before = upload_files(&app);
    assert_eq!(
        files_before.len(),
        6,
        "3 images and 3 thumbnails: {files_before:?}"
    );
    let mut bob_ws = app.ws(bob).await;

    let res = delete_me(&app, ann, &json!({"password": ann.password})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Her socket is closed as revoked at once (this node), her token is dead.
    let (code, _) = closed_within(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4001));

    assert_erased(&app, ann.id).await;
    // Only bob's upload and its thumbnail are left on disk.
    let left = upload_files(&app);
    assert_eq!(left.len(), 2, "{left:?}");
    let bobs_id = bobs["mediaId"].as_u64().unwrap();
    let bobs_row: Option<u64> = conn
        .exec_first("SELECT id FROM media_files WHERE id = ?", (bobs_id,))
        .await
        .unwrap();
    assert_eq!(bobs_row, Some(bobs_id));
    // Messages stay; the direct chat stays, with its two members.
    let messages: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM messages WHERE sender_id = ? AND kind <> 'system'",
            (ann.id,),
        )
        .await
        .unwrap();
    assert_eq!(messages, Some(3));
    // Leaving her group is recorded as any member's leaving is: a `left` line.
    let left_lines: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM messages WHERE sender_id = ? AND kind = 'system' \
             AND content LIKE '%\"action\":\"left\"%'",
            (ann.id,),
        )
        .await
        .unwrap();
    assert_eq!(left_lines, Some(1));
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM chat_members WHERE chat_id = ?",
            ab.chat
        )
        .await,
        2
    );

    // bob hears that ann left the group, and sees her as "Deleted account".
    let left = bob_ws.wait_for("chat:member-left").await;
    assert_eq!(left["data"], json!({"chatId": group, "userId": ann.id}));
    let chat: Value = app
        .get_auth(&format!("/api/chats/{}", ab.chat), &bob.token)
        .await
        .json()
        .await
        .unwrap();
    let shown = chat["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == ann.id)
        .expect("ann is still a member of the direct chat")
        .clone();
    assert_eq!(shown["username"], "Deleted account");
    assert_eq!(shown["deleted"], true);
    assert_eq!(shown["hasPublicKey"], false);
    assert!(shown.get("email").is_none());
    let group_now: Value = app
        .get_auth(&format!("/api/chats/{group}"), &bob.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(group_now["members"].as_array().unwrap().len(), 2);
    // Her messages read as before, the image without its media.
    let page: Value = app
        .get_auth(&format!("/api/messages?chatId={}", ab.chat), &bob.token)
        .await
        .json()
        .await
        .unwrap();
    let msgs = page["messages"].as_array().unwrap();
    let find = |id: &Value| msgs.iter().find(|m| m["id"] == *id).unwrap().clone();
    assert_eq!(find(&text["id"])["content"], "hello from ann");
    assert_eq!(find(&image["id"])["media"], Value::Null);
    assert_eq!(find(&image["id"])["senderId"], ann.id);
    let res = app
        .get_auth(&format!("/api/media/{}", sent["mediaId"]), &bob.token)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Nobody finds her; she cannot log in; her name and address are free again.
    let found: Value = app
        .get_auth("/api/users/search?query=ann", &bob.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found, json!([]));
    let found: Value = app
        .get_auth(
            &format!("/api/users/search?query={}", ann.email),
            &bob.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found, json!([]));
    let res = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "ann", "password": ann.password}),
        )
        .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Nobody starts a chat with her or adds her to one.
    for body in [
        json!({"userId": ann.id}),
        json!({"title": "t", "memberIds": [ann.id, cat.id]}),
    ] {
        let res = app.post_auth("/api/chats", &bob.token, &body).await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    let again = app.register("ann").await;
    assert_ne!(again.id, ann.id);
    // Her old token no longer reaches her account.
    let res = app.get_auth("/api/users/me", &ann.token).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "session_revoked").await;
    // Deleting twice is not possible.
    let res = delete_me(&app, ann, &json!({"password": ann.password})).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "session_revoked").await;
    let shown = admin_json(&app, &["user", "show", &ann.id.to_string()]).await;
    assert_eq!(shown["state"], "deleted");
    assert_eq!(admin_json(&app, &["stats"]).await["deleted"], 1);
}

#[actix_web::test]
async fn deletion_needs_the_accounts_own_password_and_touches_no_one_else() {
    let app = spawn_app().await;
    let ab = app.ann_bob().await;
    session_row(&app, ab.ann.id).await;
    let res = delete_me(&app, &ab.ann, &json!({"password": ab.bob.password})).await;
    assert_error(res, StatusCode::FORBIDDEN, "wrong_password").await;
    for (body, code) in [
        (json!({}), "invalid_field"),
        (json!({"password": 5}), "invalid_field"),
        (
            json!({"password": "x", "userId": ab.bob.id}),
            "invalid_field",
        ),
    ] {
        let res = delete_me(&app, &ab.ann, &body).await;
        assert_error(res, StatusCode::BAD_REQUEST, code).await;
    }
    let res = app
        .http
        .delete(app.url("/api/users/me"))
        .json(&json!({"password": ab.ann.password}))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    // Nothing happened to anyone.
    assert_eq!(live_sessions(&app, ab.ann.id).await, 2);
    for u in [&ab.ann, &ab.bob] {
        let me: Value = app
            .get_auth("/api/users/me", &u.token)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["username"], u.username.as_str());
    }
}

#[actix_web::test]
async fn the_cli_deletes_an_account_the_same_way_without_its_password() {
    let app = spawn_app().await;
    let ab = app.ann_bob().await;
    let group = app
        .group_chat(&ab.bob, &[&ab.ann, &app.register("cat").await])
        .await;
    session_row(&app, ab.ann.id).await;
    let out = admin(&app, &["user", "delete", "ann"]).await;
    assert_eq!(out.status.code(), Some(1), "needs --yes");
    let done = admin_json(&app, &["user", "delete", "ann", "--yes"]).await;
    assert_eq!(done["groupsLeft"], 1);
    assert_erased(&app, ab.ann.id).await;
    let chat: Value = app
        .get_auth(&format!("/api/chats/{group}"), &ab.bob.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(chat["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["id"] != ab.ann.id));
    let out = admin(&app, &["user", "delete", "ann", "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "ann is no name any more");
    let out = admin(&app, &["user", "delete", &ab.ann.id.to_string(), "--yes"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("already"));
}

#[actix_web::test]
async fn guessing_the_password_through_deletion_is_paced_like_logins() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let res = delete_me(&app, &ann, &json!({"password": format!("guess-{i}")})).await;
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().contains_key("retry-after"));
            break;
        }
        assert_error(res, StatusCode::FORBIDDEN, "wrong_password").await;
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.len() <= 8,
        "a few free tries, then a delay: {statuses:?}"
    );
    // Still there.
    let me = app.get_auth("/api/users/me", &ann.token).await;
    assert_eq!(me.status(), StatusCode::OK);
}

#[actix_web::test]
async fn deleting_on_one_node_closes_the_accounts_sockets_on_the_other_within_5_s() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let ann = n1.register("ann").await;
    let mut on_n2 = n2.ws(&ann).await;
    let res = delete_me(&n1, &ann, &json!({"password": ann.password})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (code, after) = closed_within(&mut on_n2, Duration::from_secs(5)).await;
    assert_eq!(code, Some(4001), "after {after:?}");
    let res = n2.get_auth("/api/users/me", &ann.token).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "session_revoked").await;
}
