//! Issue 17's events across two nodes: a reply, an edit, a delete for everyone and
//! reactions, each seen by every other session of every member (ann on node 1 and 2,
//! bob on node 2 and 1) and by the history read over HTTP.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use crate::helpers::{two_nodes, AnnBob, Redis, TestApp, TestUser, WsClient};

/// Ann and Bob, each with one session on each node, and their direct chat.
struct Scene {
    n1: TestApp,
    n2: TestApp,
    ann: TestUser,
    bob: TestUser,
    chat: u64,
    /// Ann on node 1, ann on node 2, bob on node 1, bob on node 2.
    a1: WsClient,
    a2: WsClient,
    b1: WsClient,
    b2: WsClient,
    /// Stops Redis when dropped: a test keeps it bound (`_redis`), not `..`.
    _redis: Redis,
}

async fn scene() -> Scene {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let a1 = n1.ws(&ann).await;
    let a2 = n2.ws(&ann).await;
    let b1 = n1.ws(&bob).await;
    let b2 = n2.ws(&bob).await;
    Scene {
        n1,
        n2,
        ann,
        bob,
        chat,
        a1,
        a2,
        b1,
        b2,
        _redis: redis,
    }
}

/// Waits until `c` has received the message `id` (`message:received`), dropping others.
pub(crate) async fn received(c: &mut WsClient, id: &Value) -> Value {
    loop {
        let m = c.wait_for("message:received").await;
        if m["data"]["id"] == *id {
            return m["data"].clone();
        }
    }
}

/// The next `event` frame's data on `c` that concerns message `id`.
pub(crate) async fn event_for(c: &mut WsClient, event: &str, id: &Value) -> Value {
    loop {
        let v = c.wait_for(event).await;
        let data = &v["data"];
        let about = if data["messageId"].is_null() {
            &data["message"]["id"]
        } else {
            &data["messageId"]
        };
        if about == id {
            return data.clone();
        }
    }
}

/// The chat's history as `user` reads it over HTTP (newest first, up to 100).
pub(crate) async fn history(app: &TestApp, user: &TestUser, chat: u64) -> Vec<Value> {
    let res = app
        .get_auth(
            &format!("/api/messages?chatId={chat}&limit=100"),
            &user.token,
        )
        .await;
    assert!(res.status().is_success(), "history: {}", res.status());
    let page: Value = res.json().await.unwrap();
    page["messages"].as_array().expect("messages").clone()
}

/// Message `id` in the history as `user` reads it.
pub(crate) async fn read_message(app: &TestApp, user: &TestUser, chat: u64, id: &Value) -> Value {
    history(app, user, chat)
        .await
        .into_iter()
        .find(|m| m["id"] == *id)
        .unwrap_or_else(|| panic!("message {id} is in the history"))
}

/// What a message deleted for everyone is, wherever it is read: exactly these keys.
pub(crate) fn deleted_shape(original: &Value) -> Value {
    json!({
        "id": original["id"],
        "chatId": original["chatId"],
        "senderId": original["senderId"],
        "deleted": true,
        "createdAt": original["createdAt"],
    })
}

/// A positive change id, or the test fails.
pub(crate) fn change_id(v: &Value) -> u64 {
    v.as_u64()
        .filter(|c| *c > 0)
        .unwrap_or_else(|| panic!("a change id: {v}"))
}

/// Sends `sync` (repeating while `hasMore`) and returns every frame before each ack,
/// and the acks.
pub(crate) async fn sync_all(
    c: &mut WsClient,
    after_id: u64,
    after_change: Option<u64>,
) -> (Vec<Value>, Vec<Value>) {
    let (mut frames, mut acks) = (Vec::new(), Vec::new());
    let (mut after_id, mut after_change) = (after_id, after_change);
    for round in 0.. {
        assert!(round < 50, "sync never ends");
        let reference = format!("sync-{round}-{after_id}-{after_change:?}");
        let mut data = json!({"afterId": after_id});
        if let Some(ch) = after_change {
            data["afterChange"] = json!(ch);
        }
        c.send(json!({"event": "sync", "ref": reference, "data": data}));
        let ack = loop {
            let v = c.next().await;
            if v["ref"] == reference.as_str() {
                break v;
            }
            frames.push(v);
        };
        assert_eq!(ack["event"], "ack", "sync: {ack}");
        let d = ack["data"].clone();
        acks.push(d.clone());
        if d["hasMore"] != true {
            break;
        }
        if let Some(id) = d["lastId"].as_u64() {
            after_id = id;
        }
        if after_change.is_some() {
            after_change = d["lastChange"].as_u64().or(after_change);
        }
    }
    (frames, acks)
}

