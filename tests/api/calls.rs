use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, spawn_app, spawn_app_with, AnnBob, TestApp, TestUser, WsClient,
};

fn offer() -> Value {
    json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"})
}

fn answer() -> Value {
    json!({"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\n"})
}

fn candidate(n: u32) -> Value {
    json!({"candidate": format!("candidate:{n} 1 udp 2122260223 127.0.0.1 5{n:04} typ host"), "sdpMid": "0", "sdpMLineIndex": 0})
}

struct Pair {
    app: TestApp,
    ann: TestUser,
    bob: TestUser,
    chat: u64,
}

async fn pair(app: TestApp) -> Pair {
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    Pair {
        app,
        ann,
        bob,
        chat,
    }
}

/// Ann calls Bob; returns once Bob's session has the incoming call.
async fn ring(a: &mut WsClient, b: &mut WsClient, chat: u64, call: &str) -> Value {
    a.send(json!({"event": "call:initiate", "ref": "init", "data": {"callId": call, "chatId": chat, "video": true, "sdp": offer()}}));
    let ack = a.reply_to("init").await;
    assert_eq!(ack["event"], "ack", "{ack}");
    b.wait_for("call:incoming").await
}

async fn call_message(c: &mut WsClient) -> Value {
    loop {
        let m = c.wait_for("message:received").await;
        if m["data"]["kind"] == "call" {
            return serde_json::from_str(m["data"]["content"].as_str().unwrap()).unwrap();
        }
    }
}

