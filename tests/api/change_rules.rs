//! Who may edit, delete and react to what (issue 17), and what each refusal leaves
//! behind: nothing. Also the edit window, the kinds that cannot be edited, encrypted
//! edits, the voice message a delete removes from disk, and a flood of changes.

use std::time::Duration;

use base64::Engine;
use mysql_async::prelude::Queryable;
use parley::e2ee::{self, Envelope};
use parley::{ChatId, UserId};
use reqwest::StatusCode;
use rsa::{PrivateKey, PublicKey};
use serde_json::{json, Value};

use crate::changes::{change_id, deleted_shape, event_for, read_message, received, sync_all};
use crate::helpers::{spawn_app, spawn_app_with, AnnBob, TestApp, WsClient};
use parley_testkit::media::{audio_form, files_in, upload_audio, webm};

const PRESENCE: &[&str] = &["user:online", "user:offline"];

async fn changes_stored(app: &TestApp) -> u64 {
    let mut conn = app.mysql().await;
    conn.query_first("SELECT COUNT(*) FROM message_changes")
        .await
        .unwrap()
        .unwrap()
}

/// The edit, the delete and a reaction of `message` by `c`: each reply's `data`.
async fn all_three(c: &mut WsClient, message: &Value) -> [Value; 3] {
    let id = &message["id"];
    [
        c.request(
            "message:edit",
            json!({"messageId": id, "content": "mine now"}),
        )
        .await["data"]
            .clone(),
        c.request("message:delete", json!({"messageId": id})).await["data"].clone(),
        c.request(
            "message:react",
            json!({"messageId": id, "emoji": "👍", "active": true}),
        )
        .await["data"]
            .clone(),
    ]
}

#[actix_web::test]
async fn only_the_sender_edits_or_deletes_and_a_refusal_changes_nothing() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let m = a.send_text(chat, "m", "ann's words").await;
    received(&mut b, &m["id"]).await;
    let edit = b
        .refused(
            "message:edit",
            json!({"messageId": m["id"], "content": "bob's words"}),
        )
        .await;
    assert_eq!(edit, "forbidden");
    let delete = b
        .refused("message:delete", json!({"messageId": m["id"]}))
        .await;
    assert_eq!(delete, "forbidden");
    let read = read_message(&app, &ann, chat, &m["id"]).await;
    assert_eq!(read["content"], "ann's words");
    assert_eq!(read["editedAt"], Value::Null);
    assert_eq!(read["deleted"], false);
    assert_eq!(changes_stored(&app).await, 0);
    a.assert_quiet(Duration::from_millis(400), PRESENCE).await;
    // Its sender can.
    change_id(&a.edit(&m, "ann's better words").await["changeId"]);
    change_id(&a.delete(&m).await);
}

#[actix_web::test]
async fn outsiders_and_unknown_ids_get_the_same_forbidden_and_see_nothing() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let eve = app.register("eve").await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let (mut e, ready) = app.ws_ready(&eve).await;
    let m = a.send_text(chat, "m", "not for eve").await;
    received(&mut b, &m["id"]).await;

    let on_real = all_three(&mut e, &m).await;
    let on_none = all_three(&mut e, &json!({"id": 99_999_999u64})).await;
    for (real, none) in on_real.iter().zip(on_none.iter()) {
        assert_eq!(real["code"], "forbidden", "{real}");
        assert_eq!(
            real, none,
            "an existing message of another chat reads as no message"
        );
    }
    // Ids that are not ids are bad data, not a probe.
    for bad in [
        json!(-1),
        json!("1"),
        json!(1.5),
        json!(u64::MAX),
        Value::Null,
    ] {
        let code = e.refused("message:delete", json!({"messageId": bad})).await;
        assert!(
            code == "invalid_data" || code == "forbidden",
            "{bad}: {code}"
        );
    }
    // A member on an unknown id gets the same answer too.
    assert_eq!(
        all_three(&mut a, &json!({"id": 99_999_999u64})).await,
        on_none
    );
    let read = read_message(&app, &bob, chat, &m["id"]).await;
    assert_eq!(read["content"], "not for eve");
    assert_eq!(read["reactions"], json!([]));
    assert_eq!(changes_stored(&app).await, 0);
    b.assert_quiet(Duration::from_millis(400), PRESENCE).await;

    // Ann's changes never reach Eve, live or by sync, nor her cursor.
    assert_eq!(ready["data"]["lastChange"], 0);
    change_id(&a.edit(&m, "still not for eve").await["changeId"]);
    change_id(&b.react(&m, "👍", true).await);
    e.assert_quiet(Duration::from_millis(500), PRESENCE).await;
    let (frames, acks) = sync_all(&mut e, 0, Some(0)).await;
    assert!(frames.is_empty(), "eve's sync replays nothing: {frames:?}");
    assert_eq!(acks[0]["changes"], 0);
    assert_eq!(acks[0]["lastChange"], 0, "{acks:?}");
    let (_, ready) = app.ws_ready(&eve).await;
    assert_eq!(ready["data"]["lastChange"], 0, "{ready}");
}

