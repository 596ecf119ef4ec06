use std::collections::HashMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{assert_error, spawn_app, spawn_app_with, AnnBob, WsClient};

#[actix_web::test]
async fn two_users_exchange_messages_both_ways() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;

    let stored = a.send_text(chat, "a-1", "hi bob").await;
    assert_eq!(stored["content"], "hi bob");
    assert_eq!(stored["senderId"], ann.id);
    assert_eq!(stored["chatId"], chat);
    assert_eq!(stored["clientId"], "a-1");
    assert_eq!(stored["kind"], "text");
    assert_eq!(stored["status"], "sent");
    assert_eq!(stored["encrypted"], false);
    assert!(stored["createdAt"].as_str().unwrap().ends_with('Z'));
    let got = b.wait_for("message:received").await;
    assert_eq!(got["data"], stored, "the recipient gets the stored message");

    let reply = b.send_text(chat, "b-1", "hi ann").await;
    let got = a.wait_for("message:received").await;
    assert_eq!(got["data"]["id"], reply["id"]);
    assert_eq!(got["data"]["content"], "hi ann");

    let mut conn = app.mysql().await;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM messages")
        .await
        .unwrap();
    assert_eq!(n, Some(2));
}

#[actix_web::test]
async fn an_outsider_can_neither_send_nor_receive_nor_see_presence() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let eve = app.register("eve").await;
    let mut e = app.ws(&eve).await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    // Ann sees Bob come online; Eve sees nothing of either.
    e.send(json!({"event": "message:send", "ref": "x", "data": {"chatId": chat, "clientId": "e1", "kind": "text", "content": "let me in"}}));
    let reply = e.reply_to("x").await;
    assert_eq!(reply["event"], "error");
    assert_eq!(reply["data"]["code"], "forbidden");
    e.send(json!({"event": "typing", "ref": "t", "data": {"chatId": chat, "active": true}}));
    assert_eq!(e.reply_to("t").await["data"]["code"], "forbidden");
    e.send(json!({"event": "message:read", "ref": "r", "data": {"chatId": chat, "messageId": 1}}));
    assert_eq!(e.reply_to("r").await["data"]["code"], "forbidden");

    a.send_text(chat, "a1", "private").await;
    b.wait_for("message:received").await;
    e.assert_quiet(Duration::from_millis(500), &[]).await;
    b.close();
    a.wait_for("user:offline").await;
    e.assert_quiet(Duration::from_millis(300), &[]).await;
    let mut conn = app.mysql().await;
    let n: Option<u64> = conn
        .query_first(
            "SELECT COUNT(*) FROM messages WHERE sender_id = ?"
                .to_string()
                .replace('?', &eve.id.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(n, Some(0), "nothing of eve's was stored");
}

#[actix_web::test]
async fn the_same_client_id_twice_stores_one_message() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let first = a.send_text(chat, "dup-1", "once").await;
    let second = a.send_text(chat, "dup-1", "once").await;
    assert_eq!(first["id"], second["id"]);
    // A retry from another connection (the same person reconnected) is the same message too.
    let mut a2 = app.ws(&ann).await;
    let third = a2.send_text(chat, "dup-1", "once").await;
    assert_eq!(first["id"], third["id"]);
    b.wait_for("message:received").await;
    b.assert_quiet(Duration::from_millis(400), &["user:online"])
        .await;
    let mut conn = app.mysql().await;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM messages")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
}

