//! Photos and files (issue 18): `POST /api/media`, `GET /api/media/:id` and its
//! thumbnail, against the real app and a real disk.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use reqwest::header::HeaderMap;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app, spawn_app_with, AnnBob, TestApp, TestUser};
use parley_testkit::media::{files_in, upload_audio, webm};
use parley_testkit::pictures::{
    contains, gif, gps_exif, jpeg, media_form, png, png_claiming, webp, with_exif, EXIF_SECRET,
};

const SANDBOX: &str =
    "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'";

async fn post(app: &TestApp, user: &TestUser, form: Form) -> Response {
    upload_audio(&app.http, &app.url("/api/media"), &user.token, form).await
}

/// Uploads `bytes` as `name` and returns the 201 answer.
async fn uploaded(app: &TestApp, user: &TestUser, chat: u64, bytes: Vec<u8>, name: &str) -> Value {
    let res = post(app, user, media_form(chat, bytes, name)).await;
    assert_eq!(res.status(), StatusCode::CREATED, "{name}");
    res.json().await.unwrap()
}

async fn get(app: &TestApp, user: &TestUser, path: &str) -> Response {
    app.http
        .get(app.url(path))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Downloads `path` as `user`: the headers every media answer has, then the bytes.
async fn download(app: &TestApp, user: &TestUser, path: &str) -> (HeaderMap, Vec<u8>) {
    let res = get(app, user, path).await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let headers = res.headers().clone();
    assert_eq!(
        header(&headers, "x-content-type-options"),
        "nosniff",
        "{path}"
    );
    assert_eq!(
        header(&headers, "content-security-policy"),
        SANDBOX,
        "{path}"
    );
    (headers, res.bytes().await.unwrap().to_vec())
}

async fn media_rows(app: &TestApp) -> u64 {
    let mut conn = app.mysql().await;
    conn.query_first("SELECT COUNT(*) FROM media_files")
        .await
        .unwrap()
        .unwrap()
}

/// The files under uploads/media (not its thumbs/ directory) and uploads/media/thumbs.
fn stored(app: &TestApp) -> (Vec<String>, Vec<String>) {
    let media = app.settings.storage.uploads_dir.join("media");
    let files = files_in(&media)
        .into_iter()
        .filter(|n| n != "thumbs")
        .collect();
    (files, files_in(&media.join("thumbs")))
}

/// An image's answer, download and thumbnail: decodes, recorded size, ≤ 320 px.
async fn check_image(app: &TestApp, viewer: &TestUser, up: &Value, mime: &str, size: (u32, u32)) {
    assert_eq!(up["kind"], "image", "{up}");
    assert_eq!(up["mime"], mime, "{up}");
    assert_eq!(
        (up["width"].as_u64(), up["height"].as_u64()),
        (Some(u64::from(size.0)), Some(u64::from(size.1))),
        "{up}"
    );
    let id = up["mediaId"].as_u64().unwrap();
    assert_eq!(up["url"], format!("/api/media/{id}"));
    assert_eq!(up["thumbnailUrl"], format!("/api/media/{id}/thumbnail"));
    assert!(up.get("durationMs").is_none(), "{up}");
    let (h, bytes) = download(app, viewer, up["url"].as_str().unwrap()).await;
    assert_eq!(header(&h, "content-type"), mime);
    assert!(
        header(&h, "content-disposition").starts_with("inline; filename*=UTF-8''"),
        "{}",
        header(&h, "content-disposition")
    );
    assert_eq!(bytes.len() as u64, up["bytes"].as_u64().unwrap());
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), size);
    let (h, thumb) = download(app, viewer, up["thumbnailUrl"].as_str().unwrap()).await;
    assert_eq!(header(&h, "content-type"), "image/jpeg");
    let t = image::load_from_memory_with_format(&thumb, image::ImageFormat::Jpeg).unwrap();
    assert!(
        t.width().max(t.height()) <= 320,
        "{}×{}",
        t.width(),
        t.height()
    );
    assert!(t.width() >= 1 && t.height() >= 1);
}