#[actix_web::test]
async fn a_member_who_left_a_group_can_no_longer_react_edit_or_delete() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, .. } = app.ann_bob().await;
    let cat = app.register("cat").await;
    let group = app.group_chat(&ann, &[&bob, &cat]).await;
    let mut a = app.ws(&ann).await;
    let mut c = app.ws(&cat).await;
    let hers = a.send_text(group, "g", "group talk").await;
    let own = c.send_text(group, "c", "cat's own").await;
    change_id(&c.react(&hers, "👍", true).await);

    let res = app
        .http
        .delete(app.url(&format!("/api/chats/{group}/members/me")))
        .bearer_auth(&cat.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let before = changes_stored(&app).await;
    let refusals = [
        (
            "message:react",
            json!({"messageId": hers["id"], "emoji": "❤️", "active": true}),
        ),
        (
            "message:react",
            json!({"messageId": hers["id"], "emoji": "👍", "active": false}),
        ),
        (
            "message:edit",
            json!({"messageId": own["id"], "content": "edited after leaving"}),
        ),
        ("message:delete", json!({"messageId": own["id"]})),
    ];
    for (event, data) in refusals {
        assert_eq!(
            c.refused(event, data.clone()).await,
            "forbidden",
            "{event} {data}"
        );
    }
    assert_eq!(changes_stored(&app).await, before);
    let read = read_message(&app, &ann, group, &hers["id"]).await;
    assert_eq!(
        read["reactions"],
        json!([{"emoji": "👍", "count": 1, "userIds": [cat.id]}])
    );
    let read = read_message(&app, &ann, group, &own["id"]).await;
    assert_eq!(read["content"], "cat's own");
    assert_eq!(read["deleted"], false);

    // What the group does from now on reaches her neither live nor by sync, nor her cursor.
    let later = change_id(&a.edit(&hers, "after cat left").await["changeId"]);
    change_id(&a.react(&hers, "🎉", true).await);
    c.assert_quiet(Duration::from_millis(500), PRESENCE).await;
    let (frames, acks) = sync_all(&mut c, 0, Some(0)).await;
    assert!(
        !frames
            .iter()
            .any(|f| f["data"]["changeId"].as_u64().is_some_and(|id| id >= later)),
        "no change made after she left: {frames:?}"
    );
    assert!(
        !frames
            .iter()
            .any(|f| f.to_string().contains("after cat left")),
        "{frames:?}"
    );
    assert!(
        acks.last().unwrap()["lastChange"].as_u64().unwrap_or(0) < later,
        "{acks:?}"
    );
    let (_, ready) = app.ws_ready(&cat).await;
    assert!(
        ready["data"]["lastChange"].as_u64().unwrap() < later,
        "{ready}"
    );
}

#[actix_web::test]
async fn what_waits_for_an_offline_recipient_is_pushed_as_it_is_now() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let gone = a.send_text(chat, "g", "sent in haste").await;
    let fixed = a.send_text(chat, "f", "teh typo").await;
    change_id(&a.delete(&gone).await);
    let edit = a.edit(&fixed, "the typo").await;
    change_id(&edit["changeId"]);
    // Bob was never connected: both wait for him, and come as they are now.
    let (b, ready) = app.ws_ready(&bob).await;
    let mut b = b;
    assert_eq!(ready["data"]["lastChange"], edit["changeId"]);
    let mut pushed = Vec::new();
    while let Some(Ok(v)) = b.next_within(Duration::from_millis(300)).await {
        pushed.push(v);
    }
    assert!(
        !pushed
            .iter()
            .any(|f| f.to_string().contains("haste") || f.to_string().contains("teh")),
        "nothing of what was deleted or edited away: {pushed:?}"
    );
    let find = |id: &Value| {
        pushed
            .iter()
            .find(|f| f["event"] == "message:received" && f["data"]["id"] == *id)
            .map(|f| f["data"].clone())
    };
    if let Some(m) = find(&gone["id"]) {
        assert_eq!(m, deleted_shape(&gone));
    }
    let m = find(&fixed["id"]).expect("the edited message is pushed");
    assert_eq!(m["content"], "the typo");
    assert_eq!(m["editedAt"], edit["message"]["editedAt"]);
}