#[actix_web::test]
async fn delivery_and_read_receipts_reach_the_sender() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let m1 = a.send_text(chat, "r1", "one").await;
    let m2 = a.send_text(chat, "r2", "two").await;
    b.wait_for("message:received").await;
    b.wait_for("message:received").await;

    b.send(json!({"event": "message:delivered", "ref": "d", "data": {"messageIds": [m1["id"], m2["id"]]}}));
    assert_eq!(b.reply_to("d").await["data"]["count"], 2);
    let d = a.wait_for("message:delivered").await;
    assert_eq!(d["data"]["chatId"], chat);
    assert_eq!(d["data"]["userId"], bob.id);
    assert_eq!(d["data"]["messageIds"], json!([m1["id"], m2["id"]]));
    // Delivering again sends nothing new; the single-id shape works too.
    b.send(json!({"event": "message:delivered", "ref": "d2", "data": {"messageId": m1["id"]}}));
    assert_eq!(b.reply_to("d2").await["data"]["count"], 0);

    b.send(json!({"event": "message:read", "ref": "rd", "data": {"chatId": chat, "messageId": m2["id"]}}));
    assert_eq!(b.reply_to("rd").await["event"], "ack");
    let r = a.wait_for("message:read").await;
    assert_eq!(r["data"]["messageId"], m2["id"]);
    assert_eq!(r["data"]["userId"], bob.id);

    let page: Value = app
        .get_auth(&format!("/api/messages?chatId={chat}"), &ann.token)
        .await
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["read", "read"]);
    let page: Value = app
        .get_auth("/api/chats", &bob.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["chats"][0]["unreadCount"], 0);
}

#[actix_web::test]
async fn messages_sent_while_offline_arrive_on_connect_in_order_exactly_once() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            a.send_text(chat, &format!("off{i}"), &format!("while away {i}"))
                .await["id"]
                .clone(),
        );
    }
    let mut b = app.ws(&bob).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(b.wait_for("message:received").await["data"]["id"].clone());
    }
    assert_eq!(got, ids);
    b.assert_quiet(Duration::from_millis(500), &[]).await;
    // Acknowledged now: a new connection gets nothing again.
    b.send(json!({"event": "message:delivered", "ref": "d", "data": {"messageIds": got}}));
    b.reply_to("d").await;
    let mut b2 = app.ws(&bob).await;
    b2.assert_quiet(Duration::from_millis(500), &[]).await;
}

#[actix_web::test]
async fn a_second_tab_and_the_senders_other_devices_receive_too() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a1 = app.ws(&ann).await;
    let mut a2 = app.ws(&ann).await;
    let mut b1 = app.ws(&bob).await;
    let mut b2 = app.ws(&bob).await;
    let m = a1.send_text(chat, "t1", "to every tab").await;
    for c in [&mut b1, &mut b2, &mut a2] {
        assert_eq!(c.wait_for("message:received").await["data"]["id"], m["id"]);
    }
    a1.assert_quiet(Duration::from_millis(300), &["user:online"])
        .await;
}

#[actix_web::test]
async fn user_offline_comes_only_after_the_last_tab_closes() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, .. } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let b1 = app.ws(&bob).await;
    let on = a.wait_for("user:online").await;
    assert_eq!(on["data"]["userId"], bob.id);
    let b2 = app.ws(&bob).await;
    b1.close();
    a.assert_quiet(Duration::from_millis(700), &[]).await;
    b2.close();
    let off = a.wait_for("user:offline").await;
    assert_eq!(off["data"]["userId"], bob.id);
    let seen = off["data"]["lastSeenAt"].as_str().unwrap().to_string();
    // lastSeenAt is stored: the REST view shows the same time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let page: Value = app
        .get_auth("/api/chats", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    let bob_member = page["chats"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == bob.id)
        .unwrap()
        .clone();
    assert_eq!(bob_member["online"], false);
    assert_eq!(bob_member["lastSeenAt"], seen);
}

#[actix_web::test]
async fn typing_reaches_the_other_members() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    a.send(json!({"event": "typing", "data": {"chatId": chat, "active": true}}));
    let t = b.wait_for("typing").await;
    assert_eq!(
        t["data"],
        json!({"chatId": chat, "userId": ann.id, "active": true})
    );
}