#[actix_web::test]
async fn each_image_format_round_trips_with_its_size_and_a_thumbnail() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let up = uploaded(&app, &ann, chat, png(800, 600), "p.png").await;
    check_image(&app, &bob, &up, "image/png", (800, 600)).await;
    let up = uploaded(&app, &ann, chat, jpeg(640, 480), "j.jpg").await;
    check_image(&app, &bob, &up, "image/jpeg", (640, 480)).await;
    let up = uploaded(&app, &ann, chat, webp(300, 500), "w.webp").await;
    check_image(&app, &bob, &up, "image/webp", (300, 500)).await;
    // A still GIF is stored as PNG; an animated one stays a GIF with every frame.
    let up = uploaded(&app, &ann, chat, gif(120, 90, 1), "still.gif").await;
    check_image(&app, &bob, &up, "image/png", (120, 90)).await;
    let up = uploaded(&app, &ann, chat, gif(120, 90, 4), "anim.gif").await;
    check_image(&app, &bob, &up, "image/gif", (120, 90)).await;
    let (_, bytes) = download(&app, &bob, up["url"].as_str().unwrap()).await;
    let frames = image::AnimationDecoder::into_frames(
        image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes)).unwrap(),
    )
    .collect_frames()
    .unwrap();
    assert_eq!(frames.len(), 4);
    // The stored bytes count against the quota, thumbnails included.
    let usage: Value = app
        .get_auth("/api/media/usage", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    let mut conn = app.mysql().await;
    let total: Option<u64> = conn
        .query_first("SELECT CAST(SUM(bytes + thumb_bytes) AS UNSIGNED) FROM media_files")
        .await
        .unwrap();
    assert_eq!(usage["storageUsedBytes"].as_u64(), total);
}

#[actix_web::test]
async fn a_photo_loses_its_exif_and_gps_and_stays_upright() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let photo = with_exif(&jpeg(64, 32), &gps_exif());
    assert!(contains(&photo, b"Exif\0\0") && contains(&photo, EXIF_SECRET));
    let up = uploaded(&app, &ann, chat, photo, "IMG_0001.JPG").await;
    // Orientation 6: shown turned a quarter, so 32 wide and 64 high.
    check_image(&app, &bob, &up, "image/jpeg", (32, 64)).await;
    let (_, served) = download(&app, &bob, up["url"].as_str().unwrap()).await;
    for leak in [&b"Exif\0\0"[..], EXIF_SECRET, &[0x25, 0x88, 0x04, 0x00][..]] {
        assert!(!contains(&served, leak), "served bytes carry {leak:?}");
    }
    let (_, thumb) = download(&app, &bob, up["thumbnailUrl"].as_str().unwrap()).await;
    assert!(!contains(&thumb, b"Exif\0\0") && !contains(&thumb, EXIF_SECRET));
    // Nor does anything on disk keep the original.
    let (files, thumbs) = stored(&app);
    for name in files {
        let bytes =
            std::fs::read(app.settings.storage.uploads_dir.join("media").join(&name)).unwrap();
        assert!(!contains(&bytes, EXIF_SECRET), "{name} on disk");
    }
    assert_eq!(thumbs.len(), 1);
}

/// The peak resident memory of this process (the app runs in it), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[actix_web::test]
async fn a_decompression_bomb_is_refused_from_its_header() {
    let app = spawn_app().await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let before = peak_rss_kib();
    let started = Instant::now();
    let res = post(
        &app,
        &ann,
        media_form(chat, png_claiming(100_000, 100_000), "bomb.png"),
    )
    .await;
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "image_too_large").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // 100 000² pixels would be 40 GB; nothing near that was ever resident.
    let grew_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(grew_mib < 256, "peak RSS grew by {grew_mib} MiB");
    // Wide but short, or within pixels but lying: the same answer.
    let res = post(
        &app,
        &ann,
        media_form(chat, png_claiming(4_000_000, 11), "wide.png"),
    )
    .await;
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "image_too_large").await;
    // Nothing left behind, and the server still serves.
    assert_eq!(media_rows(&app).await, 0);
    assert_eq!(stored(&app), (vec![], vec![]));
    let up = uploaded(&app, &ann, chat, png(10, 10), "ok.png").await;
    assert_eq!(up["kind"], "image");
}

