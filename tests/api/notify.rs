//! Issue 20, the parts before the push engine: `client:state`, and muting a chat
//! (`PATCH /api/chats/:id/settings`, `chat.muted`, `chat:settings`, and
//! `Db::muted_chats_of` for the engine).

use std::time::Duration;

use parley::db::Db;
use parley_actors::UserId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, TestApp, TestUser};

async fn settings(app: &TestApp, user: &TestUser, chat: u64, body: Value) -> reqwest::Response {
    app.http
        .request(
            Method::PATCH,
            app.url(&format!("/api/chats/{chat}/settings")),
        )
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn chat_of(app: &TestApp, user: &TestUser, chat: u64) -> Value {
    let res = app
        .get_auth(&format!("/api/chats/{chat}"), &user.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[actix_web::test]
async fn client_state_is_acknowledged_and_a_bad_one_is_refused() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let mut ws = app.ws(&ann).await;
    for (reference, data) in [
        ("hide", json!({"visible": false})),
        ("show", json!({"visible": true})),
    ] {
        ws.send(json!({"event": "client:state", "ref": reference, "data": data}));
        let ack = ws.reply_to(reference).await;
        assert_eq!(ack["event"], "ack", "{ack}");
    }
    for (reference, data) in [
        ("none", Value::Null),
        ("string", json!({"visible": "no"})),
        ("extra", json!({"visible": true, "x": 1})),
        ("number", json!({"visible": 1})),
    ] {
        let mut frame = json!({"event": "client:state", "ref": reference});
        if !data.is_null() {
            frame["data"] = data;
        }
        ws.send(frame);
        let err = ws.reply_to(reference).await;
        assert_eq!(err["event"], "error", "{reference}: {err}");
        assert_eq!(err["data"]["code"], "invalid_data", "{reference}: {err}");
    }
    // The connection is still usable.
    ws.send(json!({"event": "ping", "ref": "p"}));
    assert_eq!(ws.reply_to("p").await["event"], "pong");
}

#[actix_web::test]
async fn a_member_mutes_a_chat_for_themselves_only() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let chat = app.group_chat(&ann, &[&bob]).await;
    let mut ann_other_tab = app.ws(&ann).await;

    // Not muted at first.
    let c = chat_of(&app, &ann, chat).await;
    assert_eq!(
        (c["muted"].clone(), c["mutedUntil"].clone()),
        (json!(false), Value::Null)
    );

    // Muted until unmuted.
    let res = settings(&app, &ann, chat, json!({"muted": true})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"chatId": chat, "muted": true, "mutedUntil": null})
    );
    let ev = ann_other_tab
        .wait_event("chat:settings", Duration::from_secs(5))
        .await
        .expect("chat:settings to the user's sessions");
    assert_eq!(ev["data"], body);
    assert_eq!(chat_of(&app, &ann, chat).await["muted"], true);
    assert_eq!(
        chat_of(&app, &bob, chat).await["muted"],
        false,
        "ann's setting only"
    );
    let list: Value = app
        .get_auth("/api/chats", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["chats"][0]["muted"], true, "{list}");

    let db = Db::connect(&app.db_url, 2).unwrap();
    // What the push engine asks: (chat, user) pairs muted now, for these users.
    let muted = |users: Vec<&TestUser>| {
        let db = db.clone();
        let ids: Vec<UserId> = users.iter().map(|u| UserId(u.id)).collect();
        async move {
            let mut pairs: Vec<(u64, u64)> = db
                .muted_chats_of(&ids)
                .await
                .unwrap()
                .into_iter()
                .map(|(c, u)| (c.0, u.0))
                .collect();
            pairs.sort();
            pairs
        }
    };
    assert_eq!(muted(vec![&ann, &bob, &cat]).await, [(chat, ann.id)]);

    // Until a time: shown with it.
    let until = (chrono::Utc::now() + chrono::TimeDelta::hours(8))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let res = settings(
        &app,
        &bob,
        chat,
        json!({"muted": true, "mutedUntil": until}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let c = chat_of(&app, &bob, chat).await;
    assert_eq!(
        (c["muted"].clone(), c["mutedUntil"].clone()),
        (json!(true), json!(until))
    );
    let mut both = vec![(chat, ann.id), (chat, bob.id)];
    both.sort();
    assert_eq!(muted(vec![&ann, &bob]).await, both);

    // A past mute is not a mute.
    let mut conn = app.mysql().await;
    use mysql_async::prelude::Queryable;
    conn.exec_drop(
        "UPDATE chat_members SET muted_until = UTC_TIMESTAMP(3) - INTERVAL 1 SECOND WHERE user_id = ?",
        (bob.id,),
    )
    .await
    .unwrap();
    assert_eq!(chat_of(&app, &bob, chat).await["muted"], false);
    assert!(muted(vec![&bob]).await.is_empty());

    // Unmuted.
    let res = settings(&app, &ann, chat, json!({"muted": false})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(chat_of(&app, &ann, chat).await["muted"], false);
    assert!(muted(vec![&ann]).await.is_empty());
}

#[actix_web::test]
async fn chat_settings_refuse_outsiders_and_bad_input() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cat = app.register("cat").await;
    let chat = app.direct_chat(&ann, &bob).await;

    // Someone else's chat and a chat that does not exist: the same 403.
    for c in [chat, 999_999] {
        assert_error(
            settings(&app, &cat, c, json!({"muted": true})).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    let past = (chrono::Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339();
    let too_far = (chrono::Utc::now() + chrono::TimeDelta::days(400)).to_rfc3339();
    for body in [
        json!({}),
        json!({"muted": "yes"}),
        json!({"muted": true, "mutedUntil": "tomorrow"}),
        json!({"muted": true, "mutedUntil": past}),
        json!({"muted": true, "mutedUntil": too_far}),
        json!({"muted": true, "mutedUntil": 12}),
        json!({"muted": false, "mutedUntil": too_far}),
        json!({"muted": true, "other": 1}),
        json!([true]),
    ] {
        assert_error(
            settings(&app, &ann, chat, body.clone()).await,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        )
        .await;
    }
    assert_eq!(
        chat_of(&app, &ann, chat).await["muted"],
        false,
        "nothing changed"
    );
}