#[actix_web::test]
async fn malformed_frames_get_an_error_and_the_connection_keeps_working() {
    let app = spawn_app().await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let cases: Vec<(WsMessage, &str, &str)> = vec![
        (WsMessage::Text("not json".into()), "bad_frame", "not JSON"),
        (WsMessage::Text(r#"{"event":"nope","data":{}}"#.into()), "unknown_event", "unknown event"),
        (WsMessage::Text(json!({"event":"message:send","data":{"chatId":"one","clientId":"c","kind":"text","content":"x"}}).to_string().into()), "invalid_data", "wrong field type"),
        (WsMessage::Text(json!({"event":"message:send","data":{"clientId":"c","kind":"text","content":"x"}}).to_string().into()), "invalid_data", "missing chatId"),
        (WsMessage::Text(json!({"event":"message:send","data":{"chatId":chat,"clientId":"c","kind":"video","content":"x"}}).to_string().into()), "invalid_data", "unknown kind"),
        (WsMessage::Text(json!({"event":"message:send","data":{"chatId":chat,"clientId":"c","kind":"text","content":"  "}}).to_string().into()), "invalid_data", "blank content"),
        (WsMessage::Text(json!({"event":"message:send","data":{"chatId":chat,"clientId":"has space","kind":"text","content":"x"}}).to_string().into()), "invalid_data", "bad client id"),
        (WsMessage::Text(json!({"event":"message:send","data":{"chatId":chat,"clientId":"c","kind":"text","content":"x".repeat(10_001)}}).to_string().into()), "too_large", "content too long"),
        (WsMessage::Text(json!({"event":"message:send","data":{"chatId":987654,"clientId":"c","kind":"text","content":"x"}}).to_string().into()), "forbidden", "no such chat (same answer as someone else's)"),
        (WsMessage::Text(format!(r#"{{"event":"ping","data":{{"pad":"{}"}}}}"#, "x".repeat(1 << 20)).into()), "too_large", "1 MiB frame"),
        (WsMessage::Binary(vec![1, 2, 3].into()), "binary_not_supported", "binary frame"),
        (WsMessage::Text(json!({"event":"message:delivered","data":{"messageIds":[]}}).to_string().into()), "invalid_data", "no ids"),
    ];
    for (frame, code, why) in cases {
        a.send_raw(frame);
        let reply = a.wait_for("error").await;
        assert_eq!(reply["data"]["code"], code, "{why}: {reply}");
        // Still alive: a ping gets its pong.
        a.send(json!({"event": "ping", "ref": why}));
        assert_eq!(a.reply_to(why).await["event"], "pong", "{why}");
    }
    // Nothing was stored by any of it, and a real message still goes through.
    let mut conn = app.mysql().await;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM messages")
        .await
        .unwrap();
    assert_eq!(n, Some(0));
    a.send_text(chat, "ok", "still here").await;
}

#[actix_web::test]
async fn the_upgrade_refuses_bad_tokens_and_foreign_origins() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    for (url, code) in [
        (format!("{}/ws", app.address), "missing_token"),
        (format!("{}/ws?token=garbage", app.address), "invalid_token"),
    ] {
        let res = app
            .http
            .get(url)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, code).await;
    }
    let res = app
        .http
        .get(format!("{}/ws?token={}", app.address, ann.token))
        .header("origin", "https://evil.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    // The same origin as the server is fine; so is the Authorization header.
    let origin = format!("http://127.0.0.1:{}", app.port);
    let bearer = format!("Bearer {}", ann.token);
    let mut s = WsClient::connect_with(
        &format!("ws://127.0.0.1:{}/ws", app.port),
        &[("origin", &origin), ("authorization", &bearer)],
    )
    .await
    .expect("same-origin upgrade");
    s.send(json!({"event": "ping", "ref": "1"}));
    assert_eq!(s.reply_to("1").await["event"], "pong");
}

#[actix_web::test]
async fn sync_returns_what_was_missed_then_acks() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let m1 = a.send_text(chat, "s1", "one").await;
    let m2 = a.send_text(chat, "s2", "two").await;
    let m3 = a.send_text(chat, "s3", "three").await;
    let mut b = app.ws(&bob).await;
    for _ in 0..3 {
        b.wait_for("message:received").await;
    }
    b.send(json!({"event": "sync", "ref": "s", "data": {"afterId": m1["id"]}}));
    let mut got = Vec::new();
    loop {
        let v = b.next().await;
        if v["ref"] == "s" {
            assert_eq!(v["event"], "ack");
            assert_eq!(v["data"]["count"], 2);
            assert_eq!(v["data"]["lastId"], m3["id"]);
            assert_eq!(v["data"]["hasMore"], false);
            break;
        }
        assert_eq!(v["event"], "message:received");
        got.push(v["data"]["id"].clone());
    }
    assert_eq!(got, vec![m2["id"].clone(), m3["id"].clone()]);
}

#[actix_web::test]
async fn a_group_chat_fans_out_to_every_member() {
    let app = spawn_app().await;
    let mut users = Vec::new();
    for n in ["ann", "bob", "cyd", "dan", "eva"] {
        users.push(app.register(n).await);
    }
    let ids: Vec<u64> = users[1..].iter().map(|u| u.id).collect();
    let res = app
        .post_auth(
            "/api/chats",
            &users[0].token,
            &json!({"title": "all", "memberIds": ids}),
        )
        .await;
    let chat = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let mut sockets = Vec::new();
    for u in &users {
        sockets.push(app.ws(u).await);
    }
    let m = sockets[0].send_text(chat, "g1", "hello all").await;
    for s in sockets[1..].iter_mut() {
        assert_eq!(s.wait_for("message:received").await["data"]["id"], m["id"]);
    }
}

#[actix_web::test]
async fn twenty_clients_pipelining_two_hundred_messages_each_lose_nothing() {
    let app = spawn_app().await;
    let hub = app.register("hub").await;
    let mut senders = Vec::new();
    for i in 0..20 {
        let u = app.register(&format!("sender{i:02}")).await;
        let chat = app.direct_chat(&u, &hub).await;
        senders.push((u, chat));
    }
    let mut hub_ws = app.ws(&hub).await;
    let mut tasks = Vec::new();
    for (u, chat) in senders.clone() {
        let ws = app.ws(&u).await;
        tasks.push(tokio::spawn(async move {
            let mut ws: WsClient = ws;
            // All 200 go out before any ack is read: pipelined.
            for n in 0..200 {
                ws.send(json!({"event": "message:send", "ref": format!("{n}"), "data": {
                    "chatId": chat, "clientId": format!("{}-{n}", u.username), "kind": "text", "content": format!("{n}")}}));
            }
            let mut acked = Vec::new();
            while acked.len() < 200 {
                let v = ws.next().await;
                if v["event"] == "ack" {
                    acked.push((v["ref"].as_str().unwrap().parse::<u32>().unwrap(), v["data"]["id"].as_u64().unwrap()));
                } else {
                    assert_ne!(v["event"], "error", "{v}");
                }
            }
            acked
        }));
    }
    let mut total = 0;
    for t in tasks {
        let acked = t.await.unwrap();
        assert_eq!(acked.len(), 200);
        let mut by_n = acked.clone();
        by_n.sort();
        assert!(
            by_n.windows(2).all(|w| w[0].1 < w[1].1),
            "ids follow the send order"
        );
        total += acked.len();
    }
    assert_eq!(total, 4000);
    // The hub received every message once, in per-sender order.
    let mut per_sender: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut received = 0;
    while received < 4000 {
        let v = hub_ws.next().await;
        if v["event"] == "message:received" {
            received += 1;
            per_sender
                .entry(v["data"]["senderId"].as_u64().unwrap())
                .or_default()
                .push(v["data"]["content"].as_str().unwrap().parse().unwrap());
        }
    }
    for (sender, ns) in &per_sender {
        assert_eq!(ns, &(0..200).collect::<Vec<u64>>(), "sender {sender}");
    }
    hub_ws
        .assert_quiet(Duration::from_millis(300), &["user:online", "user:offline"])
        .await;
    let mut conn = app.mysql().await;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM messages")
        .await
        .unwrap();
    assert_eq!(n, Some(4000));
}

#[actix_web::test]
async fn a_connection_over_the_event_rate_gets_rate_limited() {
    let app = spawn_app_with(|s| {
        s.limits.ws_events_per_sec = 1;
        s.limits.ws_events_burst = 5;
    })
    .await;
    let ann = app.register("ann").await;
    let mut a = app.ws(&ann).await;
    for i in 0..8 {
        a.send(json!({"event": "ping", "ref": format!("p{i}")}));
    }
    let mut codes = Vec::new();
    for i in 0..8 {
        let v = a.reply_to(&format!("p{i}")).await;
        codes.push(if v["event"] == "pong" {
            "pong".to_string()
        } else {
            v["data"]["code"].as_str().unwrap().to_string()
        });
    }
    assert_eq!(
        codes.iter().filter(|c| *c == "pong").count(),
        5,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| *c == "rate_limited").count(),
        3,
        "{codes:?}"
    );
}

#[actix_web::test]
async fn a_silent_client_is_disconnected_after_the_heartbeat_timeout() {
    let app = spawn_app_with(|s| {
        s.presence.ping_interval_secs = 1;
        s.presence.client_timeout_secs = 2;
    })
    .await;
    let ann = app.register("ann").await;
    // A raw socket that never answers pings (tungstenite answers them only when read).
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        app.ws_url(&ann.token),
    )
    .unwrap();
    let (stream, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    use futures_util::StreamExt;
    let mut stream = stream;
    let mut closed = false;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), stream.next()).await {
        match m {
            Ok(WsMessage::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "the server closed the silent connection");
    let me: Value = app
        .get_auth("/api/users/me", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["online"], false);
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_closed_and_loses_nothing() {
    use futures_util::StreamExt;
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    // Bob's socket is open but never read while Ann floods the chat.
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        app.ws_url(&bob.token),
    )
    .unwrap();
    let (mut stalled, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut a = app.ws(&ann).await;
    let body = "x".repeat(2000);
    let total = 12_000;
    for n in 0..total {
        a.send(
            json!({"event": "message:send", "ref": format!("{n}"), "data": {
            "chatId": chat, "clientId": format!("f{n}"), "kind": "text", "content": body}}),
        );
        if n % 500 == 499 {
            a.reply_to(&format!("{n}")).await;
        }
    }
    // Now Bob reads: what was already in flight, then the end. The server cut the
    // socket off while he was not reading (it could not even run his session), so
    // the end is a dropped connection, or a 1013 close when the session ran first.
    let mut got = 0usize;
    let mut ended = None;
    loop {
        let frame = match tokio::time::timeout(Duration::from_secs(20), stalled.next()).await {
            Err(_) => panic!("still connected 20 s later, after {got} frames"),
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        match frame {
            Ok(WsMessage::Text(_)) => got += 1,
            Ok(WsMessage::Close(c)) => {
                ended = Some(format!("close {:?}", c.map(|c| u16::from(c.code))));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                ended = Some(format!("dropped: {e}"));
                break;
            }
        }
    }
    let ended = ended.unwrap_or_else(|| "stream ended".into());
    assert!(
        ended == "close Some(1013)" || ended.starts_with("dropped") || ended == "stream ended",
        "cut off after {got} frames: {ended}"
    );
    assert!(got < total, "the server did not buffer everything: {got}");
    // Reconnecting and syncing from the start brings back every message.
    let mut b = app.ws(&bob).await;
    let mut after = 0u64;
    let mut synced = std::collections::HashSet::new();
    loop {
        b.send(json!({"event": "sync", "ref": format!("s{after}"), "data": {"afterId": after}}));
        let has_more;
        loop {
            let v = b.next().await;
            if v["ref"] == format!("s{after}") {
                has_more = v["data"]["hasMore"].as_bool().unwrap();
                if let Some(last) = v["data"]["lastId"].as_u64() {
                    after = last;
                }
                break;
            }
            if v["event"] == "message:received" && v["data"]["senderId"] == ann.id {
                synced.insert(v["data"]["clientId"].as_str().unwrap().to_string());
            }
        }
        if !has_more {
            break;
        }
    }
    assert_eq!(synced.len(), total, "every message, by its client id");
}

#[actix_web::test]
async fn a_user_over_the_session_cap_is_refused_with_a_clear_error() {
    let app = spawn_app_with(|s| s.limits.max_sessions_per_user = 2).await;
    let ann = app.register("ann").await;
    let a1 = app.ws(&ann).await;
    let _a2 = app.ws(&ann).await;
    let res = app
        .http
        .get(format!("{}/ws?token={}", app.address, ann.token))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_sessions").await;
    // Closing one makes room again.
    a1.close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.ws(&ann).await;
}