#[actix_web::test]
async fn bad_images_and_long_animations_are_refused_and_leave_nothing() {
    let app = spawn_app_with(|s| s.limits.image_max_frames = 3).await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let res = post(&app, &ann, media_form(chat, gif(20, 20, 5), "long.gif")).await;
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "image_too_large").await;
    let mut garbage = b"\x89PNG\r\n\x1a\n".to_vec();
    garbage.extend(std::iter::repeat_n(0x42, 4000));
    let res = post(&app, &ann, media_form(chat, garbage, "broken.png")).await;
    assert_error(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let mut not_jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    not_jpeg.extend((0..3000u32).map(|i| (i * 7 % 13) as u8));
    let res = post(&app, &ann, media_form(chat, not_jpeg, "fake.jpg")).await;
    assert_error(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert_eq!(media_rows(&app).await, 0);
    assert_eq!(stored(&app), (vec![], vec![]));
    // Three frames are fine.
    let up = uploaded(&app, &ann, chat, gif(20, 20, 3), "short.gif").await;
    assert_eq!(up["mime"], "image/gif");
    // A cut-off JPEG shows what it has, as browsers do: stored re-encoded, whole.
    let mut cut = jpeg(200, 200);
    cut.truncate(cut.len() / 2);
    let up = uploaded(&app, &ann, chat, cut, "cut.jpg").await;
    assert_eq!(
        (up["width"].as_u64(), up["height"].as_u64()),
        (Some(200), Some(200))
    );
}

#[actix_web::test]
async fn files_and_audio_come_back_byte_for_byte_and_files_only_as_attachments() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    pdf.extend((0..20_000u32).map(|i| (i * 31 % 251) as u8));
    let hostile: [(&str, Vec<u8>); 4] = [
        ("report.pdf", pdf),
        (
            "page.html",
            b"<html><script>alert(document.cookie)</script></html>".to_vec(),
        ),
        (
            "logo.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>".to_vec(),
        ),
        (
            "app.js",
            b"fetch('/api/users/me').then(r => r.text()).then(alert)".to_vec(),
        ),
    ];
    for (name, bytes) in hostile {
        let up = uploaded(&app, &ann, chat, bytes.clone(), name).await;
        assert_eq!(up["kind"], "file", "{up}");
        assert_eq!(up["mime"], "application/octet-stream", "{up}");
        assert_eq!(up["name"], name);
        assert_eq!(up["bytes"], bytes.len() as u64);
        for absent in ["width", "height", "thumbnailUrl", "durationMs"] {
            assert!(up.get(absent).is_none(), "{absent} in {up}");
        }
        let (h, got) = download(&app, &bob, up["url"].as_str().unwrap()).await;
        assert_eq!(got, bytes, "{name}");
        assert_eq!(header(&h, "content-type"), "application/octet-stream");
        assert_eq!(
            header(&h, "content-disposition"),
            format!("attachment; filename*=UTF-8''{name}")
        );
        let res = get(
            &app,
            &bob,
            &format!("{}/thumbnail", up["url"].as_str().unwrap()),
        )
        .await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }

    // Audio through the new route: its kind, type and duration; both routes serve it.
    let voice = webm(4000);
    let form = media_form(chat, voice.clone(), "voice.webm").text("durationMs", "2500");
    let res = post(&app, &ann, form).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let up: Value = res.json().await.unwrap();
    assert_eq!(
        (up["kind"].as_str(), up["mime"].as_str()),
        (Some("audio"), Some("audio/webm"))
    );
    assert_eq!(up["durationMs"], 2500);
    let id = up["mediaId"].as_u64().unwrap();
    for path in [format!("/api/media/{id}"), format!("/api/media/audio/{id}")] {
        let (h, got) = download(&app, &bob, &path).await;
        assert_eq!(got, voice, "{path}");
        assert_eq!(header(&h, "content-type"), "audio/webm");
    }
    // Range, for players and resumed downloads.
    let res = app
        .http
        .get(app.url(&format!("/api/media/{id}")))
        .bearer_auth(&bob.token)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(res.headers(), "content-range"), "bytes 10-19/4000");
    assert_eq!(res.bytes().await.unwrap().to_vec(), voice[10..20].to_vec());
    // The old route names audio only.
    let img = uploaded(&app, &ann, chat, png(4, 4), "i.png").await;
    let res = get(&app, &bob, &format!("/api/media/audio/{}", img["mediaId"])).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
}

