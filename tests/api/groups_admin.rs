//! Running a group: roles, rename, add, remove, leave, system messages, who may do
//! what, and a removed member cut off at once (on every node) with their history
//! kept up to their removal.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, two_nodes, Redis, TestApp, TestUser, WsClient};

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

async fn ok_json(res: Response) -> Value {
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn role_of(chat: &Value, user: &TestUser) -> String {
    chat["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["id"] == user.id)
        .map(|m| m["role"].as_str().expect("role").to_owned())
        .unwrap_or_else(|| panic!("{} not in {chat}", user.username))
}

async fn chat_of(app: &TestApp, user: &TestUser, chat: u64) -> Value {
    ok_json(
        app.get_auth(&format!("/api/chats/{chat}"), &user.token)
            .await,
    )
    .await
}

/// The chat's messages as `user` reads them, oldest first.
async fn history(app: &TestApp, user: &TestUser, chat: u64) -> Vec<Value> {
    let page = ok_json(
        app.get_auth(
            &format!("/api/messages?chatId={chat}&limit=100"),
            &user.token,
        )
        .await,
    )
    .await;
    let mut msgs = page["messages"].as_array().expect("messages").clone();
    msgs.reverse();
    msgs
}

fn system(m: &Value) -> Value {
    assert_eq!(m["kind"], "system", "{m}");
    serde_json::from_str(m["content"].as_str().expect("content")).expect("system content is JSON")
}

/// The next `message:received` of kind system, its content parsed.
async fn next_system(ws: &mut WsClient) -> (Value, Value) {
    loop {
        let f = ws.wait_for("message:received").await;
        if f["data"]["kind"] == "system" {
            let content = system(&f["data"]);
            return (f["data"].clone(), content);
        }
    }
}

struct Group {
    app: TestApp,
    ann: TestUser,
    bob: TestUser,
    cat: TestUser,
    dave: TestUser,
    chat: u64,
}

/// Ann's group with Bob and Cat; Dave is an outsider.
async fn group() -> Group {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let dave = app.register("dave").await;
    let chat = app.group_chat(&ann, &[&bob, &cat]).await;
    Group {
        app,
        ann,
        bob,
        cat,
        dave,
        chat,
    }
}

#[actix_web::test]
async fn the_creator_owns_the_group_and_every_member_has_a_role() {
    let g = group().await;
    let chat = chat_of(&g.app, &g.bob, g.chat).await;
    assert_eq!(role_of(&chat, &g.ann), "owner");
    assert_eq!(role_of(&chat, &g.bob), "member");
    assert_eq!(role_of(&chat, &g.cat), "member");
    let direct = g.app.direct_chat(&g.ann, &g.dave).await;
    let d = chat_of(&g.app, &g.ann, direct).await;
    assert_eq!(role_of(&d, &g.ann), "member");
    assert_eq!(role_of(&d, &g.dave), "member");
    // The list shows roles too.
    let list = ok_json(g.app.get_auth("/api/chats", &g.cat.token).await).await;
    assert_eq!(role_of(&list["chats"][0], &g.ann), "owner");
    // A direct chat has no title, roles or other members.
    let path = format!("/api/chats/{direct}");
    let res = call(
        &g.app,
        Method::PATCH,
        &path,
        &g.ann,
        Some(json!({"title": "x"})),
    )
    .await;
    assert_error(res, StatusCode::CONFLICT, "not_a_group").await;
    let path = format!("/api/chats/{direct}/members");
    let body = Some(json!({"userIds": [g.bob.id]}));
    let res = call(&g.app, Method::POST, &path, &g.ann, body).await;
    assert_error(res, StatusCode::CONFLICT, "not_a_group").await;
}

#[actix_web::test]
async fn members_cannot_run_the_group_and_outsiders_learn_nothing() {
    let g = group().await;
    let c = g.chat;
    let title = format!("/api/chats/{c}");
    let members = format!("/api/chats/{c}/members");
    let cat_path = format!("/api/chats/{c}/members/{}", g.cat.id);
    let ann_path = format!("/api/chats/{c}/members/{}", g.ann.id);
    // A member: no rename, no add, no remove, no roles.
    for (method, path, body) in [
        (Method::PATCH, &title, Some(json!({"title": "mine now"}))),
        (
            Method::POST,
            &members,
            Some(json!({"userIds": [g.dave.id]})),
        ),
        (Method::DELETE, &cat_path, None),
        (Method::DELETE, &ann_path, None),
        (Method::PATCH, &cat_path, Some(json!({"role": "admin"}))),
    ] {
        let res = call(&g.app, method.clone(), path, &g.bob, body).await;
        assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // An outsider gets the same answer for this chat and for one that does not exist.
    for chat in [c, 999_999] {
        for (method, path, body) in [
            (
                Method::PATCH,
                format!("/api/chats/{chat}"),
                Some(json!({"title": "x"})),
            ),
            (
                Method::POST,
                format!("/api/chats/{chat}/members"),
                Some(json!({"userIds": [g.dave.id]})),
            ),
            (
                Method::DELETE,
                format!("/api/chats/{chat}/members/{}", g.cat.id),
                None,
            ),
            (
                Method::PATCH,
                format!("/api/chats/{chat}/members/{}", g.cat.id),
                Some(json!({"role": "admin"})),
            ),
            (
                Method::DELETE,
                format!("/api/chats/{chat}/members/me"),
                None,
            ),
        ] {
            let res = call(&g.app, method, &path, &g.dave, body).await;
            let body = assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
            assert_eq!(
                body["error"]["message"], "you are not a member of this chat",
                "{path}"
            );
        }
    }
    // Bad bodies are refused before anything is looked at.
    for body in [
        json!({}),
        json!({"title": 5}),
        json!({"title": "x", "more": 1}),
    ] {
        let res = call(&g.app, Method::PATCH, &title, &g.ann, Some(body)).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_field").await;
    }
    let res = call(
        &g.app,
        Method::PATCH,
        &title,
        &g.ann,
        Some(json!({"title": "  "})),
    )
    .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_title").await;
    let res = call(
        &g.app,
        Method::POST,
        &members,
        &g.ann,
        Some(json!({"userIds": []})),
    )
    .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_member").await;
    let res = call(
        &g.app,
        Method::POST,
        &members,
        &g.ann,
        Some(json!({"userIds": [999_999]})),
    )
    .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = call(
        &g.app,
        Method::PATCH,
        &cat_path,
        &g.ann,
        Some(json!({"role": "king"})),
    )
    .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_field").await;
    let dave_path = format!("/api/chats/{c}/members/{}", g.dave.id);
    let res = call(&g.app, Method::DELETE, &dave_path, &g.ann, None).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    // Nothing of it changed the group or wrote a message.
    let chat = chat_of(&g.app, &g.ann, c).await;
    assert_eq!(chat["members"].as_array().unwrap().len(), 3);
    assert!(chat["lastMessage"].is_null(), "{chat}");
    assert!(history(&g.app, &g.ann, c).await.is_empty());
}

#[actix_web::test]
async fn each_change_is_a_system_message_live_and_in_the_history_and_roles_decide_who_may() {
    let g = group().await;
    let c = g.chat;
    let mut b = g.app.ws(&g.bob).await;
    let mut d = g.app.ws(&g.dave).await;

    // Rename: a system message and chat:updated for every member.
    let res = call(
        &g.app,
        Method::PATCH,
        &format!("/api/chats/{c}"),
        &g.ann,
        Some(json!({"title": "Book club"})),
    )
    .await;
    let chat = ok_json(res).await;
    assert_eq!(chat["title"], "Book club");
    let (renamed, content) = next_system(&mut b).await;
    assert_eq!(
        content,
        json!({"action": "renamed", "actorId": g.ann.id, "userIds": [], "title": "Book club"})
    );
    assert_eq!(renamed["senderId"], g.ann.id);
    let updated = b.wait_for("chat:updated").await;
    assert_eq!(updated["data"]["chat"]["title"], "Book club");
    assert!(updated["data"]["chat"].get("unreadCount").is_none());
    assert_eq!(
        chat["lastMessage"]["id"], renamed["id"],
        "it counts as the last message"
    );

    // Add Dave: he hears of it at once, and becomes a member who can post.
    let res = call(
        &g.app,
        Method::POST,
        &format!("/api/chats/{c}/members"),
        &g.ann,
        Some(json!({"userIds": [g.dave.id, g.bob.id]})),
    )
    .await;
    let chat = ok_json(res).await;
    assert_eq!(role_of(&chat, &g.dave), "member");
    let (_, added) = next_system(&mut d).await;
    assert_eq!(
        added,
        json!({"action": "added", "actorId": g.ann.id, "userIds": [g.dave.id]})
    );
    let upd = d.wait_for("chat:updated").await;
    assert_eq!(upd["data"]["chat"]["id"], c);
    assert_eq!(next_system(&mut b).await.1["action"], "added");
    let hello = d.send_text(c, "d1", "hi all").await;
    assert_eq!(
        b.wait_for("message:received").await["data"]["id"],
        hello["id"]
    );
    // Adding only members already in it changes nothing.
    let res = call(
        &g.app,
        Method::POST,
        &format!("/api/chats/{c}/members"),
        &g.ann,
        Some(json!({"userIds": [g.dave.id]})),
    )
    .await;
    ok_json(res).await;

    // Bob becomes an admin: now he renames and removes plain members, but cannot
    // change roles or remove the owner or another admin.
    let bob_path = format!("/api/chats/{c}/members/{}", g.bob.id);
    let chat = ok_json(
        call(
            &g.app,
            Method::PATCH,
            &bob_path,
            &g.ann,
            Some(json!({"role": "admin"})),
        )
        .await,
    )
    .await;
    assert_eq!(role_of(&chat, &g.bob), "admin");
    assert_eq!(
        next_system(&mut b).await.1,
        json!({"action": "role_changed", "actorId": g.ann.id, "userIds": [g.bob.id], "role": "admin"})
    );
    let cat_path = format!("/api/chats/{c}/members/{}", g.cat.id);
    let ann_path = format!("/api/chats/{c}/members/{}", g.ann.id);
    let res = call(
        &g.app,
        Method::PATCH,
        &cat_path,
        &g.bob,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = call(&g.app, Method::DELETE, &ann_path, &g.bob, None).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    ok_json(
        call(
            &g.app,
            Method::PATCH,
            &cat_path,
            &g.ann,
            Some(json!({"role": "admin"})),
        )
        .await,
    )
    .await;
    let res = call(&g.app, Method::DELETE, &cat_path, &g.bob, None).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    ok_json(
        call(
            &g.app,
            Method::PATCH,
            &cat_path,
            &g.ann,
            Some(json!({"role": "member"})),
        )
        .await,
    )
    .await;
    ok_json(
        call(
            &g.app,
            Method::PATCH,
            &format!("/api/chats/{c}"),
            &g.bob,
            Some(json!({"title": "Bob's club"})),
        )
        .await,
    )
    .await;
    let res = call(&g.app, Method::DELETE, &cat_path, &g.bob, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // The history is the record, in order.
    let actions: Vec<String> = history(&g.app, &g.ann, c)
        .await
        .iter()
        .filter(|m| m["kind"] == "system")
        .map(|m| system(m)["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "renamed",
            "added",
            "role_changed",
            "role_changed",
            "role_changed",
            "renamed",
            "removed"
        ]
    );
    // Handing the group over: Dave becomes owner, Ann an admin.
    let dave_path = format!("/api/chats/{c}/members/{}", g.dave.id);
    let chat = ok_json(
        call(
            &g.app,
            Method::PATCH,
            &dave_path,
            &g.ann,
            Some(json!({"role": "owner"})),
        )
        .await,
    )
    .await;
    assert_eq!(role_of(&chat, &g.dave), "owner");
    assert_eq!(role_of(&chat, &g.ann), "admin");
    let res = call(
        &g.app,
        Method::PATCH,
        &bob_path,
        &g.ann,
        Some(json!({"role": "member"})),
    )
    .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
}

#[actix_web::test]
async fn a_removed_member_stops_receiving_at_once_and_keeps_the_history_up_to_removal() {
    let g = group().await;
    let c = g.chat;
    let mut b = g.app.ws(&g.bob).await;
    let mut cat = g.app.ws(&g.cat).await;
    let before = b.send_text(c, "b1", "before").await;
    assert_eq!(
        cat.wait_for("message:received").await["data"]["id"],
        before["id"]
    );

    let res = call(
        &g.app,
        Method::DELETE,
        &format!("/api/chats/{c}/members/{}", g.cat.id),
        &g.ann,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (removal, content) = next_system(&mut cat).await;
    assert_eq!(
        content,
        json!({"action": "removed", "actorId": g.ann.id, "userIds": [g.cat.id]})
    );
    let gone = cat.wait_for("chat:removed").await;
    assert_eq!(
        gone["data"],
        json!({"chatId": c, "messageId": removal["id"]})
    );

    // From now on: nothing reaches Cat, and Cat can send nothing.
    let after = b.send_text(c, "b2", "after").await;
    cat.send(json!({"event": "message:send", "ref": "c1", "data": {"chatId": c, "clientId": "c1", "kind": "text", "content": "still here?"}}));
    let refused = cat.reply_to("c1").await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    cat.send(json!({"event": "typing", "ref": "t1", "data": {"chatId": c, "active": true}}));
    assert_eq!(cat.reply_to("t1").await["data"]["code"], "forbidden");
    cat.assert_quiet(
        Duration::from_millis(500),
        &["user:online", "user:offline", "chat:member-left"],
    )
    .await;
    // Cat reads the history up to the removal and nothing after, whichever way.
    let ids: Vec<Value> = history(&g.app, &g.cat, c)
        .await
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [before["id"].clone(), removal["id"].clone()]);
    let page = ok_json(
        g.app
            .get_auth(&format!("/api/messages?chatId={c}&after=0"), &g.cat.token)
            .await,
    )
    .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert!(page["nextAfter"].is_null());
    let res = g
        .app
        .get_auth(
            &format!("/api/messages?chatId={c}&around={}", after["id"]),
            &g.cat.token,
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    // The chat is gone from Cat's list and its details are closed to them.
    let res = g
        .app
        .get_auth(&format!("/api/chats/{c}"), &g.cat.token)
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let list = ok_json(g.app.get_auth("/api/chats", &g.cat.token).await).await;
    assert!(list["chats"].as_array().unwrap().is_empty(), "{list}");
    // The others see what happened, and Cat is no longer listed.
    let chat = chat_of(&g.app, &g.bob, c).await;
    assert_eq!(chat["members"].as_array().unwrap().len(), 2);
    // Added back, Cat reads everything again and receives again.
    ok_json(
        call(
            &g.app,
            Method::POST,
            &format!("/api/chats/{c}/members"),
            &g.ann,
            Some(json!({"userIds": [g.cat.id]})),
        )
        .await,
    )
    .await;
    assert!(history(&g.app, &g.cat, c)
        .await
        .iter()
        .any(|m| m["id"] == after["id"]));
    let again = b.send_text(c, "b3", "welcome back").await;
    wait_message(&mut cat, &again["id"]).await;
}

/// Waits for the `message:received` of this message, skipping others.
async fn wait_message(ws: &mut WsClient, id: &Value) {
    while ws.wait_for("message:received").await["data"]["id"] != *id {}
}

#[actix_web::test]
async fn an_owner_who_leaves_hands_the_group_to_the_oldest_admin_else_the_oldest_member() {
    let g = group().await;
    let c = g.chat;
    ok_json(
        call(
            &g.app,
            Method::POST,
            &format!("/api/chats/{c}/members"),
            &g.ann,
            Some(json!({"userIds": [g.dave.id]})),
        )
        .await,
    )
    .await;
    ok_json(
        call(
            &g.app,
            Method::PATCH,
            &format!("/api/chats/{c}/members/{}", g.dave.id),
            &g.ann,
            Some(json!({"role": "admin"})),
        )
        .await,
    )
    .await;
    // Ann leaves by removing herself: Dave, the only admin, owns the group now.
    let res = call(
        &g.app,
        Method::DELETE,
        &format!("/api/chats/{c}/members/{}", g.ann.id),
        &g.ann,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let chat = chat_of(&g.app, &g.bob, c).await;
    assert_eq!(role_of(&chat, &g.dave), "owner");
    let tail: Vec<Value> = history(&g.app, &g.bob, c)
        .await
        .iter()
        .rev()
        .take(2)
        .map(system)
        .collect();
    assert_eq!(
        tail,
        [
            json!({"action": "role_changed", "actorId": g.ann.id, "userIds": [g.dave.id], "role": "owner"}),
            json!({"action": "left", "actorId": g.ann.id, "userIds": [g.ann.id]}),
        ]
    );
    // Dave leaves through the old route: no admin is left, so the oldest member
    // (Bob and Cat joined together: the lower id) owns it.
    let res = call(
        &g.app,
        Method::DELETE,
        &format!("/api/chats/{c}/members/me"),
        &g.dave,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let chat = chat_of(&g.app, &g.cat, c).await;
    assert_eq!(role_of(&chat, &g.bob), "owner");
    assert_eq!(role_of(&chat, &g.cat), "member");
    // A departed member cannot leave twice.
    let res = call(
        &g.app,
        Method::DELETE,
        &format!("/api/chats/{c}/members/me"),
        &g.dave,
        None,
    )
    .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
}

async fn request(ws: &mut WsClient, event: &str, reference: &str, data: Value) -> Value {
    ws.send(json!({"event": event, "ref": reference, "data": data}));
    ws.reply_to(reference).await
}

#[actix_web::test]
async fn admins_delete_anyones_message_members_only_their_own_and_system_messages_stay() {
    let g = group().await;
    let c = g.chat;
    let mut a = g.app.ws(&g.ann).await;
    let mut b = g.app.ws(&g.bob).await;
    let mut cat = g.app.ws(&g.cat).await;
    let from_cat = cat.send_text(c, "c1", "spam spam").await;
    let from_ann = a.send_text(c, "a1", "house rules").await;
    // A member cannot delete someone else's message.
    let r = request(
        &mut b,
        "message:delete",
        "bd",
        json!({"messageId": from_ann["id"]}),
    )
    .await;
    assert_eq!(r["data"]["code"], "forbidden", "{r}");
    // The owner deletes Cat's, for everyone.
    let r = request(
        &mut a,
        "message:delete",
        "ad",
        json!({"messageId": from_cat["id"]}),
    )
    .await;
    assert_eq!(r["event"], "ack", "{r}");
    let ev = b.wait_for("message:deleted").await;
    assert_eq!(ev["data"]["messageId"], from_cat["id"]);
    // An admin too; demoted, no longer.
    ok_json(
        call(
            &g.app,
            Method::PATCH,
            &format!("/api/chats/{c}/members/{}", g.bob.id),
            &g.ann,
            Some(json!({"role": "admin"})),
        )
        .await,
    )
    .await;
    let r = request(
        &mut b,
        "message:delete",
        "bd2",
        json!({"messageId": from_ann["id"]}),
    )
    .await;
    assert_eq!(r["event"], "ack", "{r}");
    let late = cat.send_text(c, "c2", "again").await;
    ok_json(
        call(
            &g.app,
            Method::PATCH,
            &format!("/api/chats/{c}/members/{}", g.bob.id),
            &g.ann,
            Some(json!({"role": "member"})),
        )
        .await,
    )
    .await;
    let r = request(
        &mut b,
        "message:delete",
        "bd3",
        json!({"messageId": late["id"]}),
    )
    .await;
    assert_eq!(r["data"]["code"], "forbidden", "{r}");

    // System messages: nobody edits, deletes or reacts to them, the owner included.
    let sys = history(&g.app, &g.ann, c)
        .await
        .into_iter()
        .find(|m| m["kind"] == "system")
        .expect("a system message");
    for (event, data) in [
        (
            "message:edit",
            json!({"messageId": sys["id"], "content": "rewritten"}),
        ),
        ("message:delete", json!({"messageId": sys["id"]})),
        (
            "message:react",
            json!({"messageId": sys["id"], "emoji": "👍", "active": true}),
        ),
    ] {
        let r = request(&mut a, event, event, data).await;
        assert_eq!(r["event"], "error", "{event}: {r}");
    }
    // Nor sends one.
    a.send(json!({"event": "message:send", "ref": "fake", "data": {"chatId": c, "clientId": "f1", "kind": "system", "content": "{}"}}));
    assert_eq!(a.reply_to("fake").await["data"]["code"], "invalid_data");
    let kept = history(&g.app, &g.bob, c).await;
    assert!(kept.iter().any(|m| m["id"] == sys["id"]
        && m["kind"] == "system"
        && m.get("deleted").is_none_or(|d| d == false)));
}

#[actix_web::test]
async fn a_removed_member_stops_receiving_at_once_on_every_node_and_an_added_one_posts_at_once() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let ann = n1.register("ann").await;
    let bob = n1.register("bob").await;
    let cat = n1.register("cat").await;
    let dave = n1.register("dave").await;
    let c = n1.group_chat(&ann, &[&bob, &cat]).await;
    // Bob and Cat on node two; the room there knows the members once Bob posts.
    let mut b = n2.ws(&bob).await;
    let mut cat_ws = n2.ws(&cat).await;
    let mut d = n2.ws(&dave).await;
    let first = b.send_text(c, "b1", "warm up").await;
    assert_eq!(
        cat_ws.wait_for("message:received").await["data"]["id"],
        first["id"]
    );

    // Ann removes Cat on node one; Bob posts on node two right away.
    let res = call(
        &n1,
        Method::DELETE,
        &format!("/api/chats/{c}/members/{}", cat.id),
        &ann,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    cat_ws.wait_for("chat:removed").await;
    let after = b.send_text(c, "b2", "cat cannot read this").await;
    // The removal's system message came before chat:removed (one queue, in order):
    // nothing of the chat may follow.
    cat_ws
        .assert_quiet(
            Duration::from_millis(800),
            &["user:online", "user:offline", "chat:member-left"],
        )
        .await;
    let seen = history(&n2, &cat, c).await;
    assert!(seen.iter().all(|m| m["id"] != after["id"]));
    cat_ws.send(json!({"event": "message:send", "ref": "c1", "data": {"chatId": c, "clientId": "c1", "kind": "text", "content": "hello?"}}));
    assert_eq!(cat_ws.reply_to("c1").await["data"]["code"], "forbidden");

    // Ann adds Dave on node one; Dave posts on node two at once.
    ok_json(
        call(
            &n1,
            Method::POST,
            &format!("/api/chats/{c}/members"),
            &ann,
            Some(json!({"userIds": [dave.id]})),
        )
        .await,
    )
    .await;
    d.wait_for("chat:updated").await;
    let hi = d.send_text(c, "d1", "hi, new here").await;
    wait_message(&mut b, &hi["id"]).await;
}

/// An envelope wrapping the key for exactly `users` (shape only: the server never
/// decrypts).
fn envelope(users: &[&TestUser]) -> Value {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    let keys: serde_json::Map<String, Value> = users
        .iter()
        .map(|u| (u.id.to_string(), json!(B64.encode([7u8; 256]))))
        .collect();
    json!({"v": 1, "alg": "RSA-OAEP-256+A256GCM", "iv": B64.encode([1u8; 12]),
        "ciphertext": B64.encode([2u8; 40]), "keys": keys})
}

#[actix_web::test]
async fn an_encrypted_groups_envelope_must_follow_the_members_at_once() {
    let g = group().await;
    let c = g.chat;
    let mut a = g.app.ws(&g.ann).await;
    let sealed = |id: &str, users: &[&TestUser]| {
        json!({"event": "message:send", "ref": id, "data": {"chatId": c, "clientId": id,
            "kind": "text", "encrypted": true, "e2ee": envelope(users)}})
    };
    a.send(sealed("e1", &[&g.ann, &g.bob, &g.cat]));
    assert_eq!(a.reply_to("e1").await["event"], "ack");
    let res = call(
        &g.app,
        Method::DELETE,
        &format!("/api/chats/{c}/members/{}", g.cat.id),
        &g.ann,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Still wrapped for Cat: refused; re-wrapped for the members left: accepted.
    a.send(sealed("e2", &[&g.ann, &g.bob, &g.cat]));
    assert_eq!(a.reply_to("e2").await["data"]["code"], "invalid_envelope");
    a.send(sealed("e3", &[&g.ann, &g.bob]));
    assert_eq!(a.reply_to("e3").await["event"], "ack");
    // Dave added: he must be in the next envelope.
    ok_json(
        call(
            &g.app,
            Method::POST,
            &format!("/api/chats/{c}/members"),
            &g.ann,
            Some(json!({"userIds": [g.dave.id]})),
        )
        .await,
    )
    .await;
    a.send(sealed("e4", &[&g.ann, &g.bob]));
    assert_eq!(a.reply_to("e4").await["data"]["code"], "invalid_envelope");
    a.send(sealed("e5", &[&g.ann, &g.bob, &g.dave]));
    assert_eq!(a.reply_to("e5").await["event"], "ack");
}
