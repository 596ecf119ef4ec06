use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, AnnBob};

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
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let eve = app.register("eve").await;
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
    let AnnBob {
        ann,
        bob,
        chat: with_bob,
    } = app.ann_bob().await;
    let cy = app.register("cyd").await;
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
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
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

/// Ids of one page, and its `nextBefore`.
async fn chat_page(app: &crate::helpers::TestApp, token: &str, query: &str) -> (Vec<u64>, Value) {
    let res = app.get_auth(&format!("/api/chats{query}"), token).await;
    assert_eq!(res.status(), StatusCode::OK, "GET /api/chats{query}");
    let page: Value = res.json().await.unwrap();
    let ids = page["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    (ids, page["nextBefore"].clone())
}

#[actix_web::test]
async fn the_chat_list_pages_newest_activity_first_without_gap_or_overlap() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let mut groups = Vec::new();
    for i in 0..7 {
        let res = app
            .post_auth(
                "/api/chats",
                &ann.token,
                &json!({"title": format!("g{i}"), "memberIds": [bob.id]}),
            )
            .await;
        groups.push(res.json::<Value>().await.unwrap()["id"].as_u64().unwrap());
    }
    // Five chats created in the same millisecond: the id orders them, and a page
    // boundary among them still neither repeats nor skips one.
    let mut db = app.mysql().await;
    use mysql_async::prelude::Queryable;
    db.exec_drop(
        "UPDATE chats SET created_at = '2026-01-01 00:00:00.000' WHERE id IN (?, ?, ?, ?, ?)",
        (groups[0], groups[1], groups[2], groups[3], groups[4]),
    )
    .await
    .unwrap();
    // A message makes the oldest chat the newest.
    let mut ws = app.ws(&bob).await;
    ws.send_text(groups[0], "late", "back on top").await;

    let mut seen = Vec::new();
    let mut query = "?limit=3".to_string();
    let mut pages = 0;
    loop {
        let (ids, next) = chat_page(&app, &ann.token, &query).await;
        pages += 1;
        assert!(ids.len() <= 3);
        seen.extend(ids);
        match next.as_str() {
            Some(cursor) => query = format!("?limit=3&before={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected = vec![groups[0], groups[6], groups[5]];
    expected.extend([groups[4], groups[3], groups[2], groups[1]]);
    assert_eq!(seen, expected, "activity first, then the id among equals");
    // The default page holds them all, with no next page.
    let (all, next) = chat_page(&app, &ann.token, "").await;
    assert_eq!(all, expected);
    assert!(next.is_null());
}

#[actix_web::test]
async fn the_chat_list_refuses_bad_paging() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    for (q, why) in [
        ("limit=0", "zero"),
        ("limit=201", "more than 200"),
        ("limit=x", "not a number"),
        ("before=12", "not a cursor"),
        ("before=1_2_3", "three parts"),
        ("before=-5_2", "negative time"),
        ("before=1_x", "not an id"),
        ("before=", "empty"),
    ] {
        let res = app.get_auth(&format!("/api/chats?{q}"), &ann.token).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{why}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_query", "{why}: {body}");
    }
    let (ids, next) = chat_page(&app, &ann.token, "?limit=200&before=1764662400123_42").await;
    assert!(ids.is_empty() && next.is_null());
}

#[actix_web::test]
async fn starting_chats_is_rate_limited_per_user() {
    let app = crate::helpers::spawn_app_with(|s| s.limits.chats_per_min = 3).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cyd = app.register("cyd").await;
    for i in 0..3 {
        let res = app
            .post_auth(
                "/api/chats",
                &ann.token,
                &json!({"title": format!("g{i}"), "memberIds": [bob.id]}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "group {i}");
    }
    let res = app
        .post_auth("/api/chats", &ann.token, &json!({"userId": cyd.id}))
        .await;
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "retry after {retry}s");
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let res = app
        .post_auth(
            "/api/chats",
            &ann.token,
            &json!({"title": "one more", "memberIds": [bob.id]}),
        )
        .await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Someone else is not limited by ann, and opening a chat that exists is free.
    let res = app
        .post_auth("/api/chats", &bob.token, &json!({"userId": cyd.id}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .post_auth("/api/chats", &cyd.token, &json!({"userId": bob.id}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (ids, _) = chat_page(&app, &ann.token, "").await;
    assert_eq!(ids.len(), 3);
}

#[actix_web::test]
async fn a_group_has_at_most_group_max_members() {
    let app = crate::helpers::spawn_app_with(|s| s.limits.group_max_members = 3).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cyd = app.register("cyd").await;
    let dan = app.register("dan").await;
    let res = app
        .post_auth(
            "/api/chats",
            &ann.token,
            &json!({"title": "four", "memberIds": [bob.id, cyd.id, dan.id]}),
        )
        .await;
    let body = assert_error(res, StatusCode::BAD_REQUEST, "invalid_member").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2 to 3"));
    let res = app
        .post_auth(
            "/api/chats",
            &ann.token,
            &json!({"title": "three", "memberIds": [bob.id, cyd.id]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[actix_web::test]
async fn a_member_leaves_a_group_and_loses_it_the_others_are_told() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cyd = app.register("cyd").await;
    let eve = app.register("eve").await;
    let res = app
        .post_auth(
            "/api/chats",
            &ann.token,
            &json!({"title": "team", "memberIds": [bob.id, cyd.id]}),
        )
        .await;
    let group = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let direct = app.direct_chat(&ann, &bob).await;
    let mut ann_ws = app.ws(&ann).await;
    let mut bob_ws = app.ws(&bob).await;
    let leave = |chat: u64, token: String| {
        let app = &app;
        async move {
            app.http
                .delete(app.url(&format!("/api/chats/{chat}/members/me")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };

    // Outsiders, unknown chats and direct chats cannot be left.
    assert_error(
        leave(group, eve.token.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        leave(987_654, bob.token.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        leave(direct, bob.token.clone()).await,
        StatusCode::CONFLICT,
        "not_a_group",
    )
    .await;
    let res = app
        .get_auth(&format!("/api/chats/{group}/members/me"), &bob.token)
        .await;
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;

    let res = leave(group, bob.token.clone()).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for ws in [&mut ann_ws, &mut bob_ws] {
        let ev = ws.wait_for("chat:member-left").await;
        assert_eq!(ev["data"], json!({"chatId": group, "userId": bob.id}));
    }
    // Bob sees the group no more, like an outsider; the others see him gone. He
    // keeps its history up to his departure (issue 19): the `left` system message last.
    let (ids, _) = chat_page(&app, &bob.token, "").await;
    assert_eq!(ids, vec![direct]);
    let res = app
        .get_auth(&format!("/api/chats/{group}"), &bob.token)
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let page: Value = app
        .get_auth(&format!("/api/messages?chatId={group}"), &bob.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"][0]["kind"], "system", "{page}");
    assert_error(
        leave(group, bob.token.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let chat: Value = app
        .get_auth(&format!("/api/chats/{group}"), &ann.token)
        .await
        .json()
        .await
        .unwrap();
    let members: Vec<u64> = chat["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert!(
        !members.contains(&bob.id) && members.len() == 2,
        "{members:?}"
    );
    // A message to the group reaches the members and not him.
    ann_ws.send_text(group, "after", "bob has gone").await;
    while let Some(frame) = bob_ws.next_within(Duration::from_millis(500)).await {
        let frame = frame.unwrap();
        assert_ne!(frame["event"], "message:received", "{frame}");
    }
}
