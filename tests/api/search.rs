//! Message search (`GET /api/messages/search`) and the history pages that jump to a
//! hit (`GET /api/messages?around=` and `?after=`). Messages are sent over the
//! WebSocket as a client sends them, so what is indexed is what the server stores.
//! The index is written after a message is stored (off the message path), so every
//! search here first waits for the indexer to catch up (`settled`): a "never found"
//! then means the indexer had its chance.

use base64::Engine;
use mysql_async::prelude::Queryable;
use parley::domain::search_text::index_text;
use parley_actors::ChatId;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app_with, AnnBob, TestApp, TestUser, WsClient};

/// An app whose search limit is out of the way (the rate limit has its own test).
async fn app() -> TestApp {
    spawn_app_with(|s| s.limits.search_per_min = 10_000).await
}

/// `GET path` as `user`, asserting 200; the JSON body.
async fn get_ok(app: &TestApp, path: &str, user: &TestUser) -> Value {
    let res = app.get_auth(path, &user.token).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// `s` percent-encoded for a query string.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A client id not used before in this test binary.
fn client_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "s{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Waits until the search indexer has caught up with every message stored so far.
/// It indexes in the order messages were stored, so once the newest message that
/// has searchable words has its row, so does every one before it.
pub(crate) async fn settled(app: &TestApp) {
    let mut conn = app.mysql().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let recent: Vec<(u64, u64, String)> = conn
            .query(
                "SELECT id, chat_id, content FROM messages WHERE deleted_at IS NULL \
                 AND encrypted = 0 AND kind NOT IN ('call', 'system') AND content <> '' ORDER BY id DESC LIMIT 100",
            )
            .await
            .unwrap();
        let newest = recent
            .iter()
            .find(|(_, chat, content)| !index_text(ChatId(*chat), content).is_empty());
        let Some((id, _, _)) = newest else { return };
        let indexed: Option<u64> = conn
            .exec_first(
                "SELECT message_id FROM message_search WHERE message_id = ?",
                (*id,),
            )
            .await
            .unwrap();
        if indexed.is_some() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "message {id} was not indexed within 15 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The search's hits as (id, content), newest first, and its `nextBefore`.
async fn search(app: &TestApp, user: &TestUser, params: &str) -> (Vec<(u64, String)>, Value) {
    settled(app).await;
    let body = get_ok(app, &format!("/api/messages/search?{params}"), user).await;
    let hits = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (hits, body["nextBefore"].clone())
}

/// The contents `user` finds for `query` (all their chats), newest first.
async fn found(app: &TestApp, user: &TestUser, query: &str) -> Vec<String> {
    let (hits, _) = search(app, user, &format!("query={}", enc(query))).await;
    hits.into_iter().map(|(_, c)| c).collect()
}

/// Sends each text in turn; the stored messages' ids.
async fn send_all(ws: &mut WsClient, chat: u64, texts: &[&str]) -> Vec<u64> {
    let mut ids = Vec::new();
    for t in texts {
        let m = ws.send_text(chat, &client_id(), t).await;
        ids.push(m["id"].as_u64().unwrap());
    }
    ids
}

fn ids_of(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

#[actix_web::test]
async fn words_are_found_by_prefix_case_and_accent_insensitively_newest_first() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    send_all(
        &mut a,
        chat,
        &[
            "Let's meet at the Café Müller tomorrow",
            "OK, see you",
            "Meeting moved to 10:30",
            "nothing to do with it",
            "je suis allé à l'école",
        ],
    )
    .await;

    let meet = found(&app, &bob, "meet").await;
    assert_eq!(
        meet,
        [
            "Meeting moved to 10:30",
            "Let's meet at the Café Müller tomorrow"
        ],
        "a word starts a word, newest first"
    );
    for q in ["cafe", "CAFÉ", "caf", "muller", "MÜLL"] {
        assert_eq!(
            found(&app, &bob, q).await,
            ["Let's meet at the Café Müller tomorrow"],
            "{q}: case and accents do not matter"
        );
    }
    assert_eq!(found(&app, &ann, "ok").await, ["OK, see you"], "2 letters");
    assert_eq!(found(&app, &ann, "10").await, ["Meeting moved to 10:30"]);
    assert_eq!(
        found(&app, &ann, "ecole ALLE").await,
        ["je suis allé à l'école"]
    );
    // Every word must be there; one-letter words are ignored.
    assert_eq!(
        found(&app, &ann, "meet tomorrow a").await,
        ["Let's meet at the Café Müller tomorrow"]
    );
    assert!(found(&app, &ann, "meet nothing").await.is_empty());
    // Only at the start of a word: "eet" is inside "meet", "ing" ends "Meeting".
    assert!(found(&app, &ann, "eet").await.is_empty());
    assert!(found(&app, &ann, "ing").await.is_empty());
    // A hit is a whole message, as the history has it.
    let body = get_ok(&app, "/api/messages/search?query=see", &bob).await;
    let m = &body["messages"][0];
    assert_eq!(m["chatId"], chat);
    assert_eq!(m["senderId"], ann.id);
    assert_eq!(m["kind"], "text");
    assert!(m["createdAt"].is_string() && m["status"].is_string(), "{m}");
    assert!(body["nextBefore"].is_null());
}

#[actix_web::test]
async fn search_operators_and_wildcards_in_a_query_are_plain_text() {
    let app = app().await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    send_all(
        &mut a,
        chat,
        &["alpha beta", "gamma delta", "100% sure_thing"],
    )
    .await;
    for (q, want) in [
        ("\"alpha\"", vec!["alpha beta"]),
        ("+alpha -beta", vec!["alpha beta"]),
        ("(gamma) ~delta*", vec!["gamma delta"]),
        ("alpha* <beta>", vec!["alpha beta"]),
        ("100%", vec!["100% sure_thing"]),
        ("sure_th", vec!["100% sure_thing"]),
        ("@alpha", vec!["alpha beta"]),
    ] {
        assert_eq!(found(&app, &ann, q).await, want, "query {q:?}");
    }
}

#[actix_web::test]
async fn other_peoples_chats_never_match_and_naming_one_is_forbidden() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let cyd = app.register("cyd").await;
    let dan = app.register("dan").await;
    let theirs = app.direct_chat(&cyd, &dan).await;
    let mut c = app.ws(&cyd).await;
    send_all(&mut c, theirs, &["the secret plan"]).await;
    let mut a = app.ws(&ann).await;
    send_all(&mut a, chat, &["no plan at all"]).await;

    assert_eq!(found(&app, &ann, "plan").await, ["no plan at all"]);
    assert!(found(&app, &bob, "secret").await.is_empty());
    assert_eq!(found(&app, &dan, "secret plan").await, ["the secret plan"]);
    // Someone else's chat, or one that does not exist, by id: 403 alike.
    for id in [theirs, 987_654] {
        let res = app
            .get_auth(
                &format!("/api/messages/search?query=secret&chatId={id}"),
                &ann.token,
            )
            .await;
        assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
}

#[actix_web::test]
async fn a_group_you_left_is_no_longer_searched() {
    let app = app().await;
    let AnnBob { ann, bob, .. } = app.ann_bob().await;
    let cyd = app.register("cyd").await;
    let group = app.group_chat(&ann, &[&bob, &cyd]).await;
    let mut b = app.ws(&bob).await;
    send_all(&mut b, group, &["quarterly numbers"]).await;
    assert_eq!(found(&app, &cyd, "quarterly").await, ["quarterly numbers"]);

    let res = app
        .http
        .delete(app.url(&format!("/api/chats/{group}/members/me")))
        .bearer_auth(&cyd.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(found(&app, &cyd, "quarterly").await.is_empty());
    let res = app
        .get_auth(
            &format!("/api/messages/search?query=quarterly&chatId={group}"),
            &cyd.token,
        )
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(found(&app, &ann, "quarterly").await, ["quarterly numbers"]);
}

#[actix_web::test]
async fn chat_id_limits_the_search_to_that_chat() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let cyd = app.register("cyd").await;
    let other = app.direct_chat(&ann, &cyd).await;
    let mut a = app.ws(&ann).await;
    send_all(&mut a, chat, &["pizza tonight?"]).await;
    send_all(&mut a, other, &["pizza or pasta"]).await;

    assert_eq!(
        found(&app, &ann, "pizza").await,
        ["pizza or pasta", "pizza tonight?"]
    );
    let (hits, _) = search(&app, &ann, &format!("query=pizza&chatId={chat}")).await;
    assert_eq!(
        hits.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(),
        ["pizza tonight?"]
    );
    let (hits, _) = search(&app, &ann, &format!("query=pizza&chatId={other}")).await;
    assert_eq!(
        hits.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(),
        ["pizza or pasta"]
    );
    let (hits, _) = search(&app, &bob, &format!("query=pizza&chatId={chat}")).await;
    assert_eq!(hits.len(), 1);
}

#[actix_web::test]
async fn pages_follow_next_before_without_repeats_or_gaps() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let texts: Vec<String> = (0..25).map(|i| format!("report number {i}")).collect();
    let mut ids = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        ids.push(
            a.send_text(chat, &format!("r{i}"), t).await["id"]
                .as_u64()
                .unwrap(),
        );
        if i % 5 == 0 {
            // Messages that do not match, between the hits.
            a.send_text(chat, &format!("x{i}"), "something else").await;
        }
    }
    let mut seen = Vec::new();
    let mut params = "query=report&limit=10".to_string();
    let mut sizes = Vec::new();
    loop {
        let (hits, next) = search(&app, &bob, &params).await;
        sizes.push(hits.len());
        seen.extend(hits.iter().map(|h| h.0));
        match next.as_u64() {
            Some(before) => {
                assert_eq!(
                    Some(before),
                    hits.last().map(|h| h.0),
                    "nextBefore is the last hit"
                );
                params = format!("query=report&limit=10&before={before}");
            }
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(seen, want, "every hit once, newest first");
    // A page that ends exactly at the last hit says so.
    let (hits, next) = search(&app, &bob, "query=report&limit=25").await;
    assert_eq!(hits.len(), 25);
    assert!(next.is_null());
}

#[actix_web::test]
async fn encrypted_and_call_messages_never_match() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    // An envelope of the right shape (the server cannot tell it from a real one).
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    let env = json!({"v": 1, "alg": "RSA-OAEP-256+A256GCM", "iv": b64(12), "ciphertext": b64(40),
        "keys": {ann.id.to_string(): b64(256), bob.id.to_string(): b64(256)}});
    a.send(
        json!({"event": "message:send", "ref": "e", "data": {"chatId": chat, "clientId": "enc-1",
        "kind": "text", "content": "", "encrypted": true, "e2ee": env}}),
    );
    assert_eq!(a.reply_to("e").await["event"], "ack");
    // A call that is rejected leaves a call message: {"outcome":"rejected",...}.
    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"});
    a.send(
        json!({"event": "call:initiate", "ref": "init", "data": {"callId": "c1", "chatId": chat,
        "video": true, "sdp": offer}}),
    );
    assert_eq!(a.reply_to("init").await["event"], "ack");
    b.wait_for("call:incoming").await;
    b.send(json!({"event": "call:reject", "ref": "r", "data": {"callId": "c1"}}));
    assert_eq!(b.reply_to("r").await["event"], "ack");
    loop {
        let m = a.wait_for("message:received").await;
        if m["data"]["kind"] == "call" {
            assert!(m["data"]["content"].as_str().unwrap().contains("rejected"));
            break;
        }
    }
    // What the envelope and the call trace hold does not match…
    for q in [
        "rsa", "oaep", "a256gcm", "alg", "keys", "BwcH", "outcome", "rejected", "video", "caller",
    ] {
        assert!(found(&app, &ann, q).await.is_empty(), "{q} matched");
    }
    // …though the same words in a plaintext message do.
    send_all(
        &mut a,
        chat,
        &["rsa oaep a256gcm alg keys BwcH outcome rejected video caller"],
    )
    .await;
    for q in ["rsa", "oaep", "rejected", "video"] {
        assert_eq!(found(&app, &bob, q).await.len(), 1, "{q}");
    }
}

#[actix_web::test]
async fn a_deleted_message_is_never_found() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let ids = send_all(
        &mut a,
        chat,
        &["embarrassing typo", "embarrassing but fine"],
    )
    .await;
    assert_eq!(found(&app, &bob, "embarrassing").await.len(), 2);
    a.send(json!({"event": "message:delete", "ref": "d", "data": {"messageId": ids[0]}}));
    let reply = a.reply_to("d").await;
    assert_eq!(reply["event"], "ack", "{reply}");
    assert_eq!(
        found(&app, &bob, "embarrassing").await,
        ["embarrassing but fine"]
    );
    assert!(found(&app, &bob, "typo").await.is_empty());
    let (hits, _) = search(&app, &ann, &format!("query=typo&chatId={chat}")).await;
    assert!(hits.is_empty());
}

