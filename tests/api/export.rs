//! Account export (issue 19): `GET /api/users/me/export`, a JSON document of the
//! caller's profile, chats and the messages they sent, streamed page by page.

use mysql_async::prelude::Queryable;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app, TestApp, TestUser};

async fn export(app: &TestApp, user: &TestUser) -> reqwest::Response {
    app.get_auth("/api/users/me/export", &user.token).await
}

#[actix_web::test]
async fn an_export_holds_the_profile_the_chats_and_only_the_callers_messages() {
    let app = spawn_app().await;
    let ab = app.ann_bob().await;
    let cat = app.register("cat").await;
    let group = app.group_chat(&ab.bob, &[&ab.ann, &cat]).await;
    let elsewhere = app.direct_chat(&ab.bob, &cat).await;
    let mut a = app.ws(&ab.ann).await;
    let mut b = app.ws(&ab.bob).await;
    let mine = a.send_text(ab.chat, "a1", "ann says hi").await;
    a.send_text(group, "a2", "ann in the group").await;
    b.send_text(ab.chat, "b1", "bob-secret-words").await;
    b.send_text(elsewhere, "b2", "bob to cat only").await;

    let res = export(&app, &ab.ann).await;
    assert_eq!(res.status(), StatusCode::OK);
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let raw = res.text().await.unwrap();
    for theirs in [
        "bob-secret-words",
        "bob to cat only",
        "bob@example.com",
        "cat@example.com",
    ] {
        assert!(!raw.contains(theirs), "{theirs} leaked into ann's export");
    }
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["profile"]["id"], ab.ann.id);
    assert_eq!(doc["profile"]["email"], ab.ann.email);
    assert!(doc["exportedAt"].is_string());
    let chats = doc["chats"].as_array().unwrap();
    let ids: Vec<u64> = chats.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [ab.chat, group], "ann's chats only, in id order");
    assert_eq!(chats[1]["kind"], "group");
    let names: Vec<&str> = chats[1]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "bob", "cat"]);
    let messages = doc["messages"].as_array().unwrap();
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["ann says hi", "ann in the group"]);
    assert_eq!(messages[0]["id"], mine["id"]);
    assert_eq!(messages[0]["chatId"], ab.chat);
}

#[actix_web::test]
async fn exports_are_once_a_minute_and_need_a_token() {
    let app = spawn_app().await;
    let ab = app.ann_bob().await;
    assert_eq!(export(&app, &ab.ann).await.status(), StatusCode::OK);
    let res = export(&app, &ab.ann).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Someone else's limit is their own.
    assert_eq!(export(&app, &ab.bob).await.status(), StatusCode::OK);
    let res = app
        .http
        .get(app.url("/api/users/me/export"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[actix_web::test]
async fn a_large_export_pages_through_every_message_once() {
    let app = spawn_app().await;
    let ab = app.ann_bob().await;
    // More than a few pages, written straight into the table.
    let n = 2_345u64;
    let mut conn = app.mysql().await;
    let rows: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "({}, {}, 'bulk-{i}', 'text', 'message {i}')",
                ab.chat, ab.ann.id
            )
        })
        .collect();
    conn.query_drop(format!(
        "INSERT INTO messages (chat_id, sender_id, client_id, kind, content) VALUES {}",
        rows.join(",")
    ))
    .await
    .unwrap();
    conn.query_drop(format!(
        "INSERT INTO messages (chat_id, sender_id, client_id, kind, content) \
         VALUES ({}, {}, 'from-bob', 'text', 'not ann''s')",
        ab.chat, ab.bob.id
    ))
    .await
    .unwrap();
    let doc: Value = export(&app, &ab.ann).await.json().await.unwrap();
    let messages = doc["messages"].as_array().unwrap();
    assert_eq!(messages.len() as u64, n);
    // Every one of ann's messages, once (pages go in client-id order; ids tell
    // the order they were sent in).
    let mut by_id: Vec<(u64, &str)> = messages
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    by_id.sort();
    by_id.dedup();
    assert_eq!(by_id.len() as u64, n);
    for (i, (_, content)) in by_id.iter().enumerate() {
        assert_eq!(*content, format!("message {i}"));
    }
}