#[actix_web::test]
async fn a_whole_call_initiate_answer_ice_both_ways_end() {
    let p = pair(spawn_app().await).await;
    let mut a = p.app.ws(&p.ann).await;
    let mut b = p.app.ws(&p.bob).await;
    let incoming = ring(&mut a, &mut b, p.chat, "call-1").await;
    assert_eq!(incoming["data"]["callId"], "call-1");
    assert_eq!(incoming["data"]["from"], p.ann.id);
    assert_eq!(incoming["data"]["chatId"], p.chat);
    assert_eq!(incoming["data"]["video"], true);
    assert_eq!(incoming["data"]["sdp"], offer());
    // Candidates sent before the answer are kept and delivered in order after it.
    for n in 0..3 {
        let r = format!("ice{n}");
        a.send(json!({"event": "call:ice-candidate", "ref": r, "data": {"callId": "call-1", "candidate": candidate(n)}}));
        assert_eq!(a.reply_to(&r).await["event"], "ack");
    }
    b.assert_quiet(Duration::from_millis(200), &[]).await;
    b.send(json!({"event": "call:answer", "ref": "ans", "data": {"callId": "call-1", "sdp": answer()}}));
    assert_eq!(b.reply_to("ans").await["event"], "ack");
    let got = a.wait_for("call:answer").await;
    assert_eq!(got["data"]["sdp"], answer());
    // The held candidates came right after the answer, before its ack, in order.
    let held: Vec<Value> = b
        .skipped
        .iter()
        .filter(|f| f["event"] == "call:ice-candidate")
        .map(|f| f["data"]["candidate"].clone())
        .collect();
    assert_eq!(held, vec![candidate(0), candidate(1), candidate(2)]);
    b.skipped.retain(|f| f["event"] != "call:ice-candidate");
    b.send(json!({"event": "call:ice-candidate", "data": {"callId": "call-1", "candidate": candidate(7)}}));
    assert_eq!(
        a.wait_for("call:ice-candidate").await["data"]["candidate"],
        candidate(7)
    );
    a.send(json!({"event": "call:ice-candidate", "data": {"callId": "call-1", "candidate": candidate(8)}}));
    assert_eq!(
        b.wait_for("call:ice-candidate").await["data"]["candidate"],
        candidate(8)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.send(json!({"event": "call:end", "ref": "end", "data": {"callId": "call-1"}}));
    assert_eq!(a.reply_to("end").await["event"], "ack");
    assert_eq!(a.wait_for("call:end").await["data"]["reason"], "ended");
    assert_eq!(b.wait_for("call:end").await["data"]["reason"], "ended");
    // The history shows the call with its duration, for both.
    let trace = call_message(&mut a).await;
    assert_eq!(trace["outcome"], "ended");
    assert!(trace["durationMs"].as_i64().unwrap() >= 250, "{trace}");
    assert_eq!(call_message(&mut b).await["outcome"], "ended");
    // The call is over: a late event for it is refused.
    b.send(json!({"event": "call:ice-candidate", "ref": "late", "data": {"callId": "call-1", "candidate": candidate(9)}}));
    assert_eq!(b.reply_to("late").await["data"]["code"], "forbidden");
}

#[actix_web::test]
async fn an_unanswered_call_times_out_on_both_sides() {
    let p = pair(spawn_app_with(|s| s.calls.ring_timeout_secs = 1).await).await;
    let mut a = p.app.ws(&p.ann).await;
    let mut b = p.app.ws(&p.bob).await;
    ring(&mut a, &mut b, p.chat, "ring-1").await;
    assert_eq!(a.wait_for("call:end").await["data"]["reason"], "timeout");
    assert_eq!(b.wait_for("call:end").await["data"]["reason"], "timeout");
    assert_eq!(call_message(&mut b).await["outcome"], "timeout");
    // Both are free again.
    ring(&mut a, &mut b, p.chat, "ring-2").await;
}

/// A device opened from a call notification connects while the call rings: it
/// hears the ring and can answer. Once the call is answered, a later device does not.
#[actix_web::test]
async fn a_device_that_connects_while_a_call_rings_hears_it_and_can_answer() {
    let p = pair(spawn_app().await).await;
    let mut a = p.app.ws(&p.ann).await;
    a.send(json!({"event": "call:initiate", "ref": "init", "data": {"callId": "late-join", "chatId": p.chat, "video": false, "sdp": offer()}}));
    assert_eq!(a.reply_to("init").await["event"], "ack");
    let (mut b, _) = p.app.ws_ready(&p.bob).await;
    let incoming = b.wait_for("call:incoming").await;
    assert_eq!(incoming["data"]["callId"], "late-join", "{incoming}");
    assert_eq!(incoming["data"]["from"], json!(p.ann.id), "{incoming}");
    b.send(
        json!({"event": "call:answer", "ref": "ans", "data": {"callId": "late-join", "sdp": answer()}}),
    );
    assert_eq!(b.reply_to("ans").await["event"], "ack");
    a.wait_for("call:answer").await;
    let (mut b2, _) = p.app.ws_ready(&p.bob).await;
    b2.assert_quiet(Duration::from_millis(300), &["user:online", "user:offline"])
        .await;
}

#[actix_web::test]
async fn a_rejected_call_ends_for_the_caller() {
    let p = pair(spawn_app().await).await;
    let mut a = p.app.ws(&p.ann).await;
    let mut b = p.app.ws(&p.bob).await;
    ring(&mut a, &mut b, p.chat, "rej").await;
    b.send(json!({"event": "call:reject", "ref": "r", "data": {"callId": "rej"}}));
    assert_eq!(b.reply_to("r").await["event"], "ack");
    assert_eq!(a.wait_for("call:end").await["data"]["reason"], "rejected");
    assert_eq!(call_message(&mut a).await["outcome"], "rejected");
}

#[actix_web::test]
async fn calling_someone_already_in_a_call_gets_busy() {
    let p = pair(spawn_app().await).await;
    let cyd = p.app.register("cyd").await;
    let chat_cb = p.app.direct_chat(&cyd, &p.bob).await;
    let mut a = p.app.ws(&p.ann).await;
    let mut b = p.app.ws(&p.bob).await;
    let mut c = p.app.ws(&cyd).await;
    ring(&mut a, &mut b, p.chat, "first").await;
    c.send(json!({"event": "call:initiate", "ref": "c", "data": {"callId": "second", "chatId": chat_cb, "video": false, "sdp": offer()}}));
    assert_eq!(c.reply_to("c").await["data"]["code"], "callee_busy");
    let busy = c
        .skipped
        .iter()
        .find(|f| f["event"] == "call:busy")
        .expect("call:busy before the error");
    assert_eq!(busy["data"]["callId"], "second");
    b.assert_quiet(Duration::from_millis(300), &["user:online", "user:offline"])
        .await;
}

#[actix_web::test]
async fn the_first_device_to_answer_takes_the_call() {
    let p = pair(spawn_app().await).await;
    let mut a = p.app.ws(&p.ann).await;
    let mut b1 = p.app.ws(&p.bob).await;
    let mut b2 = p.app.ws(&p.bob).await;
    ring(&mut a, &mut b1, p.chat, "multi").await;
    b2.wait_for("call:incoming").await;
    b1.send(
        json!({"event": "call:answer", "ref": "a1", "data": {"callId": "multi", "sdp": answer()}}),
    );
    assert_eq!(b1.reply_to("a1").await["event"], "ack");
    assert_eq!(
        b2.wait_for("call:end").await["data"]["reason"],
        "answered_elsewhere"
    );
    a.wait_for("call:answer").await;
    // The other device can no longer answer, nor take part.
    b2.send(
        json!({"event": "call:answer", "ref": "a2", "data": {"callId": "multi", "sdp": answer()}}),
    );
    assert_eq!(b2.reply_to("a2").await["data"]["code"], "conflict");
    b2.send(json!({"event": "call:ice-candidate", "ref": "i2", "data": {"callId": "multi", "candidate": candidate(1)}}));
    assert_eq!(b2.reply_to("i2").await["data"]["code"], "forbidden");
    a.assert_quiet(Duration::from_millis(300), &["user:online"])
        .await;
}

#[actix_web::test]
async fn a_party_that_disconnects_ends_the_call() {
    let p = pair(spawn_app().await).await;
    let mut a = p.app.ws(&p.ann).await;
    let mut b = p.app.ws(&p.bob).await;
    ring(&mut a, &mut b, p.chat, "drop").await;
    b.send(
        json!({"event": "call:answer", "ref": "x", "data": {"callId": "drop", "sdp": answer()}}),
    );
    b.reply_to("x").await;
    a.wait_for("call:answer").await;
    b.close();
    assert_eq!(
        a.wait_for("call:end").await["data"]["reason"],
        "disconnected"
    );
    assert_eq!(call_message(&mut a).await["outcome"], "disconnected");
}

#[actix_web::test]
async fn outsiders_can_neither_call_nor_join_a_call() {
    let p = pair(spawn_app().await).await;
    let eve = p.app.register("eve").await;
    let mut a = p.app.ws(&p.ann).await;
    let mut b = p.app.ws(&p.bob).await;
    let mut e = p.app.ws(&eve).await;
    for (data, code, why) in [
        (
            json!({"callId": "e1", "toUserId": p.bob.id, "video": true, "sdp": offer()}),
            "forbidden",
            "no shared chat",
        ),
        (
            json!({"callId": "e2", "chatId": p.chat, "video": true, "sdp": offer()}),
            "forbidden",
            "someone else's chat",
        ),
        (
            json!({"callId": "e3", "video": true, "sdp": offer()}),
            "invalid_data",
            "nobody to call",
        ),
        (
            json!({"callId": "bad id!", "chatId": p.chat, "video": true, "sdp": offer()}),
            "invalid_data",
            "bad call id",
        ),
        (
            json!({"callId": "e4", "chatId": p.chat, "video": true, "sdp": {"sdp": "x".repeat(20_000)}}),
            "too_large",
            "huge sdp",
        ),
    ] {
        e.send(json!({"event": "call:initiate", "ref": why, "data": data}));
        assert_eq!(e.reply_to(why).await["data"]["code"], code, "{why}");
    }
    b.assert_quiet(Duration::from_millis(300), &["user:online"])
        .await;
    // A real call between Ann and Bob: Eve's answer and candidates are refused, not relayed.
    ring(&mut a, &mut b, p.chat, "private").await;
    e.send(json!({"event": "call:answer", "ref": "ea", "data": {"callId": "private", "sdp": answer()}}));
    assert_eq!(e.reply_to("ea").await["data"]["code"], "forbidden");
    e.send(json!({"event": "call:ice-candidate", "ref": "ei", "data": {"callId": "private", "candidate": candidate(66)}}));
    assert_eq!(e.reply_to("ei").await["data"]["code"], "forbidden");
    e.send(json!({"event": "call:end", "ref": "ee", "data": {"callId": "private"}}));
    assert_eq!(e.reply_to("ee").await["data"]["code"], "forbidden");
    a.assert_quiet(Duration::from_millis(400), &["user:online"])
        .await;
    // Toward Bob, by user id, works since they share a direct chat.
    b.send(json!({"event": "call:answer", "ref": "ok", "data": {"callId": "private", "sdp": answer()}}));
    assert_eq!(b.reply_to("ok").await["event"], "ack");
    assert_eq!(a.wait_for("call:answer").await["data"]["sdp"], answer());
}

#[actix_web::test]
async fn a_call_by_user_id_finds_the_direct_chat() {
    let p = pair(spawn_app().await).await;
    let mut a = p.app.ws(&p.ann).await;
    let mut b = p.app.ws(&p.bob).await;
    a.send(json!({"event": "call:initiate", "ref": "u", "data": {"callId": "by-user", "toUserId": p.bob.id, "video": false, "sdp": offer()}}));
    assert_eq!(a.reply_to("u").await["event"], "ack");
    let inc = b.wait_for("call:incoming").await;
    assert_eq!(inc["data"]["chatId"], p.chat);
    assert_eq!(inc["data"]["video"], false);
}

#[actix_web::test]
async fn ice_servers_hand_out_stun_and_time_limited_turn_credentials() {
    let app = spawn_app_with(|s| {
        s.calls.stun_urls = vec!["stun:stun.example.org:3478".into()];
        s.calls.turn_urls = vec!["turn:turn.example.org:3478?transport=udp".into()];
        s.calls.turn_secret = Some("north-wind-secret".to_string().into());
        s.calls.turn_ttl_secs = 3600;
    })
    .await;
    let ann = app.register("ann").await;
    let res = app
        .http
        .get(app.url("/api/calls/ice-servers"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    let body: Value = app
        .get_auth("/api/calls/ice-servers", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["ttlSeconds"], 3600);
    let servers = body["iceServers"].as_array().unwrap();
    assert_eq!(servers[0]["urls"], json!(["stun:stun.example.org:3478"]));
    assert!(servers[0].get("credential").is_none());
    let turn = &servers[1];
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, ann.id.to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 3590..=now + 3610).contains(&expiry),
        "expiry {expiry} vs now {now}"
    );
    // An independent HMAC-SHA1 (openssl), as coturn computes it.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' '{username}' | openssl dgst -sha1 -hmac 'north-wind-secret' -binary | base64"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        turn["credential"],
        String::from_utf8(out.stdout).unwrap().trim()
    );
}

#[actix_web::test]
async fn without_turn_configured_only_stun_is_handed_out() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let body: Value = app
        .get_auth("/api/calls/ice-servers", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    let servers = body["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    assert!(servers[0]["urls"][0].as_str().unwrap().starts_with("stun:"));
}
