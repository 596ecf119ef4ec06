//! Blocking: the routes, and each thing a block stops (a direct chat, being added
//! to a group, messages and calls in a direct chat, presence both ways).

use std::time::Duration;

use mysql_async::prelude::Queryable;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, two_nodes, AnnBob, Redis, TestApp, TestUser};

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    user: &TestUser,
    body: Option<Value>,
) -> Response {
    let mut req = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&user.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request")
}

fn offer() -> Value {
    json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"})
}

async fn block(app: &TestApp, who: &TestUser, whom: &TestUser) {
    let res = call(
        app,
        Method::POST,
        &format!("/api/users/{}/block", whom.id),
        who,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

async fn unblock(app: &TestApp, who: &TestUser, whom: &TestUser) {
    let res = call(
        app,
        Method::DELETE,
        &format!("/api/users/{}/block", whom.id),
        who,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

async fn blocked_list(app: &TestApp, who: &TestUser) -> Vec<Value> {
    let res = app.get_auth("/api/users/blocked", &who.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Vec<Value>>().await.unwrap()
}

#[actix_web::test]
async fn blocking_and_unblocking_are_idempotent_listed_and_capped() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, .. } = app.ann_bob().await;
    block(&app, &ann, &bob).await;
    block(&app, &ann, &bob).await;
    let list = blocked_list(&app, &ann).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], bob.id);
    assert_eq!(list[0]["username"], "bob");
    assert!(list[0].get("email").is_none());
    assert!(blocked_list(&app, &bob).await.is_empty(), "one way only");
    unblock(&app, &ann, &bob).await;
    unblock(&app, &ann, &bob).await;
    assert!(blocked_list(&app, &ann).await.is_empty());

    let res = call(
        &app,
        Method::POST,
        &format!("/api/users/{}/block", ann.id),
        &ann,
        None,
    )
    .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_member").await;
    let res = call(&app, Method::POST, "/api/users/999999/block", &ann, None).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(&app, Method::POST, "/api/users/abc/block", &ann, None).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .http
        .post(app.url(&format!("/api/users/{}/block", bob.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The list is capped: 1,000 blocks, then `conflict`; unblocking makes room.
    let mut db = app.mysql().await;
    db.query_drop(
        "INSERT INTO users (email, username, password_hash) \
         SELECT CONCAT('filler', seq, '@example.com'), CONCAT('filler', seq), 'x' FROM seq_1_to_1000",
    )
    .await
    .unwrap();
    db.exec_drop(
        "INSERT INTO user_blocks (blocker_id, blocked_id) SELECT ?, id FROM users WHERE username LIKE 'filler%'",
        (ann.id,),
    )
    .await
    .unwrap();
    let res = call(
        &app,
        Method::POST,
        &format!("/api/users/{}/block", bob.id),
        &ann,
        None,
    )
    .await;
    assert_error(res, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(blocked_list(&app, &ann).await.len(), 1000);
    let some: u64 = db
        .exec_first(
            "SELECT MIN(blocked_id) FROM user_blocks WHERE blocker_id = ?",
            (ann.id,),
        )
        .await
        .unwrap()
        .unwrap();
    let res = call(
        &app,
        Method::DELETE,
        &format!("/api/users/{some}/block"),
        &ann,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    block(&app, &ann, &bob).await;
}

#[actix_web::test]
async fn a_blocked_user_cannot_open_a_direct_chat_or_add_you_to_a_group() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    block(&app, &ann, &bob).await;
    // No direct chat, new or existing, and the answer says only "forbidden".
    let res = app
        .post_auth("/api/chats", &bob.token, &json!({"userId": ann.id}))
        .await;
    let body = assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(!body.to_string().contains("block"), "{body}");
    // No group with Ann in it, made or added to.
    let res = app
        .post_auth(
            "/api/chats",
            &bob.token,
            &json!({"title": "trap", "memberIds": [ann.id, cat.id]}),
        )
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let group = app.group_chat(&bob, &[&cat]).await;
    let path = format!("/api/chats/{group}/members");
    let res = call(
        &app,
        Method::POST,
        &path,
        &bob,
        Some(json!({"userIds": [ann.id]})),
    )
    .await;
    let body = assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(!body.to_string().contains("block"), "{body}");
    // Ann herself may still start a chat with Bob (she blocked him, not he her),
    // and Cat may add Ann as usual.
    let res = app
        .post_auth("/api/chats", &cat.token, &json!({"userId": ann.id}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    unblock(&app, &ann, &bob).await;
    let res = app
        .post_auth("/api/chats", &bob.token, &json!({"userId": ann.id}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[actix_web::test]
async fn a_block_stops_messages_and_calls_in_a_direct_chat_at_once_on_every_node() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let mut a = n1.ws(&ann).await;
    // Bob on the other node, with the chat's room already running there.
    let mut b = n2.ws(&bob).await;
    let hi = b.send_text(chat, "b1", "hi").await;
    assert_eq!(a.wait_for("message:received").await["data"]["id"], hi["id"]);

    block(&n1, &ann, &bob).await;
    // The block reaches node two's room at once: nothing gets through, either way.
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.send(json!({"event": "message:send", "ref": "b2", "data": {"chatId": chat, "clientId": "b2", "kind": "text", "content": "hello??"}}));
    let r = b.reply_to("b2").await;
    assert_eq!(r["data"]["code"], "forbidden", "{r}");
    assert!(!r.to_string().contains("block"), "{r}");
    b.send(json!({"event": "call:initiate", "ref": "call", "data": {"callId": "blocked-1", "chatId": chat, "video": false, "sdp": offer()}}));
    assert_eq!(b.reply_to("call").await["data"]["code"], "forbidden");
    b.send(json!({"event": "call:initiate", "ref": "call2", "data": {"callId": "blocked-2", "toUserId": ann.id, "video": false, "sdp": offer()}}));
    assert_eq!(b.reply_to("call2").await["data"]["code"], "forbidden");
    a.send(json!({"event": "message:send", "ref": "a1", "data": {"chatId": chat, "clientId": "a1", "kind": "text", "content": "bye"}}));
    assert_eq!(a.reply_to("a1").await["data"]["code"], "forbidden");
    a.assert_quiet(Duration::from_millis(400), &["user:online", "user:offline"])
        .await;
    // The history is still readable by both.
    let res = n2
        .get_auth(&format!("/api/messages?chatId={chat}"), &bob.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Unblocked: the room on node two takes Bob's messages again at once.
    unblock(&n1, &ann, &bob).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = b.send_text(chat, "b3", "sorry").await;
    assert_eq!(
        a.wait_for("message:received").await["data"]["id"],
        again["id"]
    );
}

/// `online` and `lastSeenAt` of `who` in `viewer`'s chat list.
async fn presence_of(app: &TestApp, viewer: &TestUser, who: &TestUser) -> (Value, Value) {
    let res = app.get_auth("/api/chats", &viewer.token).await;
    let list: Value = res.json().await.unwrap();
    let m = list["chats"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == who.id)
        .cloned()
        .expect("member");
    (m["online"].clone(), m["lastSeenAt"].clone())
}

#[actix_web::test]
async fn presence_is_not_shared_either_way_after_a_block() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, .. } = app.ann_bob().await;
    // Bob comes and goes once, so he has a last-seen time.
    let b = app.ws(&bob).await;
    b.close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut a = app.ws(&ann).await;
    block(&app, &ann, &bob).await;

    // Bob comes online: Ann hears nothing; each sees the other offline, never seen.
    let b = app.ws(&bob).await;
    a.assert_quiet(Duration::from_millis(500), &[]).await;
    assert_eq!(
        presence_of(&app, &ann, &bob).await,
        (json!(false), Value::Null)
    );
    assert_eq!(
        presence_of(&app, &bob, &ann).await,
        (json!(false), Value::Null)
    );
    b.close();
    a.assert_quiet(Duration::from_millis(500), &[]).await;
    // Bob's own view of Ann, blocked by her, is the same when she reconnects.
    let mut b = app.ws(&bob).await;
    a.close();
    let _a = app.ws(&ann).await;
    b.assert_quiet(Duration::from_millis(500), &[]).await;

    // Unblocked: presence flows again (from each one's next connect).
    unblock(&app, &ann, &bob).await;
    drop(_a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut a = app.ws(&ann).await;
    b.close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _b = app.ws(&bob).await;
    assert_eq!(a.wait_for("user:online").await["data"]["userId"], bob.id);
    assert_eq!(presence_of(&app, &ann, &bob).await.0, json!(true));
}
