use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use mysql_async::prelude::Queryable;
use parley::e2ee::{self, Envelope};
use parley::{ChatId, UserId};
use reqwest::StatusCode;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{PrivateKey, PublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{assert_error, spawn_app, AnnBob, TestApp, TestUser};

struct Keys {
    private: PrivateKey,
    public: PublicKey,
    pem: String,
}

fn keys(bits: usize) -> Keys {
    let private = PrivateKey::new(&mut rand::rng(), bits).unwrap();
    let public = private.to_public_key();
    let pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    Keys {
        private,
        public,
        pem,
    }
}

/// The fingerprint computed independently: SHA-256 over the PEM's base64 body.
fn fingerprint_of(pem: &str) -> String {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    hex::encode(Sha256::digest(der))
}

async fn publish(app: &TestApp, user: &TestUser, pem: &str) -> reqwest::Response {
    app.post_auth(
        "/api/encryption/public-key",
        &user.token,
        &json!({"publicKey": pem}),
    )
    .await
}

#[actix_web::test]
async fn keys_are_stored_and_served_with_their_fingerprint() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let k = keys(2048);
    let res = publish(&app, &ann, &k.pem).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["userId"], ann.id);
    assert_eq!(body["fingerprint"], fingerprint_of(&k.pem));
    let got: Value = app
        .get_auth(
            &format!("/api/encryption/public-key/{}", ann.id),
            &bob.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["fingerprint"], fingerprint_of(&k.pem));
    assert_eq!(got["publicKey"].as_str().unwrap().trim(), k.pem.trim());
    let me: Value = app
        .get_auth("/api/users/me", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["hasPublicKey"], true);
    let res = app
        .get_auth(
            &format!("/api/encryption/public-key/{}", bob.id),
            &ann.token,
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[actix_web::test]
async fn weak_and_garbage_keys_are_refused() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let weak = keys(1024);
    for (pem, why) in [
        (weak.pem.as_str(), "1024-bit key"),
        ("not a key", "garbage"),
        ("-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----", "truncated"),
        ("", "empty"),
    ] {
        let res = publish(&app, &ann, pem).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{why}");
        let b: Value = res.json().await.unwrap();
        assert_eq!(b["error"]["code"], "invalid_key", "{why}: {b}");
    }
    let res = app
        .get_auth(
            &format!("/api/encryption/public-key/{}", ann.id),
            &ann.token,
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[actix_web::test]
async fn replacing_a_key_warns_everyone_who_shares_a_chat() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, .. } = app.ann_bob().await;
    let eve = app.register("eve").await;
    let mut b = app.ws(&bob).await;
    let mut e = app.ws(&eve).await;
    publish(&app, &ann, &keys(2048).pem).await;
    b.assert_quiet(std::time::Duration::from_millis(300), &["user:online"])
        .await;
    let second = keys(2048);
    publish(&app, &ann, &second.pem).await;
    let changed = b.wait_for("user:key-changed").await;
    assert_eq!(changed["data"]["userId"], ann.id);
    assert_eq!(changed["data"]["fingerprint"], fingerprint_of(&second.pem));
    e.assert_quiet(std::time::Duration::from_millis(300), &[])
        .await;
}

#[actix_web::test]
async fn two_rust_clients_exchange_an_encrypted_message_the_server_cannot_read() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let (ka, kb) = (keys(2048), keys(2048));
    publish(&app, &ann, &ka.pem).await;
    publish(&app, &bob, &kb.pem).await;
    let secret = "meet me at the old mill at nine";
    let env = e2ee::encrypt(
        secret,
        ChatId(chat),
        UserId(ann.id),
        "enc-1",
        &[(UserId(ann.id), &ka.public), (UserId(bob.id), &kb.public)],
    )
    .unwrap();
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    a.send(json!({"event": "message:send", "ref": "e", "data": {"chatId": chat, "clientId": "enc-1", "kind": "text", "content": "", "encrypted": true, "e2ee": env}}));
    assert_eq!(a.reply_to("e").await["event"], "ack");
    let got = b.wait_for("message:received").await["data"].clone();
    assert_eq!(got["encrypted"], true);
    assert_eq!(got["content"], "");
    let received: Envelope = serde_json::from_value(got["e2ee"].clone()).unwrap();
    let plain = e2ee::decrypt(
        &received,
        ChatId(chat),
        UserId(ann.id),
        "enc-1",
        UserId(bob.id),
        &kb.private,
    )
    .unwrap();
    assert_eq!(plain, secret);
    // The sender reads its own history.
    let page: Value = app
        .get_auth(&format!("/api/messages?chatId={chat}"), &ann.token)
        .await
        .json()
        .await
        .unwrap();
    let mine: Envelope = serde_json::from_value(page["messages"][0]["e2ee"].clone()).unwrap();
    assert_eq!(
        e2ee::decrypt(
            &mine,
            ChatId(chat),
            UserId(ann.id),
            "enc-1",
            UserId(ann.id),
            &ka.private
        )
        .unwrap(),
        secret
    );
    // Nothing in the database is the plaintext.
    let mut conn = app.mysql().await;
    let (content, stored): (String, String) = conn
        .query_first("SELECT content, e2ee FROM messages")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(content, "");
    assert!(!stored.contains("old mill"));
    // Replayed as if from another chat, it does not decrypt.
    assert!(e2ee::decrypt(
        &received,
        ChatId(chat + 1),
        UserId(ann.id),
        "enc-1",
        UserId(bob.id),
        &kb.private
    )
    .is_err());
}

