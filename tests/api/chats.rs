use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

#[actix_web::test]
async fn a_direct_chat_is_created_once_whichever_side_starts_it() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let res = app
        .post_auth("/api/chats", &ann.token, &json!({"userId": bob.id}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let chat: Value = res.json().await.unwrap();
    assert_eq!(chat["kind"], "direct");
    assert_eq!(chat["members"].as_array().unwrap().len(), 2);
    assert!(chat["lastMessage"].is_null());
    assert_eq!(chat["unreadCount"], 0);
    // Bob opening it from his side gets the same chat, 200.
    let res = app
        .post_auth("/api/chats", &bob.token, &json!({"userId": ann.id}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["id"], chat["id"]);
    // Only the viewer's own email is shown.
    for m in again["members"].as_array().unwrap() {
        assert_eq!(m.get("email").is_some(), m["id"] == bob.id, "{m}");
    }
}

#[actix_web::test]
async fn creating_chats_refuses_bad_requests() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cases = [
        (
            json!({"userId": ann.id}),
            StatusCode::BAD_REQUEST,
            "invalid_member",
            "a chat with yourself",
        ),
        (
            json!({"userId": 999_999}),
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown user",
        ),
        (
            json!({"title": "", "memberIds": [bob.id]}),
            StatusCode::BAD_REQUEST,
            "invalid_title",
            "empty title",
        ),
        (
            json!({"title": "x".repeat(101), "memberIds": [bob.id]}),
            StatusCode::BAD_REQUEST,
            "invalid_title",
            "long title",
        ),
        (
            json!({"title": "solo", "memberIds": []}),
            StatusCode::BAD_REQUEST,
            "invalid_member",
            "nobody else",
        ),
        (
            json!({"title": "ghosts", "memberIds": [bob.id, 424242]}),
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown member",
        ),
        (
            json!({"userId": "bob"}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "id as a string",
        ),
        (
            json!({}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "empty body",
        ),
    ];
    for (body, status, code, why) in cases {
        let res = app.post_auth("/api/chats", &ann.token, &body).await;
        assert_eq!(res.status(), status, "{why}");
        let b: Value = res.json().await.unwrap();
        assert_eq!(b["error"]["code"], code, "{why}: {b}");
    }
}

#[actix_web::test]
async fn a_chat_is_visible_to_members_only() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let chat = app.direct_chat(&ann, &bob).await;
    assert_eq!(
        app.get_auth(&format!("/api/chats/{chat}"), &bob.token)
            .await
            .status(),
        StatusCode::OK
    );
    let res = app
        .get_auth(&format!("/api/chats/{chat}"), &eve.token)
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app
        .get_auth(&format!("/api/messages?chatId={chat}"), &eve.token)
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    // A chat that does not exist looks exactly like someone else's.
    let res = app.get_auth("/api/chats/987654", &ann.token).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.get_auth("/api/chats/abc", &ann.token).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let page: Value = app
        .get_auth("/api/chats", &eve.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page, json!({"chats": [], "nextBefore": null}));
}

#[actix_web::test]
async fn a_group_includes_its_creator() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cy = app.register("cyd").await;
    let res = app
        .post_auth(
            "/api/chats",
            &ann.token,
            &json!({"title": " Team ", "memberIds": [bob.id, cy.id, bob.id]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let chat: Value = res.json().await.unwrap();
    assert_eq!(chat["kind"], "group");
    assert_eq!(chat["title"], "Team");
    let mut ids: Vec<u64> = chat["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![ann.id, bob.id, cy.id]);
}

#[actix_web::test]
async fn the_chat_list_shows_last_message_unread_count_and_newest_first() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cy = app.register("cyd").await;
    let with_bob = app.direct_chat(&ann, &bob).await;
    let with_cy = app.direct_chat(&ann, &cy).await;
    let mut bob_ws = app.ws(&bob).await;
    bob_ws.send_text(with_bob, "b1", "one").await;
    bob_ws.send_text(with_bob, "b2", "two").await;
    let mut cy_ws = app.ws(&cy).await;
    cy_ws.send_text(with_cy, "c1", "hello from cy").await;

    let page: Value = app
        .get_auth("/api/chats", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    assert!(page["nextBefore"].is_null(), "one page: {page}");
    let list = page["chats"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], with_cy, "newest activity first");
    assert_eq!(list[0]["lastMessage"]["content"], "hello from cy");
    assert_eq!(list[0]["unreadCount"], 1);
    assert_eq!(list[1]["lastMessage"]["content"], "two");
    assert_eq!(list[1]["unreadCount"], 2);
    // Bob is online (he has a socket); the member objects say so.
    let bob_member = list[1]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == bob.id)
        .unwrap()
        .clone();
    assert_eq!(bob_member["online"], true);
    // Bob's own view: his messages do not count as unread.
    let page: Value = app
        .get_auth("/api/chats", &bob.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["chats"][0]["unreadCount"], 0);
}

#[actix_web::test]
async fn history_paged_to_the_end_has_no_gap_and_no_overlap() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let chat = app.direct_chat(&ann, &bob).await;
    let mut ws = app.ws(&ann).await;
    let mut sent = Vec::new();
    for i in 0..57 {
        let m = ws
            .send_text(chat, &format!("m{i}"), &format!("message {i}"))
            .await;
        sent.push(m["id"].as_u64().unwrap());
    }
    let mut seen = Vec::new();
    let mut before: Option<u64> = None;
    let mut pages = 0;
    loop {
        let url = match before {
            Some(b) => format!("/api/messages?chatId={chat}&limit=10&before={b}"),
            None => format!("/api/messages?chatId={chat}&limit=10"),
        };
        let page: Value = app.get_auth(&url, &ann.token).await.json().await.unwrap();
        pages += 1;
        let ids: Vec<u64> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] > w[1]),
            "newest first within a page: {ids:?}"
        );
        seen.extend(ids);
        match page["nextBefore"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(pages, 6);
    seen.reverse();
    assert_eq!(seen, sent, "every message exactly once, in order");
    for (q, why) in [
        ("limit=0", "zero"),
        ("limit=101", "too many"),
        ("limit=x", "not a number"),
    ] {
        let res = app
            .get_auth(&format!("/api/messages?chatId={chat}&{q}"), &ann.token)
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{why}");
    }
    let res = app.get_auth("/api/messages", &ann.token).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_query").await;
}