#[actix_web::test]
async fn names_are_cleaned_for_display_and_never_reach_the_disk() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    // Written by hand: the client libraries would escape what an attacker would not.
    let boundary = "nAmEbOuNdArY";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"chatId\"\r\n\r\n{chat}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
         filename=\"../../evil\t\u{202E}fdp.exe\"\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(b"MZ not really a program");
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let res = app
        .http
        .post(app.url("/api/media"))
        .bearer_auth(&ann.token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let up: Value = res.json().await.unwrap();
    assert_eq!(up["name"], "evilfdp.exe");
    let (h, _) = download(&app, &bob, up["url"].as_str().unwrap()).await;
    assert_eq!(
        header(&h, "content-disposition"),
        "attachment; filename*=UTF-8''evilfdp.exe"
    );
    let (files, _) = stored(&app);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].ends_with(".bin") && files[0].len() == 36,
        "random: {files:?}"
    );
    let uploads = &app.settings.storage.uploads_dir;
    assert!(!uploads
        .parent()
        .unwrap()
        .join("evil\t\u{202E}fdp.exe")
        .exists());
    // A name with non-ASCII characters is percent-encoded, not mangled.
    let up = uploaded(&app, &ann, chat, b"hello".to_vec(), "отчёт 1.txt").await;
    assert_eq!(up["name"], "отчёт 1.txt");
    let (h, _) = download(&app, &bob, up["url"].as_str().unwrap()).await;
    assert_eq!(
        header(&h, "content-disposition"),
        "attachment; filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82%201.txt"
    );
}

#[actix_web::test]
async fn outsiders_get_forbidden_for_every_media_route() {
    let app = spawn_app().await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let eve = app.register("eve").await;
    let up = uploaded(&app, &ann, chat, png(50, 50), "p.png").await;
    let id = up["mediaId"].as_u64().unwrap();
    for path in [
        format!("/api/media/{id}"),
        format!("/api/media/{id}/thumbnail"),
        "/api/media/987654".to_string(),
        "/api/media/987654/thumbnail".to_string(),
    ] {
        let res = get(&app, &eve, &path).await;
        assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
        let res = app.http.get(app.url(&path)).send().await.unwrap();
        assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    }
    // Nor may eve upload into the chat.
    let res = post(&app, &eve, media_form(chat, png(5, 5), "x.png")).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
}

