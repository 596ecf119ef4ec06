//! The authorization matrix, against the real binary (JSON logs at debug level):
//! every HTTP route and the WebSocket upgrade with no token, a malformed one, an
//! expired one, one signed with another key and `alg: none`; every WebSocket event
//! as a user outside the chat or call; what an outsider learns about whether a chat
//! (or audio, or call) exists; a foreign `Origin`; path tricks on audio ids; and no
//! password, hash or token in any log line.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::JWT_SECRET;
use crate::peer::{ws_url, Conn, Event};
use crate::support::{
    alg_none_token, count, reliability, sign_token, unix_now, Parley, Secrets, TestDb,
};

/// Probes whose existing-vs-missing answers are the same today: the test keeps them
/// that way. Every other probe is reported (`FINDING:`) when the answers differ.
const INDISTINGUISHABLE_NOW: &[&str] = &[
    "ws message:read",
    "ws message:delivered",
    "ws call:initiate toUserId",
];

async fn http_outcome(
    p: &Parley,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = p.http.request(method, p.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn upload_outcome(p: &Parley, token: Option<&str>, chat: u64) -> (u16, Value) {
    let mut bytes = vec![0x1A, 0x45, 0xDF, 0xA3];
    bytes.extend([7u8; 2000]);
    let form = reqwest::multipart::Form::new()
        .text("chatId", chat.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("a.webm"),
        );
    let mut req = p
        .http
        .post(p.url("/api/messages/upload-audio"))
        .multipart(form);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Sends `frame` with ref `r` and returns the reply (ack or error).
async fn ws_reply(c: &mut Conn, mut frame: Value, r: &str) -> Value {
    frame["ref"] = json!(r);
    c.send(frame);
    c.reply(r, Duration::from_secs(10)).await.unwrap()
}

fn outcome_of(v: &Value) -> String {
    match v["event"].as_str() {
        Some("error") => format!("error:{}", v["data"]["code"].as_str().unwrap_or("")),
        Some("ack") => format!("ack:{}", v["data"]),
        _ => v.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_event_refuses_outsiders_and_reveals_nothing() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let a = p.register("authann", &secrets).await;
    let b = p.register("authbob", &secrets).await;
    let c = p.register("authcyd", &secrets).await;
    let d = p.register("authdan", &secrets).await;
    let chat = p.direct_chat(&a, &b).await;
    let c_chat = p.direct_chat(&c, &d).await;
    let missing_chat = chat + c_chat + 1000;
    // Something to find: a message, an audio file, a published key, a ringing call.
    let (mut wa, _) = Conn::ready(&ws_url(&p.ws_base(), &a.token)).await;
    let (mut wb, _) = Conn::ready(&ws_url(&p.ws_base(), &b.token)).await;
    let m1 = ws_reply(&mut wa, json!({"event": "message:send", "data": {"chatId": chat, "clientId": "m1", "kind": "text", "content": "the secret plan"}}), "m1").await;
    assert_eq!(m1["event"], "ack");
    let m1_id = m1["data"]["id"].as_u64().unwrap();
    wb.wait_event("message:received", Duration::from_secs(5))
        .await
        .unwrap();
    let (st, up) = upload_outcome(&p, Some(&a.token), chat).await;
    assert_eq!(st, 201, "{up}");
    let audio = up["audioId"].as_u64().unwrap();
    let call = ws_reply(&mut wa, json!({"event": "call:initiate", "data": {"callId": "call-ab", "chatId": chat, "video": false, "sdp": {"type": "offer"}}}), "ci").await;
    assert_eq!(call["event"], "ack", "{call}");
    wb.wait_event("call:incoming", Duration::from_secs(5))
        .await
        .unwrap();

    // ---------------------------------------------------------------- bad tokens
    let now = unix_now();
    let expired = sign_token(JWT_SECRET.as_bytes(), a.id, 1, now - 7200, now - 3600);
    let foreign = sign_token(
        b"another-secret-another-secret-another!",
        a.id,
        1,
        now,
        now + 3600,
    );
    let none = alg_none_token(a.id);
    for t in [&expired, &foreign] {
        secrets.add_token(t);
    }
    let tokens: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("garbage", Some("not.a.token".into())),
        ("expired", Some(expired.clone())),
        ("foreign-key", Some(foreign.clone())),
        ("alg-none", Some(none.clone())),
    ];
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/users/me".into(), None),
        (Method::GET, "/api/users/search?query=auth".into(), None),
        (Method::GET, "/api/chats".into(), None),
        (
            Method::POST,
            "/api/chats".into(),
            Some(json!({"userId": b.id})),
        ),
        (Method::GET, format!("/api/chats/{chat}"), None),
        (
            Method::DELETE,
            format!("/api/chats/{chat}/members/me"),
            None,
        ),
        (Method::GET, format!("/api/messages?chatId={chat}"), None),
        (Method::GET, format!("/api/media/audio/{audio}"), None),
        (
            Method::POST,
            "/api/encryption/public-key".into(),
            Some(json!({"publicKey": "x"})),
        ),
        (
            Method::GET,
            format!("/api/encryption/public-key/{}", a.id),
            None,
        ),
        (Method::GET, "/api/calls/ice-servers".into(), None),
    ];
    let mut token_cases = 0;
    for (kind, token) in &tokens {
        for (method, path, body) in &routes {
            let (status, v) =
                http_outcome(&p, method.clone(), path, token.as_deref(), body.clone()).await;
            assert_eq!(status, 401, "{kind} {method} {path}: {v}");
            let code = v["error"]["code"].as_str().unwrap_or_default();
            assert!(
                ["missing_token", "invalid_token", "token_expired"].contains(&code),
                "{kind} {path}: {v}"
            );
            assert!(!v.to_string().contains("secret plan") && v.get("email").is_none());
            token_cases += 1;
        }
        let (status, v) = upload_outcome(&p, token.as_deref(), chat).await;
        assert_eq!(status, 401, "{kind} upload: {v}");
        token_cases += 1;
        let url = match token {
            Some(t) => ws_url(&p.ws_base(), t),
            None => format!("{}/ws", p.ws_base()),
        };
        let refused = Conn::try_connect(&url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{kind} token opened a WebSocket"));
        assert_eq!(refused.status, Some(401), "{kind} ws: {refused:?}");
        assert!(refused
            .body
            .as_ref()
            .is_some_and(|b| b["error"]["code"].is_string()));
        token_cases += 1;
    }
    // The expired token is told apart (a client should log in again), not the others.
    let (_, v) = http_outcome(&p, Method::GET, "/api/users/me", Some(&expired), None).await;
    assert_eq!(v["error"]["code"], "token_expired");

    // ---------------------------------------------------------------- outsiders over HTTP
    let mut probes: BTreeMap<&str, (String, String)> = BTreeMap::new();
    let show = |(s, v): (u16, Value)| format!("{s}:{}", v["error"]["code"].as_str().unwrap_or("-"));
    let mut outsider_cases = 0;
    for (label, path_existing, path_missing) in [
        (
            "GET /api/chats/:id",
            format!("/api/chats/{chat}"),
            format!("/api/chats/{missing_chat}"),
        ),
        (
            "GET /api/messages",
            format!("/api/messages?chatId={chat}"),
            format!("/api/messages?chatId={missing_chat}"),
        ),
        (
            "GET /api/media/audio/:id",
            format!("/api/media/audio/{audio}"),
            format!("/api/media/audio/{}", audio + 1000),
        ),
    ] {
        let e = http_outcome(&p, Method::GET, &path_existing, Some(&c.token), None).await;
        let m = http_outcome(&p, Method::GET, &path_missing, Some(&c.token), None).await;
        assert!([403, 404].contains(&e.0), "{label}: {e:?}");
        assert!([403, 404].contains(&m.0), "{label}: {m:?}");
        assert!(!e.1.to_string().contains("secret plan"));
        probes.insert(label, (show(e), show(m)));
        outsider_cases += 2;
    }
    let e = upload_outcome(&p, Some(&c.token), chat).await;
    let m = upload_outcome(&p, Some(&c.token), missing_chat).await;
    assert!(
        [403, 404].contains(&e.0) && [403, 404].contains(&m.0),
        "{e:?} {m:?}"
    );
    probes.insert("POST /api/messages/upload-audio", (show(e), show(m)));
    outsider_cases += 2;

    // ---------------------------------------------------------------- outsiders over WebSocket
    let (mut wc, _) = Conn::ready(&ws_url(&p.ws_base(), &c.token)).await;
    let pairs: Vec<(&str, Value, Value)> = vec![
        (
            "ws message:send",
            json!({"event": "message:send", "data": {"chatId": chat, "clientId": "x1", "kind": "text", "content": "intruder"}}),
            json!({"event": "message:send", "data": {"chatId": missing_chat, "clientId": "x2", "kind": "text", "content": "intruder"}}),
        ),
        (
            "ws typing",
            json!({"event": "typing", "data": {"chatId": chat, "active": true}}),
            json!({"event": "typing", "data": {"chatId": missing_chat, "active": true}}),
        ),
        (
            "ws message:read",
            json!({"event": "message:read", "data": {"chatId": chat, "messageId": m1_id}}),
            json!({"event": "message:read", "data": {"chatId": missing_chat, "messageId": m1_id}}),
        ),
        (
            "ws message:delivered",
            json!({"event": "message:delivered", "data": {"messageIds": [m1_id]}}),
            json!({"event": "message:delivered", "data": {"messageIds": [m1_id + 1000]}}),
        ),
        (
            "ws call:initiate",
            json!({"event": "call:initiate", "data": {"callId": "c-x1", "chatId": chat, "video": false, "sdp": {"type": "offer"}}}),
            json!({"event": "call:initiate", "data": {"callId": "c-x2", "chatId": missing_chat, "video": false, "sdp": {"type": "offer"}}}),
        ),
        (
            "ws call:initiate toUserId",
            json!({"event": "call:initiate", "data": {"callId": "c-x3", "toUserId": a.id, "video": false, "sdp": {"type": "offer"}}}),
            json!({"event": "call:initiate", "data": {"callId": "c-x4", "toUserId": d.id + 1000, "video": false, "sdp": {"type": "offer"}}}),
        ),
        (
            "ws call:answer",
            json!({"event": "call:answer", "data": {"callId": "call-ab", "sdp": {"type": "answer"}}}),
            json!({"event": "call:answer", "data": {"callId": "no-such-call", "sdp": {"type": "answer"}}}),
        ),
        (
            "ws call:ice-candidate",
            json!({"event": "call:ice-candidate", "data": {"callId": "call-ab", "candidate": {"candidate": "evil"}}}),
            json!({"event": "call:ice-candidate", "data": {"callId": "no-such-call", "candidate": {"candidate": "evil"}}}),
        ),
        (
            "ws call:reject",
            json!({"event": "call:reject", "data": {"callId": "call-ab"}}),
            json!({"event": "call:reject", "data": {"callId": "no-such-call"}}),
        ),
        (
            "ws call:end",
            json!({"event": "call:end", "data": {"callId": "call-ab"}}),
            json!({"event": "call:end", "data": {"callId": "no-such-call"}}),
        ),
    ];
    for (i, (label, existing, missing)) in pairs.into_iter().enumerate() {
        let e = ws_reply(&mut wc, existing, &format!("e{i}")).await;
        let m = ws_reply(&mut wc, missing, &format!("m{i}")).await;
        for v in [&e, &m] {
            let refused = v["event"] == "error" || (v["event"] == "ack" && v["data"]["count"] == 0);
            assert!(refused, "{label} was not refused: {v}");
        }
        probes.insert(label, (outcome_of(&e), outcome_of(&m)));
        outsider_cases += 2;
    }
    // sync shows an outsider nothing of other chats.
    wc.send(json!({"event": "sync", "ref": "s", "data": {"afterId": 0}}));
    loop {
        match wc.recv_within(Duration::from_secs(10)).await {
            Some(Event::Frame(v)) if v["ref"] == "s" => {
                assert_eq!(v["data"]["count"], 0, "{v}");
                break;
            }
            Some(Event::Frame(v)) => assert!(v["event"] != "message:received", "sync leaked {v}"),
            other => panic!("{other:?}"),
        }
    }
    outsider_cases += 1;
    // Nothing reached Ann or Bob, nothing was stored, the call is untouched.
    for (name, w) in [("ann", &mut wa), ("bob", &mut wb)] {
        if let Some(ev) = w.recv_within(Duration::from_millis(1000)).await {
            panic!("{name} got {ev:?} from an outsider");
        }
    }
    assert_eq!(
        count(
            &db.url,
            &format!("SELECT COUNT(*) FROM messages WHERE sender_id = {}", c.id)
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &db.url,
            &format!(
                "SELECT read_up_to FROM chat_members WHERE chat_id = {chat} AND user_id = {}",
                b.id
            )
        )
        .await,
        0
    );
    let answer = ws_reply(
        &mut wb,
        json!({"event": "call:answer", "data": {"callId": "call-ab", "sdp": {"type": "answer"}}}),
        "ans",
    )
    .await;
    assert_eq!(
        answer["event"], "ack",
        "the call survived the outsider: {answer}"
    );

    // ---------------------------------------------------------------- cross-site WebSocket
    let url = ws_url(&p.ws_base(), &a.token);
    let mut origin_cases = 0;
    for origin in [
        "https://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
    ] {
        let r = Conn::connect_with(&url, &[("Origin", origin)])
            .await
            .err()
            .unwrap_or_else(|| panic!("origin {origin} accepted"));
        assert_eq!(r.status, Some(403), "{origin}: {r:?}");
        assert_eq!(r.body.as_ref().unwrap()["error"]["code"], "forbidden");
        origin_cases += 1;
    }
    let own = format!("http://127.0.0.1:{}", p.port);
    assert!(
        Conn::connect_with(&url, &[("Origin", own.as_str())])
            .await
            .is_ok(),
        "own origin refused"
    );

    // ---------------------------------------------------------------- path tricks
    let mut path_cases = 0;
    for path in [
        "/api/media/audio/../../etc/passwd",
        "/api/media/audio/..%2f..%2f..%2fetc%2fpasswd",
        "/api/media/audio/%2e%2e/%2e%2e/etc/passwd",
        "/api/media/audio/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/media/audio/-1",
        "/api/media/audio/99999999999999999999999",
        "/api/media/audio/18446744073709551616",
        "/api/media/audio/abc",
        "/api/media/audio/1.5",
        "/api/media/audio/1%00",
        "/api/media/audio/%00",
        "/api/media/audio/",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
            .await
            .unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            a.token
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            !text.contains("root:x:0:0") && !text.contains("root:*:"),
            "{path} served /etc/passwd"
        );
        if path.starts_with("/api/") {
            assert!((400..500).contains(&status), "{path}: {status}");
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
            let v: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
            assert!(
                v["error"]["code"].is_string(),
                "{path}: not a JSON error: {text}"
            );
        } else {
            assert!(
                status == 200 || (400..500).contains(&status),
                "{path}: {status}"
            );
        }
        path_cases += 1;
    }

    // ---------------------------------------------------------------- findings
    let mut findings = Vec::new();
    for (label, (existing, missing)) in &probes {
        if existing != missing {
            findings.push(format!(
                "{label}: existing → {existing}, missing → {missing}"
            ));
            println!("FINDING: an outsider can tell whether the target exists: {label}: existing → {existing}, missing → {missing}");
        }
    }
    reliability(
        "authorization",
        &[
            ("token_cases", token_cases.to_string()),
            ("outsider_cases", outsider_cases.to_string()),
            ("origin_cases", origin_cases.to_string()),
            ("path_cases", path_cases.to_string()),
            (
                "total",
                (token_cases + outsider_cases + origin_cases + path_cases).to_string(),
            ),
            ("existence_leaks", findings.len().to_string()),
        ],
    );
    // The server answers `forbidden` whether or not the target exists: every probe,
    // not only the historical list below, must be indistinguishable.
    assert!(
        findings.is_empty(),
        "an outsider can tell which ids exist: {findings:#?}"
    );
    for label in INDISTINGUISHABLE_NOW {
        let (e, m) = &probes[label];
        assert_eq!(
            e, m,
            "{label} must not tell an existing target from a missing one"
        );
    }
    // The whole run's log lines: JSON, no panic, no password, hash or token.
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.assert_logs_clean(&secrets);
}
