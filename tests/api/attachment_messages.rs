//! Photos, files and voice messages as messages (issue 18): sent by `mediaId` with a
//! caption and a reply, received on another node with their `media`, read back by
//! history, sync and the chat list; the upload is claimed once and only by
//! the rules of PROTOCOL.md ("Attachments"), a refusal stores nothing; encrypted
//! attachments; and a delete for everyone that takes the files and the quota with it.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use mysql_async::prelude::Queryable;
use parley::e2ee::{self, Envelope};
use parley::{ChatId, UserId};
use reqwest::StatusCode;
use rsa::PrivateKey;
use serde_json::{json, Value};

use crate::changes::{change_id, deleted_shape, event_for, read_message, received, sync_all};
use crate::helpers::{spawn_app, two_nodes, AnnBob, Redis, TestApp, TestUser};
use parley_testkit::media::{audio_form, files_in, upload_audio, webm};
use parley_testkit::pictures::{media_form, png};

/// Bytes no sniffer takes for an image or audio: a file.
fn pdf() -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    v.extend((0..3000u32).map(|i| (i * 13 % 251) as u8));
    v
}

/// `POST /api/media` of `bytes` named `name` into `chat` (plus `extra` form fields),
/// as `user`: the 201 answer.
async fn upload(
    app: &TestApp,
    user: &TestUser,
    chat: u64,
    bytes: Vec<u8>,
    name: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut form = media_form(chat, bytes, name);
    for (k, v) in extra {
        form = form.text(k.to_string(), v.to_string());
    }
    let res = app
        .http
        .post(app.url("/api/media"))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "upload {name}: {body}");
    body
}

/// `message:send` of an attachment: `{chatId, clientId, kind, mediaId}` plus `more`.
fn attachment(chat: u64, client_id: &str, kind: &str, up: &Value, more: Value) -> Value {
    let mut data =
        json!({"chatId": chat, "clientId": client_id, "kind": kind, "mediaId": up["mediaId"]});
    for (k, v) in more.as_object().unwrap() {
        data[k] = v.clone();
    }
    data
}

async fn get(app: &TestApp, user: &TestUser, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
}

async fn get_json(app: &TestApp, user: &TestUser, path: &str) -> Value {
    let res = get(app, user, path).await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.json().await.unwrap()
}

/// The caller's stored bytes, from `GET /api/media/usage`.
async fn usage(app: &TestApp, user: &TestUser) -> u64 {
    get_json(app, user, "/api/media/usage").await["storageUsedBytes"]
        .as_u64()
        .expect("storageUsedBytes")
}

async fn messages_stored(app: &TestApp) -> u64 {
    let mut conn = app.mysql().await;
    conn.query_first("SELECT COUNT(*) FROM messages")
        .await
        .unwrap()
        .unwrap()
}

/// The message that claimed upload `id` (`None`: unsent).
async fn claimed_by(app: &TestApp, id: &Value) -> Option<u64> {
    let mut conn = app.mysql().await;
    let row: Option<Option<u64>> = conn
        .exec_first(
            "SELECT message_id FROM media_files WHERE id = ?",
            (id.as_u64().unwrap(),),
        )
        .await
        .unwrap();
    row.expect("the upload is stored")
}

/// Presence frames that may come at any time.
const PRESENCE: &[&str] = &["user:online", "user:offline"];

