use std::time::Duration;

use mysql_async::prelude::Queryable;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, AnnBob, TestApp, TestUser};
use parley_testkit::media::{self, audio_form as form, upload_audio, webm};

async fn upload(app: &TestApp, user: &TestUser, form: Form) -> reqwest::Response {
    upload_audio(
        &app.http,
        &app.url("/api/messages/upload-audio"),
        &user.token,
        form,
    )
    .await
}

/// The audio files in the app's uploads directory, sorted.
fn files_in(app: &TestApp) -> Vec<String> {
    let mut names = media::files_in(&app.settings.storage.uploads_dir.join("audio"));
    names.sort();
    names
}

async fn audio_rows(app: &TestApp) -> u64 {
    let mut conn = app.mysql().await;
    conn.query_first("SELECT COUNT(*) FROM media_files")
        .await
        .unwrap()
        .unwrap()
}

#[actix_web::test]
async fn a_voice_message_goes_up_out_and_down_with_ranges() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let bytes = webm(5000);
    let res = upload(
        &app,
        &ann,
        form(chat, bytes.clone(), "voice.webm").text("durationMs", "1234"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let up: Value = res.json().await.unwrap();
    assert_eq!(up["mime"], "audio/webm");
    assert_eq!(up["bytes"], 5000);
    let audio_id = up["audioId"].as_u64().unwrap();
    assert_eq!(up["url"], format!("/api/media/audio/{audio_id}"));

    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    a.send(json!({"event": "message:send", "ref": "v", "data": {"chatId": chat, "clientId": "v1", "kind": "audio", "audioId": audio_id}}));
    let ack = a.reply_to("v").await;
    assert_eq!(ack["event"], "ack", "{ack}");
    let got = b.wait_for("message:received").await["data"].clone();
    assert_eq!(got["kind"], "audio");
    assert_eq!(got["audio"]["audioId"], audio_id);
    assert_eq!(got["audio"]["mime"], "audio/webm");
    assert_eq!(got["audio"]["bytes"], 5000);
    assert_eq!(got["audio"]["durationMs"], 1234);

    let url = app.url(got["audio"]["url"].as_str().unwrap());
    let res = app
        .http
        .get(&url)
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "audio/webm");
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    assert_eq!(res.headers()["content-length"], "5000");
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);
    let res = app
        .http
        .get(&url)
        .bearer_auth(&bob.token)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.headers()["content-range"], "bytes 100-199/5000");
    assert_eq!(
        res.bytes().await.unwrap().to_vec(),
        bytes[100..200].to_vec()
    );
    // The history shows it too.
    let page: Value = app
        .get_auth(&format!("/api/messages?chatId={chat}"), &ann.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"][0]["audio"]["audioId"], audio_id);
}

#[actix_web::test]
async fn outsiders_and_anonymous_callers_cannot_download() {
    let app = spawn_app().await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let eve = app.register("eve").await;
    let up: Value = upload(&app, &ann, form(chat, webm(100), "a.webm"))
        .await
        .json()
        .await
        .unwrap();
    let url = app.url(up["url"].as_str().unwrap());
    let res = app
        .http
        .get(&url)
        .bearer_auth(&eve.token)
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.http.get(&url).send().await.unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    let res = app
        .http
        .get(app.url("/api/media/audio/424242"))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
}

#[actix_web::test]
async fn uploads_are_judged_by_their_bytes_and_bad_ones_leave_nothing() {
    let app = spawn_app().await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let eve = app.register("eve").await;

    let res = upload(
        &app,
        &ann,
        form(chat, b"#!/bin/sh\necho pwned\n".to_vec(), "voice.webm"),
    )
    .await;
    assert_error(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // Into someone else's chat, with chatId before or after the file.
    let res = upload(&app, &eve, form(chat, webm(100), "a.webm")).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let late = Form::new()
        .part("file", Part::bytes(webm(100)).file_name("a.webm"))
        .text("chatId", chat.to_string());
    let res = upload(&app, &eve, late).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    // Too big: 11 MiB against the 10 MiB limit.
    let res = upload(&app, &ann, form(chat, webm(11 * 1024 * 1024), "big.webm")).await;
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    // Too big without a Content-Length: found while streaming.
    let boundary = "XyZbOuNdArY";
    let mut head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"chatId\"\r\n\r\n{chat}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.webm\"\r\nContent-Type: audio/webm\r\n\r\n"
    )
    .into_bytes();
    head.extend(webm(11 * 1024 * 1024));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        head.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
    let res = app
        .http
        .post(app.url("/api/messages/upload-audio"))
        .bearer_auth(&ann.token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    // Truncated multipart, no file, no chat id, not multipart at all.
    let mut truncated = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"chatId\"\r\n\r\n{chat}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.webm\"\r\n\r\n"
    )
    .into_bytes();
    truncated.extend(webm(40));
    let res = app
        .http
        .post(app.url("/api/messages/upload-audio"))
        .bearer_auth(&ann.token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(truncated)
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::BAD_REQUEST, "bad_multipart").await;
    let res = upload(&app, &ann, Form::new().text("chatId", chat.to_string())).await;
    assert_error(res, StatusCode::BAD_REQUEST, "missing_file").await;
    let res = upload(
        &app,
        &ann,
        Form::new().part("file", Part::bytes(webm(100)).file_name("a.webm")),
    )
    .await;
    assert_error(res, StatusCode::BAD_REQUEST, "missing_field").await;
    let res = app
        .http
        .post(app.url("/api/messages/upload-audio"))
        .bearer_auth(&ann.token)
        .json(&json!({"chatId": chat}))
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    assert!(
        files_in(&app).is_empty(),
        "nothing left on disk: {:?}",
        files_in(&app)
    );
    assert_eq!(audio_rows(&app).await, 0);
}