/// Presence frames that may come at any time in these tests.
const PRESENCE: &[&str] = &["user:online", "user:offline"];

#[actix_web::test]
async fn a_reply_carries_its_original_to_every_session_on_both_nodes() {
    let Scene {
        n2,
        ann,
        bob,
        chat,
        mut a1,
        mut a2,
        mut b1,
        mut b2,
        n1,
        _redis,
    } = scene().await;
    // 200 characters, 300 bytes: the preview is the first 120 characters, not bytes.
    let text = format!("{}{}", "é".repeat(100), "x".repeat(100));
    let original = a1.send_text(chat, "orig", &text).await;
    assert_eq!(original["replyTo"], Value::Null, "{original}");
    assert_eq!(original["editedAt"], Value::Null, "{original}");
    assert_eq!(original["deleted"], false, "{original}");
    assert_eq!(original["reactions"], json!([]), "{original}");

    let reply = b2.send_reply(chat, "re", "answer", &original).await;
    let quoted = json!({
        "id": original["id"],
        "senderId": ann.id,
        "kind": "text",
        "preview": format!("{}{}", "é".repeat(100), "x".repeat(20)),
        "deleted": false,
    });
    assert_eq!(reply["replyTo"], quoted, "the ack: {reply}");
    for c in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(received(c, &reply["id"]).await["replyTo"], quoted);
    }
    for (node, user) in [(&n1, &ann), (&n2, &bob)] {
        let read = read_message(node, user, chat, &reply["id"]).await;
        assert_eq!(read["replyTo"], quoted, "history: {read}");
    }
    // A short original is quoted whole.
    let short = a2.send_text(chat, "short", "ok").await;
    let r2 = a1.send_reply(chat, "re2", "fine", &short).await;
    assert_eq!(r2["replyTo"]["preview"], "ok");
    assert_eq!(r2["replyTo"]["senderId"], ann.id);
}

#[actix_web::test]
async fn a_reply_must_name_a_message_of_the_same_chat_and_nothing_is_stored_otherwise() {
    let s = scene().await;
    let (mut a1, mut b2) = (s.a1, s.b2);
    let cat = s.n1.register("cat").await;
    let other = s.n1.direct_chat(&s.ann, &cat).await;
    let elsewhere = a1
        .send_text(other, "elsewhere", "for cat's eyes only")
        .await;
    let none = json!(99_999_999u64);
    let cases = [
        (
            true,
            "a-cross",
            &elsewhere["id"],
            "a message of another chat of hers",
        ),
        (
            false,
            "b-cross",
            &elsewhere["id"],
            "a message of a chat he is not in",
        ),
        (false, "b-none", &none, "no such message"),
    ];
    for (as_ann, client_id, to, why) in cases {
        let c = if as_ann { &mut a1 } else { &mut b2 };
        let code = c
            .refused(
                "message:send",
                json!({"chatId": s.chat, "clientId": client_id, "kind": "text",
                       "content": "re", "replyToId": to}),
            )
            .await;
        assert_eq!(code, "invalid_data", "{why}");
    }
    let code = b2
        .refused(
            "message:send",
            json!({"chatId": s.chat, "clientId": "b-str", "kind": "text",
                   "content": "re", "replyToId": "one"}),
        )
        .await;
    assert_eq!(code, "invalid_data", "a replyToId that is not an id");
    let mut conn = s.n1.mysql().await;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM messages WHERE client_id IN ('a-cross','b-cross','b-none','b-str')")
        .await
        .unwrap();
    assert_eq!(n, Some(0), "nothing of the refused replies was stored");
    // Nothing reached anyone: the direct chat has no message.
    assert!(history(&s.n2, &s.bob, s.chat).await.is_empty());
    // The same request with a message of this chat goes through.
    let here = a1.send_text(s.chat, "here", "here").await;
    let reply = b2.send_reply(s.chat, "b-ok", "re", &here).await;
    assert_eq!(reply["replyTo"]["id"], here["id"], "{reply}");
}