#[actix_web::test]
async fn voice_and_call_messages_cannot_be_edited() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let up: Value = upload_audio(
        &app.http,
        &app.url("/api/messages/upload-audio"),
        &ann.token,
        audio_form(chat, webm(2000), "v.webm"),
    )
    .await
    .json()
    .await
    .unwrap();
    let voice = a
        .acked(
            "message:send",
            json!({"chatId": chat, "clientId": "v", "kind": "audio", "audioId": up["audioId"]}),
        )
        .await;
    assert_eq!(voice["kind"], "audio");
    // A call Bob rejects leaves a call message from its caller, Ann.
    a.acked(
        "call:initiate",
        json!({"callId": "c1", "chatId": chat, "video": false, "sdp": {"type": "offer", "sdp": "v=0"}}),
    )
    .await;
    b.wait_for("call:incoming").await;
    b.acked("call:reject", json!({"callId": "c1"})).await;
    let call = loop {
        let m = a.wait_for("message:received").await;
        if m["data"]["kind"] == "call" {
            break m["data"].clone();
        }
    };
    assert_eq!(call["senderId"], ann.id);
    for m in [&voice, &call] {
        let code = a
            .refused(
                "message:edit",
                json!({"messageId": m["id"], "content": "now it is text"}),
            )
            .await;
        assert_eq!(code, "invalid_data", "{}", m["kind"]);
        let read = read_message(&app, &ann, chat, &m["id"]).await;
        assert_eq!(read["kind"], m["kind"]);
        assert_eq!(read["editedAt"], Value::Null);
    }
    assert_eq!(changes_stored(&app).await, 0);
    // A text message of hers she can.
    let text = a.send_text(chat, "t", "txet").await;
    change_id(&a.edit(&text, "text").await["changeId"]);
}