#[actix_web::test]
async fn the_clients_file_name_never_becomes_a_path() {
    let app = spawn_app().await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let res = upload(&app, &ann, form(chat, webm(300), "../../etc/passwd")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let names = files_in(&app);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].ends_with(".webm") && names[0].len() == 37,
        "random name: {names:?}"
    );
    let parent = app
        .settings
        .storage
        .uploads_dir
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(!parent.join("etc/passwd").exists());
    assert!(!app.settings.storage.uploads_dir.join("passwd").exists());
}

#[actix_web::test]
async fn only_the_uploader_may_send_an_audio_once_into_its_chat() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let cyd = app.register("cyd").await;
    let other = app.direct_chat(&ann, &cyd).await;
    let up: Value = upload(&app, &ann, form(chat, webm(100), "a.webm"))
        .await
        .json()
        .await
        .unwrap();
    let audio = up["audioId"].clone();
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let send = |c: &crate::helpers::WsClient, chat: u64, cid: &str| {
        c.send(json!({"event": "message:send", "ref": cid, "data": {"chatId": chat, "clientId": cid, "kind": "audio", "audioId": audio}}));
    };
    send(&b, chat, "bob-steals");
    assert_eq!(b.reply_to("bob-steals").await["data"]["code"], "forbidden");
    send(&a, other, "wrong-chat");
    assert_eq!(a.reply_to("wrong-chat").await["data"]["code"], "forbidden");
    send(&a, chat, "first");
    assert_eq!(a.reply_to("first").await["event"], "ack");
    send(&a, chat, "second");
    assert_eq!(a.reply_to("second").await["data"]["code"], "forbidden");
    let mut conn = app.mysql().await;
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM messages WHERE kind = 'audio'")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
}

#[actix_web::test]
async fn unattached_uploads_are_removed_after_their_time() {
    let app = spawn_app_with(|s| s.storage.unattached_audio_ttl_secs = 1).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let kept: Value = upload(&app, &ann, form(chat, webm(100), "k.webm"))
        .await
        .json()
        .await
        .unwrap();
    upload(&app, &ann, form(chat, webm(100), "d.webm")).await;
    let mut a = app.ws(&ann).await;
    a.send(json!({"event": "message:send", "ref": "k", "data": {"chatId": chat, "clientId": "k", "kind": "audio", "audioId": kept["audioId"]}}));
    assert_eq!(a.reply_to("k").await["event"], "ack");
    assert_eq!(files_in(&app).len(), 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while files_in(&app).len() > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        files_in(&app).len(),
        1,
        "the unattached one is gone, the sent one stays"
    );
    assert_eq!(audio_rows(&app).await, 1);
    let res = app
        .http
        .get(app.url(kept["url"].as_str().unwrap()))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[actix_web::test]
async fn with_an_accel_prefix_nginx_is_told_to_send_the_bytes() {
    let app = spawn_app_with(|s| s.storage.x_accel_prefix = Some("/_parley_audio/".into())).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let up: Value = upload(&app, &ann, form(chat, webm(100), "a.webm"))
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .http
        .get(app.url(up["url"].as_str().unwrap()))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let accel = res.headers()["x-accel-redirect"]
        .to_str()
        .unwrap()
        .to_string();
    let names = files_in(&app);
    assert_eq!(accel, format!("/_parley_audio/{}", names[0]));
    assert_eq!(res.headers()["content-type"], "audio/webm");
}