#[actix_web::test]
async fn malformed_envelopes_are_refused() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let (ka, kb) = (keys(2048), keys(2048));
    let good = e2ee::encrypt(
        "x",
        ChatId(chat),
        UserId(ann.id),
        "m",
        &[(UserId(ann.id), &ka.public), (UserId(bob.id), &kb.public)],
    )
    .unwrap();
    let mut short_iv = good.clone();
    short_iv.iv = base64::engine::general_purpose::STANDARD.encode([0u8; 8]);
    let mut missing_member = good.clone();
    missing_member.keys.remove(&bob.id.to_string());
    let mut a = app.ws(&ann).await;
    let cases = [
        (
            json!({"content": "", "encrypted": true, "e2ee": short_iv}),
            "invalid_envelope",
            "short IV",
        ),
        (
            json!({"content": "", "encrypted": true, "e2ee": missing_member}),
            "invalid_envelope",
            "a member's key missing",
        ),
        (
            json!({"content": "the plaintext too", "encrypted": true, "e2ee": good}),
            "invalid_data",
            "plaintext beside ciphertext",
        ),
        (
            json!({"content": "", "encrypted": true}),
            "invalid_data",
            "no envelope",
        ),
        (
            json!({"content": "hi", "encrypted": false, "e2ee": good}),
            "invalid_data",
            "envelope but not encrypted",
        ),
        (
            json!({"content": "", "encrypted": true, "e2ee": {"v": 1}}),
            "invalid_envelope",
            "half an envelope",
        ),
    ];
    for (i, (extra, code, why)) in cases.into_iter().enumerate() {
        let mut data = json!({"chatId": chat, "clientId": format!("bad{i}"), "kind": "text"});
        data.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        a.send(json!({"event": "message:send", "ref": why, "data": data}));
        let reply = a.reply_to(why).await;
        assert_eq!(reply["data"]["code"], code, "{why}: {reply}");
    }
    let mut conn = app.mysql().await;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM messages")
        .await
        .unwrap();
    assert_eq!(n, Some(0));
}

fn node(command: &str, input: &Value) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2ee/webcrypto.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn envelopes_interoperate_with_webcrypto_both_ways() {
    let (ka, kb) = (keys(2048), keys(2048));
    // WebCrypto encrypts, Rust decrypts.
    let made = node(
        "encrypt",
        &json!({"plaintext": "from the browser ✓", "chatId": 7, "senderId": 1, "clientId": "wc-1",
                "keys": {"1": ka.pem, "2": kb.pem}}),
    );
    let env: Envelope = serde_json::from_str(&made).unwrap();
    parley_actors::e2ee::check_envelope(&made, &[UserId(1), UserId(2)]).unwrap();
    assert_eq!(
        e2ee::decrypt(&env, ChatId(7), UserId(1), "wc-1", UserId(2), &kb.private).unwrap(),
        "from the browser ✓"
    );
    // Rust encrypts, WebCrypto decrypts.
    let env = e2ee::encrypt(
        "from rust ✓",
        ChatId(7),
        UserId(2),
        "rs-1",
        &[(UserId(1), &ka.public), (UserId(2), &kb.public)],
    )
    .unwrap();
    let pkcs8 = ka.private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let plain = node(
        "decrypt",
        &json!({"envelope": env, "chatId": 7, "senderId": 2, "clientId": "rs-1", "readerId": 1, "privatePkcs8Pem": pkcs8}),
    );
    assert_eq!(plain, "from rust ✓");
}