#[actix_web::test]
async fn an_image_with_a_caption_and_a_reply_reaches_the_other_node_and_every_read_carries_it() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let mut a = n1.ws(&ann).await;
    let mut b = n2.ws(&bob).await;
    let question = b.send_text(chat, "q", "how is the view?").await;
    received(&mut a, &question["id"]).await;

    let up = upload(&n1, &ann, chat, png(640, 480), "view.png", &[]).await;
    assert_eq!(up["kind"], "image");
    let sent = a
        .acked(
            "message:send",
            attachment(
                chat,
                "img",
                "image",
                &up,
                json!({"content": "the view", "replyToId": question["id"]}),
            ),
        )
        .await;
    assert_eq!(sent["media"], up, "the message carries the upload answer");

    let got = received(&mut b, &sent["id"]).await;
    assert_eq!(got["kind"], "image");
    assert_eq!(got["content"], "the view");
    assert_eq!(got["audio"], Value::Null);
    let media = &got["media"];
    assert_eq!(media, &up, "as uploaded, on the other node");
    assert_eq!(media["mime"], "image/png");
    assert_eq!(media["name"], "view.png");
    assert_eq!(
        (media["width"].as_u64(), media["height"].as_u64()),
        (Some(640), Some(480))
    );
    let id = up["mediaId"].as_u64().unwrap();
    assert_eq!(media["url"], format!("/api/media/{id}"));
    assert_eq!(media["thumbnailUrl"], format!("/api/media/{id}/thumbnail"));
    assert!(
        media.get("durationMs").is_none(),
        "absent, not null: {media}"
    );
    assert_eq!(
        got["replyTo"],
        json!({"id": question["id"], "senderId": bob.id, "kind": "text", "preview": "how is the view?", "deleted": false})
    );
    // Bob downloads it and its thumbnail from the node that stores it.
    let res = get(&n1, &bob, media["url"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = get(&n1, &bob, media["thumbnailUrl"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);

    // A reply to the image previews its caption.
    let reply = b.send_reply(chat, "re", "lovely", &got).await;
    assert_eq!(
        reply["replyTo"],
        json!({"id": sent["id"], "senderId": ann.id, "kind": "image", "preview": "the view", "deleted": false})
    );

    // History (either node), sync, the chat list and search carry the same media.
    let history = read_message(&n2, &bob, chat, &sent["id"]).await;
    assert_eq!(history["media"], up);
    assert_eq!(history["content"], "the view");
    let (frames, _) = sync_all(&mut b, question["id"].as_u64().unwrap(), None).await;
    let synced = frames
        .iter()
        .find(|f| f["data"]["id"] == sent["id"])
        .expect("sync brings the image");
    assert_eq!(synced["data"]["media"], up);
    let chats = get_json(&n2, &bob, "/api/chats").await;
    let listed = chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == chat)
        .expect("the chat is listed");
    assert_eq!(listed["lastMessage"]["id"], reply["id"]);
    assert_eq!(
        listed["lastMessage"]["replyTo"]["preview"], "the view",
        "the list's last message quotes the caption"
    );
}

#[actix_web::test]
async fn the_chat_list_shows_an_attachment_as_the_last_message() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let up = upload(&app, &ann, chat, pdf(), "report.pdf", &[]).await;
    let sent = a
        .acked(
            "message:send",
            attachment(chat, "f", "file", &up, json!({})),
        )
        .await;
    let chats = get_json(&app, &bob, "/api/chats").await;
    let last = &chats["chats"][0]["lastMessage"];
    assert_eq!(last["id"], sent["id"]);
    assert_eq!(last["kind"], "file");
    assert_eq!(last["media"], up);
}

