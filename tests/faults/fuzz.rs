//! Protocol fuzzing with proptest against the live binary: WebSocket frames and HTTP
//! bodies that are all invalid by construction (a required field removed or of the
//! wrong type, an unknown field, truncated JSON, deep nesting, huge numbers, random
//! JSON, binary and invalid UTF-8, oversize). Every case must get an `error` event
//! or a 4xx JSON error; the connection (or at least the server) keeps working; nothing
//! is stored; nothing panics.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::peer::{ws_url, Conn, Event};
use crate::support::{count, reliability, Parley, Secrets, TestDb};

const WS_CASES: u32 = 512;
const HTTP_CASES: u32 = 512;

#[derive(Clone, Copy, Debug)]
enum Kind {
    U64,
    Str,
    Bool,
    Enum,
    Raw,
    IdList,
}

/// Raw JSON texts that are never a valid value of `kind`.
fn wrong_values(kind: Kind) -> Vec<&'static str> {
    let deep: &'static str =
        Box::leak(format!("{}{}", "[".repeat(200), "]".repeat(200)).into_boxed_str());
    match kind {
        Kind::U64 => vec![
            "\"7\"",
            "true",
            "null",
            "1.5",
            "-1",
            "18446744073709551616",
            "1e400",
            "99999999999999999999999999999",
            "[]",
            "{}",
            "\"\"",
            deep,
        ],
        Kind::Str => vec!["123", "true", "null", "[]", "{}", "-1", "1e400", deep],
        Kind::Bool => vec!["\"true\"", "1", "null", "[]", "{}", "0"],
        Kind::Enum => vec!["5", "null", "\"bogus\"", "\"TEXT\"", "[]", "{}", "\"\""],
        Kind::Raw => vec![],
        Kind::IdList => vec![
            "\"x\"",
            "[-1]",
            "[\"1\"]",
            "{}",
            "[1.5]",
            "[18446744073709551616]",
            "[null]",
            "true",
        ],
    }
}