#[actix_web::test]
async fn an_edit_reaches_every_other_session_on_both_nodes_and_the_history() {
    let Scene {
        n1,
        n2,
        ann,
        bob,
        chat,
        mut a1,
        mut a2,
        mut b1,
        mut b2,
        _redis,
    } = scene().await;
    let original = a1.send_text(chat, "e1", "helo wrld").await;
    for c in [&mut a2, &mut b1, &mut b2] {
        received(c, &original["id"]).await;
    }
    let ack = a1.edit(&original, "hello world").await;
    let first = change_id(&ack["changeId"]);
    let edited = &ack["message"];
    assert_eq!(edited["id"], original["id"]);
    assert_eq!(edited["content"], "hello world");
    assert_eq!(edited["clientId"], original["clientId"]);
    assert_eq!(edited["createdAt"], original["createdAt"]);
    assert_eq!(edited["deleted"], false);
    let edited_at = edited["editedAt"].as_str().expect("editedAt is set");
    assert!(edited_at.ends_with('Z') && edited_at >= original["createdAt"].as_str().unwrap());
    for c in [&mut a2, &mut b1, &mut b2] {
        let ev = event_for(c, "message:edited", &original["id"]).await;
        assert_eq!(ev["changeId"], first, "{ev}");
        assert_eq!(ev["message"]["content"], "hello world", "{ev}");
        assert_eq!(ev["message"]["editedAt"], edited["editedAt"], "{ev}");
        assert_eq!(ev["message"]["chatId"], chat, "{ev}");
    }
    // The session that edited has its ack, not an event too.
    a1.assert_quiet(Duration::from_millis(500), PRESENCE).await;
    for (node, user) in [(&n1, &ann), (&n2, &bob)] {
        let read = read_message(node, user, chat, &original["id"]).await;
        assert_eq!(read["content"], "hello world");
        assert_eq!(read["editedAt"], edited["editedAt"]);
    }
    // A second edit from her other node: a newer change, back on node 1.
    let again = a2.edit(&original, "hello, world").await;
    let second = change_id(&again["changeId"]);
    assert!(second > first, "change ids increase: {first} then {second}");
    let ev = event_for(&mut a1, "message:edited", &original["id"]).await;
    assert_eq!(ev["changeId"], second);
    assert_eq!(ev["message"]["content"], "hello, world");
    let ev = event_for(&mut b1, "message:edited", &original["id"]).await;
    assert_eq!(ev["message"]["content"], "hello, world");
    // A reply quotes the original as it reads now.
    let reply = b2.send_reply(chat, "re", "better", &original).await;
    assert_eq!(reply["replyTo"]["preview"], "hello, world");
}

#[actix_web::test]
async fn a_delete_for_everyone_empties_the_message_wherever_it_is_read() {
    let Scene {
        n1,
        n2,
        ann,
        bob,
        chat,
        mut a1,
        mut a2,
        mut b1,
        mut b2,
        _redis,
    } = scene().await;
    let doomed = a1.send_text(chat, "d1", "the secret plans").await;
    let reply = b2.send_reply(chat, "d2", "what plans?", &doomed).await;
    change_id(&b2.react(&doomed, "👍", true).await);
    for c in [&mut a2, &mut b1] {
        received(c, &reply["id"]).await;
    }

    let cid = change_id(&a1.delete(&doomed).await);
    let expected = json!({"chatId": chat, "messageId": doomed["id"], "changeId": cid});
    for c in [&mut a2, &mut b1, &mut b2] {
        assert_eq!(
            event_for(c, "message:deleted", &doomed["id"]).await,
            expected
        );
    }
    // History on both nodes, for both: only {id, chatId, senderId, deleted, createdAt}.
    for (node, user) in [(&n1, &ann), (&n2, &bob)] {
        let page = history(node, user, chat).await;
        let read = page.iter().find(|m| m["id"] == doomed["id"]).unwrap();
        assert_eq!(*read, deleted_shape(&doomed), "history");
        let quoting = page.iter().find(|m| m["id"] == reply["id"]).unwrap();
        let quoted = &quoting["replyTo"];
        assert_eq!(quoted["id"], doomed["id"], "{quoting}");
        assert_eq!(quoted["senderId"], ann.id, "{quoting}");
        assert_eq!(quoted["deleted"], true, "{quoting}");
        assert_eq!(quoted["preview"], Value::Null, "{quoting}");
        assert_eq!(quoting["content"], "what plans?", "the reply itself stays");
    }
    // sync from the start: the message is replayed deleted, then the delete itself.
    let (frames, _) = sync_all(&mut b1, 0, Some(0)).await;
    let replayed = frames
        .iter()
        .find(|f| f["event"] == "message:received" && f["data"]["id"] == doomed["id"])
        .expect("sync replays the message");
    assert_eq!(replayed["data"], deleted_shape(&doomed), "sync");
    assert!(
        frames
            .iter()
            .any(|f| f["event"] == "message:deleted" && f["data"] == expected),
        "sync replays the delete: {frames:?}"
    );
    assert!(
        !frames
            .iter()
            .any(|f| f.to_string().contains("secret plans")),
        "nothing of the content is replayed: {frames:?}"
    );
    // The content, its search text and its reactions are gone from the database.
    let mut conn = n1.mysql().await;
    let row: Option<(String, Option<String>, u64)> = conn
        .query_first(format!(
            "SELECT content, e2ee, (SELECT COUNT(*) FROM message_search WHERE message_id = m.id) \
             FROM messages m WHERE id = {}",
            doomed["id"]
        ))
        .await
        .unwrap();
    let (content, e2ee, search_rows) = row.expect("the row keeps its id and place");
    assert_eq!((content.as_str(), e2ee, search_rows), ("", None, 0));
    let n: Option<u64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM message_reactions WHERE message_id = {}",
            doomed["id"]
        ))
        .await
        .unwrap();
    assert_eq!(n, Some(0), "its reactions are gone");

    // The chat list's lastMessage, when the newest message is the deleted one.
    let last = a2.send_text(chat, "d3", "last words").await;
    received(&mut b2, &last["id"]).await;
    change_id(&a2.delete(&last).await);
    event_for(&mut b2, "message:deleted", &last["id"]).await;
    event_for(&mut b1, "message:deleted", &last["id"]).await;
    let chats: Value = n2
        .get_auth("/api/chats", &bob.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(chats["chats"][0]["lastMessage"], deleted_shape(&last));
    // Deleting it again changes nothing and tells nobody.
    assert_eq!(a1.delete(&last).await, Value::Null);
    b1.assert_quiet(Duration::from_millis(500), PRESENCE).await;
}