#[actix_web::test]
async fn files_and_voice_messages_go_by_media_id_and_an_old_clients_audio_id_still_works() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;

    let file = upload(&app, &ann, chat, pdf(), "report.pdf", &[]).await;
    assert_eq!(file["kind"], "file");
    let sent = a
        .acked(
            "message:send",
            attachment(chat, "f", "file", &file, json!({})),
        )
        .await;
    let got = received(&mut b, &sent["id"]).await;
    assert_eq!(got["kind"], "file");
    assert_eq!(got["content"], "");
    assert_eq!(got["media"], file);
    assert_eq!(got["media"]["mime"], "application/octet-stream");
    assert_eq!(got["media"]["name"], "report.pdf");
    for absent in ["width", "height", "thumbnailUrl", "durationMs"] {
        assert!(got["media"].get(absent).is_none(), "{absent}: {got}");
    }
    let res = get(&app, &bob, got["media"]["url"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().to_vec(), pdf(), "bytes as sent");
    // A reply to a file without a caption has no preview: the client shows the file.
    let reply = b.send_reply(chat, "rf", "thanks", &got).await;
    assert_eq!(reply["replyTo"]["kind"], "file");
    assert_eq!(reply["replyTo"]["preview"], Value::Null);

    // A voice message by mediaId, with a caption: `audio` and `media` name one upload.
    let voice = upload(
        &app,
        &ann,
        chat,
        webm(4000),
        "v.webm",
        &[("durationMs", "1500")],
    )
    .await;
    assert_eq!(voice["kind"], "audio");
    let sent = a
        .acked(
            "message:send",
            attachment(chat, "v", "audio", &voice, json!({"content": "listen"})),
        )
        .await;
    let got = received(&mut b, &sent["id"]).await;
    assert_eq!(got["media"], voice);
    assert_eq!(got["content"], "listen");
    assert_eq!(got["audio"]["audioId"], voice["mediaId"]);
    assert_eq!(got["audio"]["durationMs"], 1500);
    assert_eq!(
        got["audio"]["url"],
        format!("/api/media/audio/{}", voice["mediaId"])
    );

    // The old client: upload-audio, then {kind: "audio", audioId}.
    let res = upload_audio(
        &app.http,
        &app.url("/api/messages/upload-audio"),
        &ann.token,
        audio_form(chat, webm(3000), "old.webm"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let old: Value = res.json().await.unwrap();
    let sent = a
        .acked(
            "message:send",
            json!({"chatId": chat, "clientId": "old", "kind": "audio", "audioId": old["audioId"]}),
        )
        .await;
    let got = received(&mut b, &sent["id"]).await;
    assert_eq!(got["audio"]["audioId"], old["audioId"]);
    assert_eq!(got["audio"]["url"], old["url"]);
    assert_eq!(got["audio"]["bytes"], 3000);
    assert_eq!(got["media"]["mediaId"], old["audioId"], "the same id");
    assert_eq!(got["media"]["kind"], "audio");
    assert_eq!(
        got["media"]["url"],
        format!("/api/media/{}", old["audioId"])
    );
    // Both ids, the same number: fine; different: refused.
    let both = upload(&app, &ann, chat, webm(2000), "b.webm", &[]).await;
    let code = a
        .refused(
            "message:send",
            json!({"chatId": chat, "clientId": "both", "kind": "audio", "audioId": both["mediaId"], "mediaId": old["audioId"]}),
        )
        .await;
    assert_eq!(code, "invalid_data");
    a.acked(
        "message:send",
        json!({"chatId": chat, "clientId": "both", "kind": "audio", "audioId": both["mediaId"], "mediaId": both["mediaId"]}),
    )
    .await;
}

#[actix_web::test]
async fn an_upload_is_claimed_once_by_its_uploader_in_its_chat_and_a_refusal_stores_nothing() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let cat = app.register("cat").await;
    let group = app.group_chat(&ann, &[&bob, &cat]).await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;

    let image = upload(&app, &ann, chat, png(64, 48), "a.png", &[]).await;
    let other_image = upload(&app, &ann, chat, png(64, 48), "c.png", &[]).await;
    let file = upload(&app, &ann, chat, pdf(), "a.pdf", &[]).await;
    let elsewhere = upload(&app, &ann, group, png(64, 48), "g.png", &[]).await;
    let bobs = upload(&app, &bob, chat, png(64, 48), "b.png", &[]).await;

    let first = a
        .acked(
            "message:send",
            attachment(chat, "one", "image", &image, json!({})),
        )
        .await;
    // The same clientId again is the same message; a new one is a second claim.
    let again = a
        .acked(
            "message:send",
            attachment(chat, "one", "image", &image, json!({})),
        )
        .await;
    assert_eq!(again["id"], first["id"]);
    let stored = messages_stored(&app).await;
    for (why, data, code) in [
        (
            "a second send of the same upload",
            attachment(chat, "two", "image", &image, json!({})),
            "forbidden",
        ),
        (
            "someone else's upload",
            attachment(chat, "three", "image", &bobs, json!({})),
            "forbidden",
        ),
        (
            "an upload into another chat",
            attachment(chat, "four", "image", &elsewhere, json!({})),
            "forbidden",
        ),
        (
            "an id that does not exist",
            attachment(
                chat,
                "five",
                "image",
                &json!({"mediaId": 987_654}),
                json!({}),
            ),
            "forbidden",
        ),
        (
            "a file sent as an image",
            attachment(chat, "six", "image", &file, json!({})),
            "invalid_data",
        ),
        (
            "a file sent as audio",
            attachment(chat, "seven", "audio", &file, json!({})),
            "invalid_data",
        ),
        (
            "an image sent as a file",
            attachment(chat, "eight", "file", &other_image, json!({})),
            "invalid_data",
        ),
        (
            "a text message naming an upload",
            attachment(chat, "nine", "text", &file, json!({"content": "hi"})),
            "invalid_data",
        ),
        (
            "an image without mediaId",
            json!({"chatId": chat, "clientId": "ten", "kind": "image", "content": "x"}),
            "invalid_data",
        ),
        (
            "a caption over 10,000 characters",
            attachment(
                chat,
                "eleven",
                "file",
                &file,
                json!({"content": "x".repeat(10_001)}),
            ),
            "too_large",
        ),
    ] {
        assert_eq!(a.refused("message:send", data).await, code, "{why}");
    }
    // Bob sending Ann's upload in their chat: the same answer as an unknown id.
    assert_eq!(
        b.refused(
            "message:send",
            attachment(chat, "b1", "file", &file, json!({}))
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        messages_stored(&app).await,
        stored,
        "nothing refused is stored"
    );
    assert_eq!(
        claimed_by(&app, &image["mediaId"]).await,
        first["id"].as_u64()
    );
    for unsent in [&file, &other_image, &elsewhere, &bobs] {
        assert_eq!(claimed_by(&app, &unsent["mediaId"]).await, None, "{unsent}");
    }
    // Refused the wrong way, it can still be sent the right way.
    a.acked(
        "message:send",
        attachment(chat, "file", "file", &file, json!({})),
    )
    .await;
    a.acked(
        "message:send",
        attachment(group, "group", "image", &elsewhere, json!({})),
    )
    .await;
    // Bob heard of the messages stored, and of nothing refused.
    let mut heard = Vec::new();
    while heard.len() < 3 {
        heard.push(b.wait_for("message:received").await["data"]["clientId"].clone());
    }
    assert_eq!(heard, [json!("one"), json!("file"), json!("group")]);
    b.assert_quiet(std::time::Duration::from_millis(300), PRESENCE)
        .await;
}

/// What Ann seals into an encrypted attachment's envelope (PROTOCOL.md, "Encrypted
/// attachments"), its fields in the documented order.
fn attachment_plaintext(text: &str, key: &[u8], iv: &[u8], mime: &str, name: &str) -> String {
    let s = |v: &str| Value::from(v).to_string();
    format!(
        r#"{{"text":{},"media":{{"key":{},"iv":{},"mime":{},"name":{},"width":null,"height":null}}}}"#,
        s(text),
        s(&B64.encode(key)),
        s(&B64.encode(iv)),
        s(mime),
        s(name)
    )
}

fn aes_gcm(key: [u8; 32], iv: [u8; 12], bytes: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(key))
        .encrypt(&Nonce::from(iv), bytes)
        .unwrap()
}

#[test]
fn the_worked_example_of_an_encrypted_attachment_is_what_aes_gcm_makes() {
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let iv: [u8; 12] = std::array::from_fn(|i| 100 + i as u8);
    let uploaded = aes_gcm(key, iv, b"%PDF-1.7\n");
    let hex: String = uploaded.iter().map(|b| format!("{b:02x}")).collect();
    let protocol = include_str!("../../docs/PROTOCOL.md");
    for line in [
        format!("key        {}", B64.encode(key)),
        format!("iv         {}", B64.encode(iv)),
        format!("uploaded   {hex}"),
        format!(
            "plaintext  {}",
            attachment_plaintext("the report", &key, &iv, "application/pdf", "report.pdf")
        ),
    ] {
        assert!(protocol.contains(&line), "PROTOCOL.md shows {line}");
    }
}

#[actix_web::test]
async fn an_encrypted_upload_goes_only_in_an_encrypted_image_or_file_message_and_decrypts() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    // One RSA key for both (the server only checks the envelope's shape): tests stay fast.
    let private = PrivateKey::new(&mut rand::rng(), 2048).unwrap();
    let public = private.to_public_key();
    let seal = |client_id: &str, plaintext: &str| {
        let env = e2ee::encrypt(
            plaintext,
            ChatId(chat),
            UserId(ann.id),
            client_id,
            &[(UserId(ann.id), &public), (UserId(bob.id), &public)],
        )
        .unwrap();
        serde_json::to_value(env).unwrap()
    };
    let photo = png(300, 200);
    let (key, iv) = ([7u8; 32], [9u8; 12]);
    let sealed_bytes = aes_gcm(key, iv, &photo);
    let secret = upload(
        &app,
        &ann,
        chat,
        sealed_bytes.clone(),
        "blob",
        &[("encrypted", "true")],
    )
    .await;
    assert_eq!(secret["kind"], "file", "the server cannot see what it is");
    let plain = upload(&app, &ann, chat, png(64, 48), "p.png", &[]).await;
    let plaintext = attachment_plaintext("for your eyes", &key, &iv, "image/png", "photo.png");

    let stored = messages_stored(&app).await;
    for (why, data) in [
        (
            "an encrypted upload in a plaintext message",
            attachment(chat, "e1", "file", &secret, json!({})),
        ),
        (
            "an encrypted upload in a plaintext image message",
            attachment(chat, "e2", "image", &secret, json!({})),
        ),
        (
            "a plaintext upload in an encrypted message",
            attachment(
                chat,
                "e3",
                "image",
                &plain,
                json!({"encrypted": true, "e2ee": seal("e3", &plaintext)}),
            ),
        ),
        (
            "an encrypted audio message",
            attachment(
                chat,
                "e4",
                "audio",
                &secret,
                json!({"encrypted": true, "e2ee": seal("e4", &plaintext)}),
            ),
        ),
    ] {
        assert_eq!(
            a.refused("message:send", data).await,
            "invalid_data",
            "{why}"
        );
    }
    assert_eq!(
        messages_stored(&app).await,
        stored,
        "nothing refused is stored"
    );
    assert_eq!(claimed_by(&app, &secret["mediaId"]).await, None);

    let sent = a
        .acked(
            "message:send",
            attachment(
                chat,
                "e5",
                "image",
                &secret,
                json!({"encrypted": true, "e2ee": seal("e5", &plaintext)}),
            ),
        )
        .await;
    let got = received(&mut b, &sent["id"]).await;
    assert_eq!(got["kind"], "image");
    assert_eq!(got["encrypted"], true);
    assert_eq!(got["content"], "");
    assert_eq!(got["media"], secret);
    assert_eq!(got["media"]["mime"], "application/octet-stream");
    // Bob opens the envelope, fetches the bytes and decrypts them.
    let env: Envelope = serde_json::from_value(got["e2ee"].clone()).unwrap();
    let opened = e2ee::decrypt(
        &env,
        ChatId(chat),
        UserId(ann.id),
        "e5",
        UserId(bob.id),
        &private,
    )
    .unwrap();
    let inner: Value = serde_json::from_str(&opened).unwrap();
    assert_eq!(inner["text"], "for your eyes");
    let key: [u8; 32] = B64
        .decode(inner["media"]["key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let iv: [u8; 12] = B64
        .decode(inner["media"]["iv"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let res = get(&app, &bob, got["media"]["url"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let fetched = res.bytes().await.unwrap().to_vec();
    assert_eq!(fetched, sealed_bytes, "stored byte for byte");
    let opened = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key))
        .decrypt(&Nonce::from(iv), fetched.as_slice())
        .unwrap();
    assert_eq!(opened, photo);
    // A reply to it shows no preview: only the members can read it.
    let reply = b.send_reply(chat, "re", "wow", &got).await;
    assert_eq!(reply["replyTo"]["preview"], Value::Null);
}

#[actix_web::test]
async fn deleting_an_image_for_everyone_removes_its_file_and_thumbnail_and_frees_the_quota() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let media_dir = app.settings.storage.uploads_dir.join("media");
    let thumbs_dir = media_dir.join("thumbs");
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let up = upload(&app, &ann, chat, png(800, 600), "big.png", &[]).await;
    let files = |dir: &std::path::Path| {
        files_in(dir)
            .into_iter()
            .filter(|n| n != "thumbs")
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&media_dir).len(), 1, "the image is stored");
    assert_eq!(files(&thumbs_dir).len(), 1, "with its thumbnail");
    assert!(usage(&app, &ann).await >= up["bytes"].as_u64().unwrap());
    let sent = a
        .acked(
            "message:send",
            attachment(chat, "img", "image", &up, json!({"content": "gone soon"})),
        )
        .await;
    received(&mut b, &sent["id"]).await;
    let url = up["url"].as_str().unwrap().to_string();
    let thumb = up["thumbnailUrl"].as_str().unwrap().to_string();
    for path in [&url, &thumb] {
        assert_eq!(
            get(&app, &bob, path).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }

    change_id(&a.delete(&sent).await);
    event_for(&mut b, "message:deleted", &sent["id"]).await;
    assert_eq!(files(&media_dir), Vec::<String>::new(), "the image is gone");
    assert_eq!(
        files(&thumbs_dir),
        Vec::<String>::new(),
        "the thumbnail too"
    );
    assert_eq!(usage(&app, &ann).await, 0, "the quota is free again");
    for user in [&ann, &bob] {
        for path in [&url, &thumb] {
            let res = get(&app, user, path).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "forbidden", "{path}");
        }
    }
    assert_eq!(
        read_message(&app, &bob, chat, &sent["id"]).await,
        deleted_shape(&sent)
    );
    let mut conn = app.mysql().await;
    let rows: u64 = conn
        .query_first("SELECT COUNT(*) FROM media_files")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows, 0, "the upload's row is gone");
    b.assert_quiet(std::time::Duration::from_millis(200), PRESENCE)
        .await;
}