#[actix_web::test]
async fn an_edited_message_is_found_by_its_new_words_only() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let id = send_all(&mut a, chat, &["lunch at noon"]).await[0];
    a.send(json!({"event": "message:edit", "ref": "e", "data": {"messageId": id, "content": "dinner at eight"}}));
    let reply = a.reply_to("e").await;
    assert_eq!(reply["event"], "ack", "{reply}");
    assert!(found(&app, &bob, "lunch").await.is_empty());
    assert!(found(&app, &bob, "noon").await.is_empty());
    assert_eq!(found(&app, &bob, "dinner eight").await, ["dinner at eight"]);
    let (hits, _) = search(&app, &bob, &format!("query=din&chatId={chat}")).await;
    assert_eq!(hits, [(id, "dinner at eight".to_string())]);
}

#[actix_web::test]
async fn bad_queries_and_limits_are_refused() {
    let app = app().await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let hundred = "a".repeat(98) + " b";
    let longer = "a".repeat(101);
    let huge = "word ".repeat(400);
    for (params, status, code, why) in [
        (String::new(), 400, "query_too_short", "no query"),
        ("query=".into(), 400, "query_too_short", "empty"),
        ("query=a".into(), 400, "query_too_short", "one letter"),
        (
            "query=a%20b%20c".into(),
            400,
            "query_too_short",
            "only one-letter words",
        ),
        (
            "query=%21%3F%20%2A".into(),
            400,
            "query_too_short",
            "no letters at all",
        ),
        (
            format!("query={longer}"),
            400,
            "query_too_long",
            "101 characters",
        ),
        (
            format!("query={}", enc(&huge)),
            400,
            "query_too_long",
            "2,000 characters",
        ),
        ("query=ok&limit=0".into(), 400, "invalid_query", "limit 0"),
        ("query=ok&limit=51".into(), 400, "invalid_query", "limit 51"),
        (
            "query=ok&limit=x".into(),
            400,
            "invalid_query",
            "limit not a number",
        ),
        (
            "query=ok&before=-1".into(),
            400,
            "invalid_query",
            "negative before",
        ),
        (
            "query=ok&chatId=abc".into(),
            400,
            "invalid_query",
            "chatId not a number",
        ),
    ] {
        let res = app
            .get_auth(&format!("/api/messages/search?{params}"), &ann.token)
            .await;
        assert_eq!(res.status().as_u16(), status, "{why}");
        assert_error(res, StatusCode::from_u16(status).unwrap(), code).await;
    }
    // The bounds themselves are fine: 100 characters, limits 1 and 50.
    for params in [
        format!("query={}", enc(&hundred)),
        "query=ok&limit=1".into(),
        format!("query=ok&limit=50&chatId={chat}"),
    ] {
        get_ok(&app, &format!("/api/messages/search?{params}"), &ann).await;
    }
    let res = app
        .http
        .get(app.url("/api/messages/search?query=ok"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[actix_web::test]
async fn searches_are_rate_limited_per_user_apart_from_user_search() {
    let app = spawn_app_with(|s| s.limits.search_per_min = 3).await;
    let AnnBob { ann, bob, .. } = app.ann_bob().await;
    for _ in 0..3 {
        let res = app
            .get_auth("/api/messages/search?query=hello", &ann.token)
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app
        .get_auth("/api/messages/search?query=hello", &ann.token)
        .await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // A refused query counts too, so bad queries cannot be sent without limit.
    let res = app
        .get_auth("/api/messages/search?query=a", &ann.token)
        .await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Finding people is a bucket of its own, and so is every other user.
    let res = app.get_auth("/api/users/search?query=bo", &ann.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .get_auth("/api/messages/search?query=hello", &bob.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn around_a_message_is_the_page_centred_on_it() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let texts: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = send_all(&mut a, chat, &refs).await;

    // The 11th message, 10 a page: 5 newer, itself and 4 older, newest first.
    let page = get_ok(
        &app,
        &format!("/api/messages?chatId={chat}&around={}&limit=10", ids[10]),
        &bob,
    )
    .await;
    let want: Vec<u64> = ids[6..=15].iter().rev().copied().collect();
    assert_eq!(ids_of(&page), want);
    assert_eq!(page["nextBefore"], ids[6]);
    assert_eq!(page["nextAfter"], ids[15]);
    // The pages on either side continue it without a gap.
    let older = get_ok(
        &app,
        &format!("/api/messages?chatId={chat}&before={}&limit=10", ids[6]),
        &bob,
    )
    .await;
    assert_eq!(
        ids_of(&older),
        ids[0..6].iter().rev().copied().collect::<Vec<_>>()
    );
    assert!(older["nextBefore"].is_null());
    let newer = get_ok(
        &app,
        &format!("/api/messages?chatId={chat}&after={}&limit=10", ids[15]),
        &bob,
    )
    .await;
    assert_eq!(
        ids_of(&newer),
        ids[16..26].iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(newer["nextAfter"], ids[25]);
    assert_eq!(newer["nextBefore"], ids[16]);

    // Near either end the other side fills the page.
    let page = get_ok(
        &app,
        &format!("/api/messages?chatId={chat}&around={}&limit=10", ids[28]),
        &bob,
    )
    .await;
    assert_eq!(
        ids_of(&page),
        ids[20..30].iter().rev().copied().collect::<Vec<_>>()
    );
    assert!(page["nextAfter"].is_null(), "the newest message is in it");
    assert_eq!(page["nextBefore"], ids[20]);
    let page = get_ok(
        &app,
        &format!("/api/messages?chatId={chat}&around={}&limit=7", ids[1]),
        &bob,
    )
    .await;
    assert_eq!(
        ids_of(&page),
        ids[0..7].iter().rev().copied().collect::<Vec<_>>()
    );
    assert!(page["nextBefore"].is_null(), "the oldest message is in it");
    assert_eq!(page["nextAfter"], ids[6]);
    // A page of one is the message itself.
    let page = get_ok(
        &app,
        &format!("/api/messages?chatId={chat}&around={}&limit=1", ids[10]),
        &bob,
    )
    .await;
    assert_eq!(ids_of(&page), [ids[10]]);
    assert_eq!(page["nextBefore"], ids[10]);
    assert_eq!(page["nextAfter"], ids[10]);
}

#[actix_web::test]
async fn around_a_message_of_another_chat_is_not_found_and_outsiders_are_refused() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let cyd = app.register("cyd").await;
    let other = app.direct_chat(&bob, &cyd).await;
    let mut b = app.ws(&bob).await;
    let mine = send_all(&mut b, chat, &["in ann and bob's chat"]).await[0];
    let elsewhere = send_all(&mut b, other, &["in bob and cyd's chat"]).await[0];

    // Bob is in both chats, yet a message is only found in its own.
    for (around, why) in [
        (elsewhere, "another chat's message"),
        (elsewhere + 1000, "no such message"),
    ] {
        let res = app
            .get_auth(
                &format!("/api/messages?chatId={chat}&around={around}"),
                &bob.token,
            )
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{why}");
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    // Ann is not in the other chat: 403, whether or not the id is one of its messages.
    for around in [elsewhere, mine] {
        let res = app
            .get_auth(
                &format!("/api/messages?chatId={other}&around={around}"),
                &ann.token,
            )
            .await;
        assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let res = app
        .get_auth(&format!("/api/messages?chatId={other}&after=0"), &ann.token)
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    // Two anchors at once, or a bad one, are refused.
    for params in [
        format!("chatId={chat}&around={mine}&before={mine}"),
        format!("chatId={chat}&after=0&around={mine}"),
        format!("chatId={chat}&around=x"),
        format!("chatId={chat}&after=-1"),
        format!("chatId={chat}&around={mine}&limit=101"),
    ] {
        let res = app
            .get_auth(&format!("/api/messages?{params}"), &bob.token)
            .await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
}

#[actix_web::test]
async fn after_pages_towards_the_present_without_repeats_or_gaps() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let cyd = app.register("cyd").await;
    let other = app.direct_chat(&ann, &cyd).await;
    let mut a = app.ws(&ann).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            a.send_text(chat, &format!("a{i}"), &format!("n{i}")).await["id"]
                .as_u64()
                .unwrap(),
        );
        // Another chat's messages in between are never part of this one's pages.
        a.send_text(other, &format!("o{i}"), "elsewhere").await;
    }
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = get_ok(
            &app,
            &format!("/api/messages?chatId={chat}&after={after}&limit=10"),
            &bob,
        )
        .await;
        pages += 1;
        let got = ids_of(&page);
        // Newest first within the page, and older than everything seen before.
        let mut asc = got.clone();
        asc.reverse();
        assert!(got.windows(2).all(|w| w[0] > w[1]), "{got:?}");
        if after == 0 {
            assert!(
                page["nextBefore"].is_null(),
                "the first page holds the oldest"
            );
        } else {
            assert_eq!(page["nextBefore"], asc[0]);
        }
        seen.extend(asc);
        match page["nextAfter"].as_u64() {
            Some(next) => {
                assert_eq!(Some(next), got.first().copied());
                after = next;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);
    // Past the newest message: nothing, and nothing further.
    let page = get_ok(
        &app,
        &format!("/api/messages?chatId={chat}&after={}", ids[24]),
        &bob,
    )
    .await;
    assert!(ids_of(&page).is_empty());
    assert!(page["nextAfter"].is_null());
}

/// The indexer writes a message's row after it is stored; an edit or a delete may
/// come before or after that. Either way the index ends as the message is: found by
/// its new words only, or not at all.
#[actix_web::test]
async fn edits_and_deletes_racing_the_indexer_leave_no_old_words() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    for i in 0..30 {
        let m = a
            .send_text(chat, &client_id(), &format!("draftword number{i}"))
            .await;
        let id = &m["id"];
        let frame = if i % 2 == 0 {
            json!({"event": "message:edit", "ref": "c", "data": {"messageId": id, "content": format!("finalword number{i}")}})
        } else {
            json!({"event": "message:delete", "ref": "c", "data": {"messageId": id}})
        };
        a.send(frame);
        let reply = a.reply_to("c").await;
        assert_eq!(reply["event"], "ack", "{reply}");
    }
    // Stored last, indexed last: once it is found, every queued id was handled.
    a.send_text(chat, &client_id(), "marker").await;
    assert_eq!(found(&app, &bob, "marker").await, ["marker"]);
    assert!(found(&app, &bob, "draftword").await.is_empty());
    assert_eq!(found(&app, &bob, "finalword").await.len(), 15);
    let mut conn = app.mysql().await;
    let rows: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM message_search")
        .await
        .unwrap();
    assert_eq!(
        rows,
        Some(16),
        "one row per live message, none for the deleted"
    );
}

/// A process that stored messages and died before indexing them leaves them without
/// a row; the next process to start finds them by its repair scan.
#[actix_web::test]
async fn messages_a_dead_process_left_unindexed_are_indexed_by_the_next_one() {
    let app = app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    send_all(&mut a, chat, &["lost words one", "lost words two"]).await;
    assert_eq!(found(&app, &bob, "lost").await.len(), 2);
    let mut conn = app.mysql().await;
    conn.query_drop("DELETE FROM message_search").await.unwrap();
    let (hits, _) = {
        // Without `settled`: nothing is queued, so the rows stay missing.
        let body = get_ok(&app, "/api/messages/search?query=lost", &bob).await;
        (body["messages"].as_array().unwrap().len(), ())
    };
    assert_eq!(hits, 0);

    let next = crate::helpers::spawn(app.settings.clone(), false).await;
    crate::helpers::wait_until(
        std::time::Duration::from_secs(15),
        "the new process indexes what was left",
        || async {
            let body = get_ok(&next, "/api/messages/search?query=lost", &bob).await;
            body["messages"].as_array().unwrap().len() == 2
        },
    )
    .await;
}