#[actix_web::test]
async fn an_edit_after_the_window_is_refused() {
    let app = spawn_app_with(|s| s.messages.edit_window_secs = 1).await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let m = a.send_text(chat, "m", "frist").await;
    change_id(&a.edit(&m, "first").await["changeId"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let code = a
        .refused(
            "message:edit",
            json!({"messageId": m["id"], "content": "first!"}),
        )
        .await;
    assert_eq!(code, "edit_window_closed");
    assert_eq!(
        read_message(&app, &ann, chat, &m["id"]).await["content"],
        "first"
    );
    assert_eq!(changes_stored(&app).await, 1);
}

#[actix_web::test]
async fn a_deleted_message_can_be_neither_edited_nor_reacted_to() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let m = a.send_text(chat, "m", "soon gone").await;
    change_id(&b.react(&m, "👍", true).await);
    change_id(&a.delete(&m).await);
    let cases = [
        (
            &mut a,
            "message:edit",
            json!({"messageId": m["id"], "content": "back"}),
        ),
        (
            &mut b,
            "message:react",
            json!({"messageId": m["id"], "emoji": "❤️", "active": true}),
        ),
    ];
    for (c, event, data) in cases {
        assert_eq!(c.refused(event, data).await, "message_deleted", "{event}");
    }
    let code = b
        .refused(
            "message:react",
            json!({"messageId": m["id"], "emoji": "👍", "active": false}),
        )
        .await;
    assert_eq!(code, "message_deleted", "removing a reaction from it");
    assert_eq!(changes_stored(&app).await, 2, "the reaction and the delete");
    assert_eq!(
        read_message(&app, &bob, chat, &m["id"]).await,
        deleted_shape(&m)
    );
    // Content checks still hold for a message that is there.
    let live = a.send_text(chat, "l", "here").await;
    for (content, why) in [
        (json!("   "), "blank"),
        (json!(7), "not a string"),
        (Value::Null, "null"),
    ] {
        let code = a
            .refused(
                "message:edit",
                json!({"messageId": live["id"], "content": content}),
            )
            .await;
        assert_eq!(code, "invalid_data", "{why}");
    }
    let reply = a
        .request(
            "message:edit",
            json!({"messageId": live["id"], "content": "x".repeat(10_001)}),
        )
        .await;
    assert_eq!(
        reply["event"], "error",
        "an edit over the length limit: {reply}"
    );
    assert_eq!(
        read_message(&app, &ann, chat, &live["id"]).await["content"],
        "here"
    );
}

/// The caller's stored voice-message bytes, from `GET /api/media/usage`.
async fn usage(app: &TestApp, token: &str) -> u64 {
    let v: Value = app
        .get_auth("/api/media/usage", token)
        .await
        .json()
        .await
        .unwrap();
    v["storageUsedBytes"].as_u64().expect("storageUsedBytes")
}

struct Keys {
    private: PrivateKey,
    public: PublicKey,
}

fn keys() -> Keys {
    let private = PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let public = private.to_public_key();
    Keys { private, public }
}

#[actix_web::test]
async fn an_encrypted_message_is_edited_with_a_new_envelope_and_only_so() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let (ka, kb) = (keys(), keys());
    let seal = |text: &str| {
        e2ee::encrypt(
            text,
            ChatId(chat),
            UserId(ann.id),
            "enc",
            &[(UserId(ann.id), &ka.public), (UserId(bob.id), &kb.public)],
        )
        .unwrap()
    };
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let sealed = a
        .acked(
            "message:send",
            json!({"chatId": chat, "clientId": "enc", "kind": "text", "content": "",
                   "encrypted": true, "e2ee": seal("first secret")}),
        )
        .await;
    let plain = a.send_text(chat, "plain", "in the clear").await;

    let mut short_iv = seal("second secret");
    short_iv.iv = base64::engine::general_purpose::STANDARD.encode([0u8; 8]);
    let mut missing_member = seal("second secret");
    missing_member.keys.remove(&bob.id.to_string());
    let cases = [
        (
            json!({"messageId": sealed["id"], "content": "second secret"}),
            "invalid_data",
            "plaintext for an encrypted message",
        ),
        (
            json!({"messageId": sealed["id"], "e2ee": short_iv}),
            "invalid_envelope",
            "short IV",
        ),
        (
            json!({"messageId": sealed["id"], "e2ee": missing_member}),
            "invalid_envelope",
            "a member's key missing",
        ),
        (
            json!({"messageId": sealed["id"], "e2ee": {"v": 1}}),
            "invalid_envelope",
            "half an envelope",
        ),
        (
            json!({"messageId": plain["id"], "e2ee": seal("x")}),
            "invalid_data",
            "an envelope for a plaintext message",
        ),
    ];
    for (data, code, why) in cases {
        assert_eq!(a.refused("message:edit", data).await, code, "{why}");
    }
    assert_eq!(changes_stored(&app).await, 0);

    let ack = a
        .acked(
            "message:edit",
            json!({"messageId": sealed["id"], "e2ee": seal("second secret")}),
        )
        .await;
    change_id(&ack["changeId"]);
    let ev = event_for(&mut b, "message:edited", &sealed["id"]).await;
    let m = &ev["message"];
    assert_eq!(m["encrypted"], true);
    assert_eq!(m["content"], "");
    assert!(m["editedAt"].is_string());
    let env: Envelope = serde_json::from_value(m["e2ee"].clone()).unwrap();
    let text = e2ee::decrypt(
        &env,
        ChatId(chat),
        UserId(ann.id),
        "enc",
        UserId(bob.id),
        &kb.private,
    )
    .unwrap();
    assert_eq!(text, "second secret");
    let mut conn = app.mysql().await;
    let stored: Option<(String, String)> = conn
        .query_first(format!(
            "SELECT content, e2ee FROM messages WHERE id = {}",
            sealed["id"]
        ))
        .await
        .unwrap();
    let (content, stored) = stored.unwrap();
    assert_eq!(content, "");
    assert!(!stored.contains("secret"));
    // A reply to it quotes no text: the client shows its own decrypted copy.
    let reply = b.send_reply(chat, "re", "which secret?", &sealed).await;
    assert_eq!(
        reply["replyTo"],
        json!({"id": sealed["id"], "senderId": ann.id, "kind": "text", "preview": null, "deleted": false})
    );
}