#[actix_web::test]
async fn encrypted_uploads_are_stored_exactly_as_sent() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    // Ciphertext that happens to start like a PNG must not be treated as one.
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bytes.extend((0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let form = media_form(chat, bytes.clone(), "ciphertext").text("encrypted", "true");
    let res = post(&app, &ann, form).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let up: Value = res.json().await.unwrap();
    assert_eq!(up["kind"], "file");
    assert_eq!(up["mime"], "application/octet-stream");
    assert_eq!(up["bytes"], bytes.len() as u64);
    assert!(
        up.get("thumbnailUrl").is_none() && up.get("width").is_none(),
        "{up}"
    );
    let (_, got) = download(&app, &bob, up["url"].as_str().unwrap()).await;
    assert_eq!(got, bytes);
    let (files, thumbs) = stored(&app);
    assert_eq!(files.len(), 1);
    assert!(thumbs.is_empty());
    let mut conn = app.mysql().await;
    let encrypted: Option<bool> = conn
        .query_first("SELECT encrypted FROM media_files")
        .await
        .unwrap();
    assert_eq!(encrypted, Some(true));
    // Anything but true/false is refused.
    let form = media_form(chat, b"x".to_vec(), "x").text("encrypted", "yes");
    let res = post(&app, &ann, form).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_field").await;
}

#[actix_web::test]
async fn the_quota_and_the_upload_rate_hold_for_media() {
    let app = spawn_app_with(|s| s.limits.user_storage_bytes = 300_000).await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let file = |n: u8| vec![n; 120_000];
    uploaded(&app, &ann, chat, file(1), "a.bin").await;
    uploaded(&app, &ann, chat, file(2), "b.bin").await;
    let res = post(&app, &ann, media_form(chat, file(3), "c.bin")).await;
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    assert_eq!(media_rows(&app).await, 2);

    let app = spawn_app_with(|s| s.limits.uploads_per_min = 2).await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    uploaded(&app, &ann, chat, b"one".to_vec(), "1.txt").await;
    uploaded(&app, &ann, chat, b"two".to_vec(), "2.txt").await;
    let res = post(&app, &ann, media_form(chat, b"three".to_vec(), "3.txt")).await;
    let retry: u64 = header(res.headers(), "retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // The size limit: 413 from the announced length, before anything is read.
    let app = spawn_app_with(|s| s.limits.media_max_bytes = 100_000).await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    let res = post(&app, &ann, media_form(chat, vec![7; 200_000], "big.bin")).await;
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "too_large").await;
    assert_eq!(stored(&app), (vec![], vec![]));
}

#[actix_web::test]
async fn unsent_uploads_of_every_kind_are_swept_with_their_thumbnails() {
    let app = spawn_app_with(|s| s.storage.unattached_audio_ttl_secs = 1).await;
    let AnnBob { ann, chat, .. } = app.ann_bob().await;
    uploaded(&app, &ann, chat, png(40, 40), "p.png").await;
    uploaded(&app, &ann, chat, b"file".to_vec(), "f.txt").await;
    assert_eq!(stored(&app).0.len(), 2);
    assert_eq!(stored(&app).1.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while media_rows(&app).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(media_rows(&app).await, 0);
    // The files go right after their rows.
    let deadline = Instant::now() + Duration::from_secs(2);
    while stored(&app) != (vec![], vec![]) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&app), (vec![], vec![]));
    let usage: Value = app
        .get_auth("/api/media/usage", &ann.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["storageUsedBytes"], 0, "the quota is given back");
}

#[actix_web::test]
async fn with_a_media_accel_prefix_nginx_is_told_to_send_files_and_thumbnails() {
    let app =
        spawn_app_with(|s| s.storage.x_accel_media_prefix = Some("/_parley_media/".into())).await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let up = uploaded(&app, &ann, chat, png(30, 30), "p.png").await;
    let (files, thumbs) = stored(&app);
    let res = get(&app, &bob, up["url"].as_str().unwrap()).await;
    assert_eq!(
        header(res.headers(), "x-accel-redirect"),
        format!("/_parley_media/{}", files[0])
    );
    assert_eq!(header(res.headers(), "content-type"), "image/png");
    assert_eq!(
        header(res.headers(), "content-disposition"),
        "inline; filename*=UTF-8''p.png"
    );
    let res = get(&app, &bob, up["thumbnailUrl"].as_str().unwrap()).await;
    assert_eq!(
        header(res.headers(), "x-accel-redirect"),
        format!("/_parley_media/thumbs/{}", thumbs[0])
    );
    assert_eq!(header(res.headers(), "content-type"), "image/jpeg");
    let res = post(&app, &ann, Form::new().text("chatId", chat.to_string())).await;
    assert_error(res, StatusCode::BAD_REQUEST, "missing_file").await;
    let lone = Form::new().part("file", Part::bytes(png(2, 2)).file_name("a.png"));
    let res = post(&app, &ann, lone).await;
    assert_error(res, StatusCode::BAD_REQUEST, "missing_field").await;
}