type Fields = Vec<(&'static str, Kind)>;

/// (event, valid data, required fields with their kind).
fn templates(chat: u64) -> Vec<(&'static str, Value, Fields)> {
    vec![
        (
            "message:send",
            json!({"chatId": chat, "clientId": "fz-1", "kind": "text", "content": "hello"}),
            vec![
                ("chatId", Kind::U64),
                ("clientId", Kind::Str),
                ("kind", Kind::Enum),
            ],
        ),
        (
            "message:delivered",
            json!({"messageIds": [1]}),
            vec![("messageIds", Kind::IdList)],
        ),
        (
            "message:read",
            json!({"chatId": chat, "messageId": 1}),
            vec![("chatId", Kind::U64), ("messageId", Kind::U64)],
        ),
        (
            "typing",
            json!({"chatId": chat, "active": true}),
            vec![("chatId", Kind::U64), ("active", Kind::Bool)],
        ),
        ("sync", json!({"afterId": 0}), vec![("afterId", Kind::U64)]),
        (
            "call:initiate",
            json!({"callId": "fz-call", "chatId": chat, "video": true, "sdp": {"type": "offer"}}),
            vec![("callId", Kind::Str), ("sdp", Kind::Raw)],
        ),
        (
            "call:answer",
            json!({"callId": "fz-call", "sdp": {"type": "answer"}}),
            vec![("callId", Kind::Str), ("sdp", Kind::Raw)],
        ),
        (
            "call:reject",
            json!({"callId": "fz-call"}),
            vec![("callId", Kind::Str)],
        ),
        (
            "call:ice-candidate",
            json!({"callId": "fz-call", "candidate": {"candidate": "x"}}),
            vec![("callId", Kind::Str), ("candidate", Kind::Raw)],
        ),
        (
            "call:end",
            json!({"callId": "fz-call"}),
            vec![("callId", Kind::Str)],
        ),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Remove,
    /// Index into `wrong_values` (taken modulo its length).
    WrongType(usize),
    Unknown(String, Value),
}

/// A valid object with one field broken; the data as JSON text.
fn mutate(data: &Value, required: &[(&'static str, Kind)], field: usize, m: &Mutation) -> String {
    let mut obj = data.as_object().unwrap().clone();
    let (name, kind) = required[field % required.len()];
    let wrong = wrong_values(kind);
    match m {
        Mutation::Remove => {
            obj.remove(name);
            Value::Object(obj).to_string()
        }
        Mutation::WrongType(i) if !wrong.is_empty() => {
            obj.insert(name.to_string(), Value::String("__HOLE__".into()));
            Value::Object(obj)
                .to_string()
                .replace("\"__HOLE__\"", wrong[i % wrong.len()])
        }
        Mutation::WrongType(_) => {
            obj.remove(name);
            Value::Object(obj).to_string()
        }
        Mutation::Unknown(k, v) => {
            obj.insert(format!("zz{k}"), v.clone());
            Value::Object(obj).to_string()
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[^\"\\\\]{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Remove),
        (0usize..64).prop_map(Mutation::WrongType),
        ("[a-z]{1,6}", arb_json()).prop_map(|(k, v)| Mutation::Unknown(k, v)),
    ]
}

#[derive(Clone, Debug)]
enum WsCase {
    Text(String),
    Binary(Vec<u8>),
    /// A text frame whose payload is not UTF-8.
    BadUtf8(Vec<u8>),
}

fn invalid_utf8() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 0..40),
        prop::sample::select(vec![
            vec![0xFFu8],
            vec![0xC3, 0x28],
            vec![0xE2, 0x82],
            vec![0xF0, 0x28, 0x8C, 0xBC],
            vec![0xED, 0xA0, 0x80],
        ]),
    )
        .prop_map(|(mut prefix, bad)| {
            // Keep the prefix ASCII so the bad bytes decide.
            for b in &mut prefix {
                *b &= 0x7F;
            }
            prefix.extend(bad);
            prefix
        })
}

fn ws_case(chat: u64) -> impl Strategy<Value = WsCase> {
    let t = templates(chat);
    let n = t.len();
    let t2 = t.clone();
    let mutated =
        (0..n, 0usize..8, mutation(), any::<bool>()).prop_map(move |(i, f, m, with_ref)| {
            let (event, data, req) = &t[i];
            let data = mutate(data, req, f, &m);
            let r = if with_ref { ",\"ref\":\"fz\"" } else { "" };
            WsCase::Text(format!("{{\"event\":\"{event}\"{r},\"data\":{data}}}"))
        });
    let truncated = (0..n, any::<prop::sample::Index>()).prop_map(move |(i, cut)| {
        let (event, data, _) = &t2[i];
        let full = json!({"event": event, "ref": "fz", "data": data}).to_string();
        let at = 1 + cut.index(full.len() - 1);
        WsCase::Text(full[..at].to_string())
    });
    let random = (arb_json(), "[a-z:]{0,12}", any::<bool>()).prop_map(|(v, ev, drop_event)| {
        let v = match v {
            Value::Object(mut o) => {
                if drop_event {
                    o.remove("event");
                } else {
                    o.insert("event".into(), Value::String(format!("x-{ev}")));
                }
                Value::Object(o)
            }
            other => other,
        };
        WsCase::Text(v.to_string())
    });
    let deep =
        (129usize..4000, prop::sample::select(vec!["[", "{\"a\":"])).prop_map(|(d, open)| {
            let close = if open == "[" { "]" } else { "}" };
            WsCase::Text(format!(
                "{{\"event\":\"message:send\",\"ref\":\"fz\",\"data\":{}1{}}}",
                open.repeat(d),
                close.repeat(d)
            ))
        });
    let oversize = (65_537usize..90_000).prop_map(|n| {
        WsCase::Text(format!(
            "{{\"event\":\"typing\",\"ref\":\"fz\",\"data\":{{\"chatId\":1,\"active\":true,\"pad\":\"{}\"}}}}",
            "x".repeat(n)
        ))
    });
    prop_oneof![
        8 => mutated,
        2 => truncated,
        2 => random,
        1 => deep,
        1 => oversize,
        1 => prop::collection::vec(any::<u8>(), 0..128).prop_map(WsCase::Binary),
        1 => invalid_utf8().prop_map(WsCase::BadUtf8),
    ]
}

struct WsState {
    conn: Conn,
    url: String,
    n: usize,
    reconnects: usize,
}

async fn ws_check(st: &mut WsState, case: WsCase) -> Result<(), TestCaseError> {
    st.n += 1;
    let bad_utf8 = matches!(case, WsCase::BadUtf8(_));
    match case {
        WsCase::Text(t) => {
            st.conn.send_raw(WsMessage::Text(t.into()));
        }
        WsCase::Binary(b) => {
            st.conn.send_raw(WsMessage::Binary(b.into()));
        }
        WsCase::BadUtf8(b) => {
            st.conn.send_raw(WsMessage::Frame(Frame::message(
                b,
                OpCode::Data(Data::Text),
                true,
            )));
        }
    }
    let ping = format!("ping-{}", st.n);
    st.conn.send(json!({"event": "ping", "ref": ping}));
    let mut errors = 0;
    loop {
        match st.conn.recv_within(Duration::from_secs(10)).await {
            Some(Event::Frame(v)) if v["event"] == "pong" && v["ref"] == ping.as_str() => break,
            Some(Event::Frame(v)) if v["event"] == "error" => {
                prop_assert!(
                    v["data"]["code"].is_string() && v["data"]["message"].is_string(),
                    "error shape: {v}"
                );
                errors += 1;
            }
            Some(Event::Frame(v)) => {
                return Err(TestCaseError::fail(format!("unexpected frame: {v}")));
            }
            Some(other) if bad_utf8 => {
                // The codec cannot resynchronise after an invalid text frame: an error
                // then a close is the documented answer. The server must still work.
                prop_assert!(errors > 0, "no error before the close: {other:?}");
                let (c, _) = Conn::ready(&st.url).await;
                st.conn = c;
                st.reconnects += 1;
                return Ok(());
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "no pong after the case: {other:?}"
                )))
            }
        }
    }
    prop_assert!(errors >= 1, "no error event for an invalid frame");
    Ok(())
}