#[actix_web::test]
async fn deleting_a_voice_message_removes_its_file_and_frees_the_quota() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let dir = app.settings.storage.uploads_dir.join("audio");
    let res = upload_audio(
        &app.http,
        &app.url("/api/messages/upload-audio"),
        &ann.token,
        audio_form(chat, webm(5000), "v.webm"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let up: Value = res.json().await.unwrap();
    assert_eq!(files_in(&dir).len(), 1);
    assert_eq!(usage(&app, &ann.token).await, 5000);
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let voice = a
        .acked(
            "message:send",
            json!({"chatId": chat, "clientId": "v", "kind": "audio", "audioId": up["audioId"]}),
        )
        .await;
    received(&mut b, &voice["id"]).await;
    let url = app.url(up["url"].as_str().unwrap());
    let res = app
        .http
        .get(&url)
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    change_id(&a.delete(&voice).await);
    event_for(&mut b, "message:deleted", &voice["id"]).await;
    assert_eq!(
        files_in(&dir),
        Vec::<String>::new(),
        "the file is gone from disk"
    );
    // Not served any more: the same answer as for an id that never existed (the
    // row is gone, so the server cannot tell them apart; today that is 403).
    let never = app.url("/api/media/audio/424242");
    for token in [&ann.token, &bob.token] {
        let res = app.http.get(&url).bearer_auth(token).send().await.unwrap();
        let status = res.status();
        assert!(status.is_client_error(), "{status}");
        let body: Value = res.json().await.unwrap();
        let res = app
            .http
            .get(&never)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(status, res.status(), "as an unknown id");
        assert_eq!(body, res.json::<Value>().await.unwrap(), "as an unknown id");
    }
    assert_eq!(usage(&app, &ann.token).await, 0, "the quota is free again");
    assert_eq!(
        read_message(&app, &bob, chat, &voice["id"]).await,
        deleted_shape(&voice)
    );
}

#[actix_web::test]
async fn a_flood_of_changes_is_rate_limited_per_session_and_others_go_on() {
    let app = spawn_app_with(|s| {
        s.limits.ws_events_per_sec = 1;
        s.limits.ws_events_burst = 5;
    })
    .await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let m = a.send_text(chat, "m", "flood me").await;
    // 40 frames at once, reactions toggling and edits.
    for i in 0..40 {
        let data = if i % 3 == 2 {
            json!({"event": "message:edit", "ref": format!("f{i}"), "data": {"messageId": m["id"], "content": format!("edit {i}")}})
        } else {
            json!({"event": "message:react", "ref": format!("f{i}"), "data": {"messageId": m["id"], "emoji": "👍", "active": i % 2 == 0}})
        };
        a.send(data);
    }
    // Meanwhile Bob's session is not starved.
    assert_ne!(b.react(&m, "❤️", true).await, Value::Null);
    b.send_text(chat, "b", "still here").await;

    // Refusals may overtake the acks of what is being stored: match replies by ref.
    let mut replies = std::collections::BTreeMap::new();
    let mut pending = std::mem::take(&mut a.skipped);
    pending.reverse();
    while replies.len() < 40 {
        let v = match pending.pop() {
            Some(v) => v,
            None => a.next().await,
        };
        if let Some(i) = v["ref"].as_str().and_then(|r| r.strip_prefix('f')) {
            replies.insert(i.parse::<usize>().unwrap(), v);
        }
    }
    let (mut limited, mut changed, mut last_edit) = (0, 0u64, None);
    for (i, reply) in &replies {
        if reply["event"] == "error" {
            assert_eq!(reply["data"]["code"], "rate_limited", "{reply}");
            limited += 1;
        } else {
            assert_eq!(reply["event"], "ack", "{reply}");
            changed += u64::from(reply["data"]["changeId"].is_u64());
            if i % 3 == 2 {
                last_edit = Some(format!("edit {i}"));
            }
        }
    }
    assert!(
        limited >= 30,
        "most of the flood is refused: {limited} of 40"
    );
    assert_eq!(
        changes_stored(&app).await,
        changed + 1,
        "exactly the acknowledged changes (and bob's) are stored"
    );
    let read = read_message(&app, &bob, chat, &m["id"]).await;
    let expected = last_edit.unwrap_or_else(|| "flood me".to_string());
    assert_eq!(read["content"], expected.as_str());
}