#[actix_web::test]
async fn reactions_reach_every_other_session_with_their_counts_and_show_in_the_history() {
    let Scene {
        n1,
        n2,
        ann,
        bob,
        chat,
        mut a1,
        mut a2,
        mut b1,
        mut b2,
        _redis,
    } = scene().await;
    let m = a1.send_text(chat, "x1", "react to me").await;
    for c in [&mut a2, &mut b1, &mut b2] {
        received(c, &m["id"]).await;
    }
    let reaction = |user: &TestUser, emoji: &str, active: bool, count: u64, change: u64| {
        json!({"chatId": chat, "messageId": m["id"], "userId": user.id, "emoji": emoji,
               "active": active, "count": count, "changeId": change})
    };

    let c1 = change_id(&b2.react(&m, "👍", true).await);
    for c in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(
            event_for(c, "message:reaction", &m["id"]).await,
            reaction(&bob, "👍", true, 1, c1)
        );
    }
    let c2 = change_id(&a1.react(&m, "👍", true).await);
    for c in [&mut a2, &mut b1, &mut b2] {
        assert_eq!(
            event_for(c, "message:reaction", &m["id"]).await,
            reaction(&ann, "👍", true, 2, c2)
        );
    }
    let c3 = change_id(&a2.react(&m, "❤️", true).await);
    for c in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(
            event_for(c, "message:reaction", &m["id"]).await,
            reaction(&ann, "❤️", true, 1, c3)
        );
    }
    assert!(c1 < c2 && c2 < c3, "{c1} {c2} {c3}");
    let both = json!([
        {"emoji": "👍", "count": 2, "userIds": [bob.id, ann.id]},
        {"emoji": "❤️", "count": 1, "userIds": [ann.id]},
    ]);
    for (node, user) in [(&n1, &ann), (&n2, &bob)] {
        assert_eq!(
            read_message(node, user, chat, &m["id"]).await["reactions"],
            both
        );
    }

    // Again: nothing changes, no change id, nobody hears of it.
    assert_eq!(b1.react(&m, "👍", true).await, Value::Null);
    a1.assert_quiet(Duration::from_millis(500), PRESENCE).await;

    let c4 = change_id(&b1.react(&m, "👍", false).await);
    assert!(c4 > c3);
    for c in [&mut a1, &mut a2, &mut b2] {
        assert_eq!(
            event_for(c, "message:reaction", &m["id"]).await,
            reaction(&bob, "👍", false, 1, c4)
        );
    }
    assert_eq!(
        b2.react(&m, "👍", false).await,
        Value::Null,
        "not there to remove"
    );
    let c5 = change_id(&a1.react(&m, "❤️", false).await);
    assert_eq!(
        event_for(&mut b1, "message:reaction", &m["id"]).await,
        reaction(&ann, "❤️", false, 0, c5)
    );
    let left = json!([{"emoji": "👍", "count": 1, "userIds": [ann.id]}]);
    for (node, user) in [(&n1, &ann), (&n2, &bob)] {
        assert_eq!(
            read_message(node, user, chat, &m["id"]).await["reactions"],
            left
        );
    }
}