#[derive(Clone, Debug)]
enum HttpCase {
    Json { route: usize, body: String },
    Bytes { route: usize, body: Vec<u8> },
}

const ROUTES: [&str; 4] = [
    "/api/auth/register",
    "/api/auth/login",
    "/api/chats",
    "/api/encryption/public-key",
];

fn http_templates() -> Vec<(Value, Fields, bool)> {
    // (valid body, required fields, unknown fields refused)
    vec![
        (
            json!({"email": "new@example.com", "username": "newuser", "password": "password-123"}),
            vec![
                ("email", Kind::Str),
                ("username", Kind::Str),
                ("password", Kind::Str),
            ],
            true,
        ),
        (
            json!({"email": "x@example.com", "password": "password-123"}),
            vec![("email", Kind::Str), ("password", Kind::Str)],
            true,
        ),
        (json!({"userId": 2}), vec![("userId", Kind::U64)], false),
        (
            json!({"publicKey": "-----BEGIN PUBLIC KEY-----"}),
            vec![("publicKey", Kind::Str)],
            true,
        ),
    ]
}

fn http_case() -> impl Strategy<Value = HttpCase> {
    let mutated = (0..4usize, 0usize..4, mutation()).prop_map(|(route, f, m)| {
        let t = http_templates();
        let (data, req, strict) = &t[route];
        let m = match m {
            Mutation::Unknown(..) if !strict => Mutation::Remove,
            other => other,
        };
        HttpCase::Json {
            route,
            body: mutate(data, req, f, &m),
        }
    });
    let truncated = (0..4usize, any::<prop::sample::Index>()).prop_map(|(route, cut)| {
        let full = http_templates()[route].0.to_string();
        let at = cut.index(full.len() - 1);
        HttpCase::Json {
            route,
            body: full[..at].to_string(),
        }
    });
    let random = (0..4usize, arb_json()).prop_map(|(route, v)| HttpCase::Json {
        route,
        body: v.to_string(),
    });
    let deep = (0..4usize, 129usize..5000).prop_map(|(route, d)| HttpCase::Json {
        route,
        body: format!("{}{}", "[".repeat(d), "]".repeat(d)),
    });
    let bytes = (
        0..4usize,
        prop::collection::vec(any::<u8>(), 0..200),
        invalid_utf8(),
    )
        .prop_map(|(route, mut b, bad)| {
            b.extend(bad);
            HttpCase::Bytes { route, body: b }
        });
    let key = (0..1usize, "[ -~]{0,200}").prop_map(|(_, s)| HttpCase::Json {
        route: 3,
        body: json!({"publicKey": s}).to_string(),
    });
    prop_oneof![5 => mutated, 2 => truncated, 2 => random, 1 => deep, 2 => bytes, 1 => key]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_frames_and_bodies_get_errors_store_nothing_and_never_panic() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let fz = p.register("fuzzer", &secrets).await;
    let other = p.register("fuzzpeer", &secrets).await;
    let chat = p.direct_chat(&fz, &other).await;
    let url = ws_url(&p.ws_base(), &fz.token);
    let base = p.base();
    let token = fz.token.clone();

    let ws_tried = Arc::new(AtomicUsize::new(0));
    let http_tried = Arc::new(AtomicUsize::new(0));
    let (wt, ht) = (ws_tried.clone(), http_tried.clone());
    let outcome = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = rt.block_on(async { Conn::ready(&url).await.0 });
        let state = RefCell::new(WsState {
            conn,
            url: url.clone(),
            n: 0,
            reconnects: 0,
        });
        let mut runner = TestRunner::new(Config {
            cases: WS_CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let ws = runner.run(&ws_case(chat), |case| {
            wt.fetch_add(1, Ordering::Relaxed);
            rt.block_on(ws_check(&mut state.borrow_mut(), case))
        });
        let reconnects = state.borrow().reconnects;

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut runner = TestRunner::new(Config {
            cases: HTTP_CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let http_result = runner.run(&http_case(), |case| {
            ht.fetch_add(1, Ordering::Relaxed);
            rt.block_on(async {
                let (route, body): (usize, Vec<u8>) = match case {
                    HttpCase::Json { route, body } => (route, body.into_bytes()),
                    HttpCase::Bytes { route, body } => (route, body),
                };
                let mut req = http
                    .post(format!("{base}{}", ROUTES[route]))
                    .header("Content-Type", "application/json")
                    .body(body);
                if route >= 2 {
                    req = req.bearer_auth(&token);
                }
                let res = req
                    .send()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let status = res.status().as_u16();
                let text = res.text().await.unwrap_or_default();
                prop_assert!(
                    (400..500).contains(&status),
                    "{} answered {status}: {text}",
                    ROUTES[route]
                );
                let v: Value = serde_json::from_str(&text).map_err(|_| {
                    TestCaseError::fail(format!("not a JSON error: {status} {text}"))
                })?;
                prop_assert!(v["error"]["code"].is_string(), "error body: {v}");
                let health = http.get(format!("{base}/api/health")).send().await;
                prop_assert!(
                    health.is_ok_and(|h| h.status() == 200),
                    "/api/health after the case"
                );
                Ok(())
            })
        });
        (
            ws.map_err(|e| e.to_string()),
            http_result.map_err(|e| e.to_string()),
            reconnects,
        )
    })
    .await
    .unwrap();
    let (ws, http, reconnects) = outcome;
    ws.expect("WebSocket fuzzing");
    http.expect("HTTP fuzzing");

    // Nothing was stored by any case.
    let messages = count(
        &db.url,
        &format!("SELECT COUNT(*) FROM messages WHERE sender_id = {}", fz.id),
    )
    .await;
    let users = count(&db.url, "SELECT COUNT(*) FROM users").await;
    let chats = count(&db.url, "SELECT COUNT(*) FROM chats").await;
    let keys = count(&db.url, "SELECT COUNT(*) FROM public_keys").await;
    // The fuzzed session still works for a real message.
    let (mut c, _) = Conn::ready(&ws_url(&p.ws_base(), &fz.token)).await;
    c.send(json!({"event": "message:send", "ref": "ok", "data": {"chatId": chat, "clientId": "fz-ok", "kind": "text", "content": "still fine"}}));
    let ok = c.reply("ok", Duration::from_secs(10)).await.unwrap();
    reliability(
        "fuzz",
        &[
            ("ws_cases", ws_tried.load(Ordering::Relaxed).to_string()),
            ("http_cases", http_tried.load(Ordering::Relaxed).to_string()),
            ("ws_reconnects_after_invalid_utf8", reconnects.to_string()),
            (
                "stored_by_fuzz",
                (messages + users - 2 + chats - 1 + keys).to_string(),
            ),
        ],
    );
    assert_eq!(messages, 0, "a fuzzed frame stored a message");
    assert_eq!(users, 2, "a fuzzed body registered a user");
    assert_eq!(chats, 1, "a fuzzed body made a chat");
    assert_eq!(keys, 0, "a fuzzed body stored a key");
    assert_eq!(ok["event"], "ack", "{ok}");
    assert_eq!(p.status("/api/health").await, 200);
    p.assert_logs_clean(&secrets);
}
