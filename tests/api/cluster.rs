//! Two Parley nodes, one database, one (private) Redis: they behave as one server.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    spawn, test_settings, wait_until, AnnBob, Redis, TestApp, TestUser, WsClient,
};
use parley_testkit::binary::Parley;

/// Two in-process nodes sharing a fresh database and `redis`.
async fn two_nodes(redis: &Redis) -> (TestApp, TestApp) {
    let mut s1 = test_settings();
    s1.redis.url = Some(redis.url());
    s1.presence.node_ttl_secs = 3;
    let mut s2 = s1.clone();
    let n1 = spawn(s1, true).await;
    s2.storage.uploads_dir = std::env::temp_dir().join(format!(
        "parley-uploads-n2-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let n2 = spawn(s2, false).await;
    // Let both heartbeat once so each knows the other is alive.
    wait_until(Duration::from_secs(10), "both nodes ready", || async {
        let m1 = n1
            .http
            .get(n1.url("/api/ready"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        let m2 = n2
            .http
            .get(n2.url("/api/ready"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        m1 && m2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    (n1, n2)
}

#[actix_web::test]
async fn users_on_two_nodes_exchange_messages_receipts_typing_and_presence() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let mut a = n1.ws(&ann).await;
    let mut b = n2.ws(&bob).await;
    assert_eq!(
        a.wait_for("user:online").await["data"]["userId"],
        bob.id,
        "presence crosses nodes"
    );

    let m = a.send_text(chat, "x1", "from node one").await;
    assert_eq!(b.wait_for("message:received").await["data"]["id"], m["id"]);
    let r = b.send_text(chat, "y1", "from node two").await;
    assert_eq!(a.wait_for("message:received").await["data"]["id"], r["id"]);

    b.send(json!({"event": "message:delivered", "data": {"messageIds": [m["id"]]}}));
    assert_eq!(
        a.wait_for("message:delivered").await["data"]["messageIds"],
        json!([m["id"]])
    );
    b.send(json!({"event": "message:read", "data": {"chatId": chat, "messageId": m["id"]}}));
    assert_eq!(a.wait_for("message:read").await["data"]["userId"], bob.id);
    b.send(json!({"event": "typing", "data": {"chatId": chat, "active": true}}));
    assert_eq!(a.wait_for("typing").await["data"]["userId"], bob.id);
    b.close();
    let off = a.wait_for("user:offline").await;
    assert_eq!(off["data"]["userId"], bob.id);
}

/// `online` as node `n` tells `viewer` about `ann` in its three HTTP answers: her
/// own profile, the username search and the chat list.
async fn online_in_http(n: &TestApp, viewer: &TestUser, ann: &TestUser) -> [bool; 3] {
    let me: serde_json::Value = n
        .get_auth("/api/users/me", &ann.token)
        .await
        .json()
        .await
        .expect("me is JSON");
    let found: serde_json::Value = n
        .get_auth(
            &format!("/api/users/search?q={}", ann.username),
            &viewer.token,
        )
        .await
        .json()
        .await
        .expect("search is JSON");
    let found = found
        .as_array()
        .expect("an array")
        .iter()
        .find(|u| u["id"] == ann.id)
        .expect("ann is found")["online"]
        .as_bool()
        .expect("online is a boolean");
    let chats: serde_json::Value = n
        .get_auth("/api/chats", &viewer.token)
        .await
        .json()
        .await
        .expect("chats are JSON");
    let in_chats = chats["chats"][0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|u| u["id"] == ann.id)
        .expect("ann is a member")["online"]
        .as_bool()
        .expect("online is a boolean");
    [
        me["online"].as_bool().expect("online is a boolean"),
        found,
        in_chats,
    ]
}

#[actix_web::test]
async fn http_says_online_for_a_user_connected_only_to_the_other_node() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, .. } = n1.ann_bob().await;
    assert_eq!(online_in_http(&n2, &bob, &ann).await, [false; 3]);

    // Ann on node one only: node two (where she is not) says online everywhere.
    let mut b = n1.ws(&bob).await;
    let a = n1.ws(&ann).await;
    assert_eq!(b.wait_for("user:online").await["data"]["userId"], ann.id);
    assert_eq!(online_in_http(&n2, &bob, &ann).await, [true; 3]);
    assert_eq!(online_in_http(&n1, &bob, &ann).await, [true; 3]);

    a.close();
    assert_eq!(b.wait_for("user:offline").await["data"]["userId"], ann.id);
    assert_eq!(online_in_http(&n2, &bob, &ann).await, [false; 3]);
    assert_eq!(online_in_http(&n1, &bob, &ann).await, [false; 3]);
}

#[actix_web::test]
async fn two_tabs_on_different_nodes_both_receive_and_go_offline_once() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let mut b = n1.ws(&bob).await;
    let mut a1 = n1.ws(&ann).await;
    let mut a2 = n2.ws(&ann).await;
    let m = b.send_text(chat, "t1", "to both tabs").await;
    assert_eq!(a1.wait_for("message:received").await["data"]["id"], m["id"]);
    assert_eq!(a2.wait_for("message:received").await["data"]["id"], m["id"]);
    // Ann's own message from one tab reaches her other tab on the other node.
    let mine = a1.send_text(chat, "t2", "from tab one").await;
    assert_eq!(
        a2.wait_for("message:received").await["data"]["id"],
        mine["id"]
    );
    assert_eq!(b.wait_for("user:online").await["data"]["userId"], ann.id);
    a1.close();
    b.assert_quiet(Duration::from_millis(800), &["message:received"])
        .await;
    a2.close();
    assert_eq!(b.wait_for("user:offline").await["data"]["userId"], ann.id);
    b.assert_quiet(Duration::from_millis(800), &["message:received"])
        .await;
}

#[actix_web::test]
async fn a_call_works_across_nodes_and_busy_holds_across_them() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let cyd = n1.register("cyd").await;
    let chat_cb = n1.direct_chat(&cyd, &bob).await;
    let mut a = n1.ws(&ann).await;
    let mut b = n2.ws(&bob).await;
    let mut c = n2.ws(&cyd).await;
    let sdp = json!({"type": "offer", "sdp": "v=0"});
    a.send(json!({"event": "call:initiate", "ref": "i", "data": {"callId": "x-node", "chatId": chat, "video": true, "sdp": sdp}}));
    assert_eq!(a.reply_to("i").await["event"], "ack");
    assert_eq!(b.wait_for("call:incoming").await["data"]["from"], ann.id);
    // Busy across nodes: Cyd (on node two, where the call does not live) calls Bob.
    c.send(json!({"event": "call:initiate", "ref": "c", "data": {"callId": "other", "chatId": chat_cb, "video": false, "sdp": sdp}}));
    assert_eq!(c.reply_to("c").await["data"]["code"], "callee_busy");
    assert_eq!(c.wait_for("call:busy").await["data"]["callId"], "other");
    // Answer and ICE both ways between the nodes.
    b.send(json!({"event": "call:answer", "ref": "a", "data": {"callId": "x-node", "sdp": {"type": "answer", "sdp": "v=0"}}}));
    assert_eq!(b.reply_to("a").await["event"], "ack");
    assert_eq!(
        a.wait_for("call:answer").await["data"]["sdp"]["type"],
        "answer"
    );
    b.send(json!({"event": "call:ice-candidate", "data": {"callId": "x-node", "candidate": {"candidate": "b1"}}}));
    assert_eq!(
        a.wait_for("call:ice-candidate").await["data"]["candidate"]["candidate"],
        "b1"
    );
    a.send(json!({"event": "call:ice-candidate", "data": {"callId": "x-node", "candidate": {"candidate": "a1"}}}));
    assert_eq!(
        b.wait_for("call:ice-candidate").await["data"]["candidate"]["candidate"],
        "a1"
    );
    // Bob hangs up from node two; both hear it.
    b.send(json!({"event": "call:end", "ref": "e", "data": {"callId": "x-node"}}));
    assert_eq!(b.reply_to("e").await["event"], "ack");
    assert_eq!(a.wait_for("call:end").await["data"]["reason"], "ended");
    assert_eq!(b.wait_for("call:end").await["data"]["reason"], "ended");
    // Free again: Cyd can call Bob now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send(json!({"event": "call:initiate", "ref": "c2", "data": {"callId": "other2", "chatId": chat_cb, "video": false, "sdp": sdp}}));
    assert_eq!(c.reply_to("c2").await["event"], "ack");
    b.wait_for("call:incoming").await;
}

#[actix_web::test]
async fn a_disconnect_on_the_remote_node_ends_the_call() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let mut a = n1.ws(&ann).await;
    let mut b = n2.ws(&bob).await;
    a.send(json!({"event": "call:initiate", "ref": "i", "data": {"callId": "dc", "chatId": chat, "video": true, "sdp": {"type": "offer"}}}));
    a.reply_to("i").await;
    b.wait_for("call:incoming").await;
    b.send(json!({"event": "call:answer", "ref": "a", "data": {"callId": "dc", "sdp": {"type": "answer"}}}));
    b.reply_to("a").await;
    a.wait_for("call:answer").await;
    b.close();
    assert_eq!(
        a.wait_for("call:end").await["data"]["reason"],
        "disconnected"
    );
}

#[actix_web::test]
async fn a_redis_outage_keeps_local_delivery_and_loses_nothing() {
    let mut redis = Redis::start();
    let port = redis.port;
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let mut a = n1.ws(&ann).await;
    let mut a_local = n1.ws(&ann).await;
    let mut b = n2.ws(&bob).await;
    let m0 = a.send_text(chat, "before", "before the outage").await;
    assert_eq!(b.wait_for("message:received").await["data"]["id"], m0["id"]);
    // Like any client, Bob acknowledges what he got.
    b.send(json!({"event": "message:delivered", "ref": "d0", "data": {"messageIds": [m0["id"]]}}));
    assert_eq!(b.reply_to("d0").await["event"], "ack");

    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Still acknowledged and stored, and delivered to Ann's tab on the same node.
    let m1 = a.send_text(chat, "during", "during the outage").await;
    let mut seen = a_local.wait_for("message:received").await;
    while seen["data"]["id"] != m1["id"] {
        seen = a_local.wait_for("message:received").await;
    }
    let res = n1.http.get(n1.url("/api/ready")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    let _redis = Redis::start_on(port);
    wait_until(
        Duration::from_secs(20),
        "ready again after redis restarts",
        || async {
            n1.http
                .get(n1.url("/api/ready"))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        },
    )
    .await;
    // Bob gets what he missed (the replay after the recovery, which may bring what he
    // already had again), and new messages flow again.
    let mut got = b.wait_for("message:received").await;
    while got["data"]["id"] == m0["id"] {
        got = b.wait_for("message:received").await;
    }
    assert_eq!(
        got["data"]["id"], m1["id"],
        "the message sent during the outage arrives"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.send(json!({"event": "message:delivered", "ref": "d1", "data": {"messageIds": [m1["id"]]}}));
    b.reply_to("d1").await;
    let m2 = a.send_text(chat, "after", "after the outage").await;
    // A second replay (subscriber and heartbeat both saw the recovery) may push m0 and
    // m1 again: clients de-duplicate by id. Nothing else comes.
    loop {
        let got = b.wait_for("message:received").await;
        if got["data"]["id"] == m2["id"] {
            break;
        }
        assert!(
            got["data"]["id"] == m1["id"] || got["data"]["id"] == m0["id"],
            "only what was stored around the outage may repeat: {got}"
        );
    }
}

#[actix_web::test]
async fn when_a_node_is_killed_its_users_go_offline_once_within_the_ttl() {
    let redis = Redis::start();
    let ttl = 3;
    let mut s1 = test_settings();
    s1.redis.url = Some(redis.url());
    s1.presence.node_ttl_secs = ttl;
    let n1 = spawn(s1, true).await;
    let mut node2 = Parley::start(
        &n1.db_url,
        &[
            ("PARLEY__REDIS__URL", redis.url()),
            ("PARLEY__PRESENCE__NODE_TTL_SECS", ttl.to_string()),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let base2 = format!("http://127.0.0.1:{}", node2.port);
    wait_until(Duration::from_secs(20), "node 2 ready", || async {
        http.get(format!("{base2}/api/ready"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let mut a = n1.ws(&ann).await;
    let mut b = WsClient::connect(&format!(
        "ws://127.0.0.1:{}/ws?token={}",
        node2.port, bob.token
    ))
    .await;
    b.wait_for("ready").await;
    assert_eq!(a.wait_for("user:online").await["data"]["userId"], bob.id);
    let m = a.send_text(chat, "k1", "are you there").await;
    assert_eq!(b.wait_for("message:received").await["data"]["id"], m["id"]);

    let killed = Instant::now();
    node2.kill9();
    let off = a.wait_for("user:offline").await;
    assert_eq!(off["data"]["userId"], bob.id);
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(ttl + 2),
        "offline after {took:?} (ttl {ttl}s)"
    );
    a.assert_quiet(Duration::from_secs(2), &[]).await;
    // Bob reconnects to the surviving node and misses nothing.
    let m2 = a.send_text(chat, "k2", "sent while you were gone").await;
    let mut b2 = n1.ws(&bob).await;
    let mut ids = Vec::new();
    while ids.len() < 2 {
        ids.push(b2.wait_for("message:received").await["data"]["id"].clone());
    }
    assert!(ids.contains(&m2["id"]), "{ids:?}");
    assert_eq!(a.wait_for("user:online").await["data"]["userId"], bob.id);
}
