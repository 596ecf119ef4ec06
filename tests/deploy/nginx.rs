//! systemd/nginx/parley.conf: accepted by nginx, and Parley works behind it.

use futures_util::StreamExt;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{client, spawn_app_with, TestApp, TestUser, WsClient};
use crate::support::{
    copy_dir, free_port, nginx_cmd, output_text, render_site, repo, write_nginx_conf, Nginx,
    SiteLayout, TempDir,
};
use parley_testkit::media::{audio_form, upload_audio, webm};
use parley_testkit::pictures::{contains, gps_exif, jpeg, media_form, with_exif, EXIF_SECRET};

/// What nginx sends with uploaded bytes (X-Accel-Redirect) instead of the site's CSP.
const MEDIA_CSP: &str =
    "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Where injected script could send data: the CSP's `connect-src` sources, each one
/// the site itself (`'self'` covers its own ws:/wss: in CSP Level 3) — never a bare
/// scheme such as `ws:` or `wss:`, which admits every host on the Internet.
fn assert_connect_src_is_the_site_only(csp: &str) {
    let sources: Vec<&str> = csp
        .split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("connect-src "))
        .unwrap_or_else(|| panic!("no connect-src in {csp}"))
        .split_whitespace()
        .collect();
    for s in &sources {
        assert!(
            !s.ends_with(':') && *s != "*" && !s.contains("://*"),
            "connect-src admits any host with {s:?}: {csp}"
        );
    }
    assert_eq!(sources, ["'self'"], "{csp}");
}

/// The headers every response carries, errors included.
fn assert_security_headers(res: &Response, what: &str) {
    assert_headers_with_csp(res, CSP, what);
}

/// The headers of uploaded bytes sent by nginx: the same, with the sandboxing CSP.
fn assert_media_headers(res: &Response, what: &str) {
    assert_headers_with_csp(res, MEDIA_CSP, what);
}

fn assert_headers_with_csp(res: &Response, csp: &str, what: &str) {
    let h = res.headers();
    let get = |name: &str| {
        h.get(name)
            .unwrap_or_else(|| panic!("{what}: no {name} header; headers: {h:?}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(get("content-security-policy"), csp, "{what}");
    if csp == CSP {
        assert_connect_src_is_the_site_only(&get("content-security-policy"));
    }
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(
        get("permissions-policy"),
        "camera=(self), microphone=(self)",
        "{what}"
    );
    assert_eq!(
        h.get_all("content-security-policy").iter().count(),
        1,
        "{what}: one CSP"
    );
}

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn the_shipped_site_passes_nginx_t_with_its_paths_substituted() {
    let dir = TempDir::new("nginx-t");
    let site = render_site(&SiteLayout {
        opt: &dir.join("opt"),
        var: &dir.join("var"),
        upstream_port: 30000,
        listen_port: free_port(),
    })
    .replace("/var/log/nginx", &dir.path().display().to_string());
    assert!(!site.contains("/opt/parley") && !site.contains("/var/lib/parley"));
    let conf = write_nginx_conf(dir.path(), &site);
    let out = nginx_cmd(dir.path(), &conf).arg("-t").output().unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("syntax is ok"), "{text}");
    assert!(text.contains("test is successful"), "{text}");
    for bad in ["[warn]", "[emerg]", "[alert]", "[crit]", "[error]"] {
        assert!(!text.contains(bad), "nginx -t reported {bad}: {text}");
    }
}

#[test]
fn the_site_keeps_the_required_directives() {
    let site = std::fs::read_to_string(repo().join("systemd/nginx/parley.conf")).unwrap();
    for needle in [
        "upstream parley {",
        "keepalive 32;",
        "root /opt/parley/current/static;",
        "try_files $uri $uri/ /index.html;",
        "location ^~ /api/ {",
        "location = /ws {",
        "access_log /var/log/nginx/access.log parley_ws;",
        "\"$request_method $uri $server_protocol\"",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection \"upgrade\";",
        "proxy_read_timeout 3600s;",
        "proxy_send_timeout 3600s;",
        "proxy_buffering off;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "client_max_body_size 1m;",
        "client_max_body_size 11m;",
        "location ^~ /_parley_audio/ {",
        "internal;",
        "alias /var/lib/parley/uploads/audio/;",
        "location ^~ /_parley_media/ {",
        "alias /var/lib/parley/uploads/media/;",
        "location = /api/media {",
        "client_max_body_size 26m;",
        "location = /metrics {",
        "gzip on;",
        "# server 127.0.0.1:30002;",
        "# add_header Strict-Transport-Security",
        "#     listen 443 ssl http2;",
    ] {
        assert!(site.contains(needle), "the site lacks {needle:?}");
    }
    // The TLS server is documentation only: no live 443 listener.
    assert!(!site
        .lines()
        .any(|l| l.trim_start().starts_with("listen 443")));
}

/// Parley behind the shipped site on a real nginx.
struct Stack {
    // Field order is drop order: nginx first, then the app (database, uploads), then files.
    nginx: Nginx,
    app: TestApp,
    dir: TempDir,
}

async fn stack() -> Stack {
    stack_with(String::new()).await
}

/// `metrics_listen`: Parley's metrics.listen ("" disables it).
async fn stack_with(metrics_listen: String) -> Stack {
    let dir = TempDir::new("nginx-live");
    let (opt, var) = (dir.join("opt"), dir.join("var"));
    copy_dir(&repo().join("static"), &opt.join("current/static"));
    std::fs::create_dir_all(var.join("uploads")).unwrap();
    for d in [&var, &var.join("uploads")] {
        crate::support::set_mode(d, 0o755);
    }
    let (static_dir, uploads) = (opt.join("current/static"), var.join("uploads"));
    let app = spawn_app_with(move |s| {
        s.storage.x_accel_prefix = Some("/_parley_audio/".into());
        s.storage.x_accel_media_prefix = Some("/_parley_media/".into());
        s.storage.uploads_dir = uploads;
        s.static_files.dir = static_dir;
        s.metrics.listen = metrics_listen;
    })
    .await;
    let port = free_port();
    let site = render_site(&SiteLayout {
        opt: &opt,
        var: &var,
        upstream_port: app.port,
        listen_port: port,
    });
    let nginx_dir = dir.join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    // The /ws access log goes to the test's own directory, beside the others.
    let site = site.replace("/var/log/nginx", &nginx_dir.display().to_string());
    let nginx = Nginx::start(&nginx_dir, &site, port);
    Stack { nginx, app, dir }
}

impl Stack {
    async fn register(&self, name: &str) -> TestUser {
        let (email, password) = (format!("{name}@example.com"), format!("pw-{name}-secret"));
        let base = self.nginx.url("");
        let res = client::register_request(&self.app.http, &base, name, &email, &password).await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "register {name} through nginx"
        );
        assert_security_headers(&res, "register");
        client::registered(res, name, &email, &password).await
    }

    fn ws_url(&self, user: &TestUser) -> String {
        format!("ws://127.0.0.1:{}/ws?token={}", self.nginx.port, user.token)
    }

    /// A session through nginx's /ws, after its `ready`.
    async fn ws(&self, user: &TestUser) -> WsClient {
        WsClient::connect_ready(&self.ws_url(user)).await
    }

    async fn get(&self, path: &str) -> Response {
        self.app
            .http
            .get(self.nginx.url(path))
            .send()
            .await
            .unwrap()
    }

    fn audio_files(&self) -> Vec<String> {
        self.files_in("var/uploads/audio")
    }

    /// The names in `dir` (below the test's directory), without temporary files.
    fn files_in(&self, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    }
}

#[actix_web::test]
async fn the_web_client_is_served_with_fallback_caching_types_and_headers() {
    let metrics_port = free_port();
    let s = stack_with(format!("127.0.0.1:{metrics_port}")).await;
    let index = std::fs::read_to_string(repo().join("static/index.html")).unwrap();
    for path in ["/", "/chat/5", "/login"] {
        let res = s.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_security_headers(&res, path);
        assert!(
            header(&res, "content-type").starts_with("text/html"),
            "{path}"
        );
        assert_eq!(header(&res, "cache-control"), "no-cache", "{path}");
        assert_eq!(res.text().await.unwrap(), index, "{path} is index.html");
    }
    let res = s
        .app
        .http
        .get(s.nginx.url("/js/main.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_security_headers(&res, "main.js");
    let ct = header(&res, "content-type");
    assert!(
        ct.starts_with("application/javascript") || ct.starts_with("text/javascript"),
        "main.js served as {ct}"
    );
    assert_eq!(
        header(&res, "cache-control"),
        "public, max-age=3600, must-revalidate"
    );
    assert_eq!(header(&res, "content-encoding"), "gzip", "text is gzipped");
    assert!(!header(&res, "etag").is_empty() || !header(&res, "last-modified").is_empty());

    let res = s.get("/app.css").await;
    assert!(header(&res, "content-type").starts_with("text/css"));
    assert_eq!(
        header(&res, "cache-control"),
        "public, max-age=3600, must-revalidate"
    );
    let res = s.get("/favicon.svg").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, "content-type").starts_with("image/svg+xml"));

    // The installable app: the service worker is revalidated every time (a deploy's
    // worker reaches installed clients at once), the manifest has its own type.
    let res = s.get("/sw.js").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_security_headers(&res, "sw.js");
    assert_eq!(header(&res, "cache-control"), "no-cache");
    let res = s.get("/manifest.webmanifest").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        header(&res, "content-type").starts_with("application/manifest+json"),
        "{}",
        header(&res, "content-type")
    );
    let res = s.get("/icons/icon-192.png").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), "image/png");

    // An ES module: a type browsers accept for <script type="module">.
    std::fs::write(
        s.dir.join("opt/current/static/js/probe.mjs"),
        "export const x = 1;\n",
    )
    .unwrap();
    let res = s.get("/js/probe.mjs").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, "content-type").starts_with("text/javascript"));

    // A missing asset is a 404 (with the headers), not index.html posing as a script.
    let res = s.get("/js/missing.js").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_security_headers(&res, "missing asset");

    // API errors come from Parley, through nginx, with the headers too.
    let res = s.get("/api/definitely-not").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_security_headers(&res, "api 404");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let res = s.get("/api/health").await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = s.get("/api/ready").await;
    assert_eq!(res.status(), StatusCode::OK);

    // Metrics are served on their own listener, never through nginx (not even as
    // the SPA fallback).
    let res = s
        .app
        .http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("# TYPE"));
    for path in ["/metrics", "/metrics?x=1"] {
        let res = s.get(path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert_security_headers(&res, path);
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("# TYPE") && !body.contains("<html lang"),
            "{path}: {body}"
        );
    }

    // Bodies over 1 MiB are refused by nginx outside the upload route.
    let big = "x".repeat(2 * 1024 * 1024);
    let res = s
        .app
        .http
        .post(s.nginx.url("/api/auth/register"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&res, "413");
}

#[actix_web::test]
async fn two_users_chat_over_the_websocket_through_nginx() {
    let s = stack().await;
    let ann = s.register("ann").await;
    let bob = s.register("bob").await;
    let chat = s.app.direct_chat(&ann, &bob).await;
    let mut a = s.ws(&ann).await;
    let mut b = s.ws(&bob).await;
    let sent = a.send_text(chat, "n1", "hello through nginx").await;
    let got = b.wait_for("message:received").await;
    assert_eq!(got["data"]["content"], "hello through nginx");
    assert_eq!(got["data"]["id"], sent["id"]);
    assert_eq!(got["data"]["senderId"], ann.id);
    b.send(json!({"event": "ping", "ref": "p", "data": {}}));
    assert_eq!(b.reply_to("p").await["event"], "pong");

    // A browser on the site's own origin may connect (Host reaches Parley with its
    // port); a page elsewhere may not.
    let mut req = s.ws_url(&bob).into_client_request().unwrap();
    req.headers_mut().insert(
        "origin",
        format!("http://127.0.0.1:{}", s.nginx.port)
            .parse()
            .unwrap(),
    );
    let (mut same, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("same-origin browser socket through nginx");
    let first = same.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"event\""), "{first:?}");
    let mut req = s.ws_url(&bob).into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), StatusCode::FORBIDDEN)
        }
        other => panic!("a foreign origin must get 403, got {:?}", other.map(|_| ())),
    }
    // A bad token is refused before the upgrade.
    let err =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws?token=nope", s.nginx.port))
            .await;
    match err {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("bad token must get 401, got {:?}", other.map(|_| ())),
    }
}

#[actix_web::test]
async fn credentials_in_the_ws_url_never_reach_the_access_log() {
    let s = stack().await;
    let ann = s.register("ann").await;
    // The web client's way: a one-use ticket from the API, then /ws?ticket=.
    let res = s
        .app
        .http
        .post(s.nginx.url("/api/auth/ws-ticket"))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ticket = res.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let mut by_ticket = WsClient::connect(&format!(
        "ws://127.0.0.1:{}/ws?ticket={ticket}",
        s.nginx.port
    ))
    .await;
    assert_eq!(by_ticket.wait_for("ready").await["data"]["userId"], ann.id);
    // A script's way: the token itself.
    let by_token = s.ws(&ann).await;
    by_ticket.close();
    by_token.close();
    drop((by_ticket, by_token));
    // nginx writes a WebSocket's line when the connection ends.
    let log = s.nginx.dir.join("access.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.matches("\"GET /ws HTTP/1.1\" 101").count() >= 2 {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no /ws lines in the access log: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let signature = ann.token.rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "the token was logged: {text}");
    assert!(!text.contains(&ticket), "the ticket was logged: {text}");
    assert!(
        !text.contains("/ws?"),
        "a /ws query string was logged: {text}"
    );
    // Everything else is still logged as before, with its request line.
    assert!(
        text.contains("\"POST /api/auth/ws-ticket HTTP/1.1\" 200"),
        "{text}"
    );
}

async fn upload(s: &Stack, user: &TestUser, chat: u64, bytes: Vec<u8>) -> Response {
    let form = audio_form(chat, bytes, "voice.webm").text("durationMs", "1500");
    let url = s.nginx.url("/api/messages/upload-audio");
    upload_audio(&s.app.http, &url, &user.token, form).await
}

#[actix_web::test]
async fn voice_messages_are_sent_by_nginx_through_x_accel_redirect() {
    let s = stack().await;
    let ann = s.register("ann").await;
    let bob = s.register("bob").await;
    let eve = s.register("eve").await;
    let chat = s.app.direct_chat(&ann, &bob).await;
    let bytes = webm(5000);
    let res = upload(&s, &ann, chat, bytes.clone()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_security_headers(&res, "upload");
    let up: Value = res.json().await.unwrap();
    assert_eq!(up["mime"], "audio/webm");
    let audio_id = up["audioId"].as_u64().unwrap();

    let mut a = s.ws(&ann).await;
    let mut b = s.ws(&bob).await;
    a.send(json!({"event": "message:send", "ref": "v", "data": {"chatId": chat, "clientId": "v1", "kind": "audio", "audioId": audio_id}}));
    assert_eq!(a.reply_to("v").await["event"], "ack");
    let got = b.wait_for("message:received").await["data"].clone();
    assert_eq!(got["audio"]["audioId"], audio_id);
    let url = s.nginx.url(got["audio"]["url"].as_str().unwrap());

    // Parley checks membership and hands the file to nginx.
    let res = s
        .app
        .http
        .get(&url)
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_media_headers(&res, "audio");
    assert_eq!(header(&res, "content-type"), "audio/webm");
    assert_eq!(header(&res, "content-length"), "5000");
    assert_eq!(header(&res, "accept-ranges"), "bytes");
    assert_eq!(header(&res, "cache-control"), "private, max-age=86400");
    assert!(
        res.headers().get("x-accel-redirect").is_none(),
        "internal header leaked"
    );
    assert_eq!(res.bytes().await.unwrap().to_vec(), bytes);

    let res = s
        .app
        .http
        .get(&url)
        .bearer_auth(&bob.token)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&res, "content-range"), "bytes 100-199/5000");
    assert_eq!(header(&res, "content-type"), "audio/webm");
    assert_eq!(
        res.bytes().await.unwrap().to_vec(),
        bytes[100..200].to_vec()
    );

    // Still members only, and nothing without a token.
    let res = s
        .app
        .http
        .get(&url)
        .bearer_auth(&eve.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = s.app.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The internal location is not reachable from outside, token or not.
    let files = s.audio_files();
    assert_eq!(files.len(), 1, "{files:?}");
    for path in [
        format!("/_parley_audio/{}", files[0]),
        "/_parley_audio/".to_string(),
    ] {
        let res = s.get(&path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert_media_headers(&res, &path);
        let res = s
            .app
            .http
            .get(s.nginx.url(&path))
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path} with a token");
    }

    // The upload route takes a full 10 MiB recording (client_max_body_size 11m) …
    let res = upload(&s, &ann, chat, webm(10 * 1024 * 1024)).await;
    assert_eq!(res.status(), StatusCode::CREATED, "10 MiB through nginx");
    // … and nginx refuses what could never fit.
    let res = upload(&s, &ann, chat, webm(12 * 1024 * 1024)).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&res, "upload 413");
}

async fn get_as(s: &Stack, user: &TestUser, path: &str) -> Response {
    s.app
        .http
        .get(s.nginx.url(path))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn images_thumbnails_and_files_are_sent_by_nginx_with_their_headers() {
    let s = stack().await;
    let ann = s.register("ann").await;
    let bob = s.register("bob").await;
    let eve = s.register("eve").await;
    let chat = s.app.direct_chat(&ann, &bob).await;
    let url = s.nginx.url("/api/media");

    // A photo with GPS in its EXIF, through nginx's upload location.
    let photo = with_exif(&jpeg(640, 480), &gps_exif());
    let res = upload_audio(
        &s.app.http,
        &url,
        &ann.token,
        media_form(chat, photo, "IMG 1.jpg"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_security_headers(&res, "media upload");
    let img: Value = res.json().await.unwrap();
    assert_eq!(
        (img["width"].as_u64(), img["height"].as_u64()),
        (Some(480), Some(640))
    );
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend((0..300_000u32).map(|i| (i % 253) as u8));
    let res = upload_audio(
        &s.app.http,
        &url,
        &ann.token,
        media_form(chat, pdf.clone(), "doc.pdf"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let file: Value = res.json().await.unwrap();

    let res = get_as(&s, &bob, img["url"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_media_headers(&res, "image");
    assert_eq!(header(&res, "content-type"), "image/jpeg");
    assert_eq!(
        header(&res, "content-disposition"),
        "inline; filename*=UTF-8''IMG%201.jpg"
    );
    assert_eq!(header(&res, "cache-control"), "private, max-age=86400");
    assert!(
        res.headers().get("x-accel-redirect").is_none(),
        "internal header leaked"
    );
    assert_eq!(header(&res, "content-length"), img["bytes"].to_string());
    let served = res.bytes().await.unwrap().to_vec();
    let on_disk = s.files_in("var/uploads/media");
    let stored_img = on_disk.iter().find(|n| n.ends_with(".jpg")).unwrap();
    assert_eq!(
        served,
        std::fs::read(s.dir.join("var/uploads/media").join(stored_img)).unwrap()
    );
    assert!(!contains(&served, b"Exif\0\0") && !contains(&served, EXIF_SECRET));
    let decoded = image::load_from_memory(&served).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (480, 640));

    let res = get_as(&s, &bob, img["thumbnailUrl"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_media_headers(&res, "thumbnail");
    assert_eq!(header(&res, "content-type"), "image/jpeg");
    let thumb = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (240, 320));

    let res = get_as(&s, &bob, file["url"].as_str().unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_media_headers(&res, "file");
    assert_eq!(header(&res, "content-type"), "application/octet-stream");
    assert_eq!(
        header(&res, "content-disposition"),
        "attachment; filename*=UTF-8''doc.pdf"
    );
    assert_eq!(res.bytes().await.unwrap().to_vec(), pdf);
    let res = s
        .app
        .http
        .get(s.nginx.url(file["url"].as_str().unwrap()))
        .bearer_auth(&bob.token)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&res, "content-disposition"),
        "attachment; filename*=UTF-8''doc.pdf"
    );
    assert_eq!(
        res.bytes().await.unwrap().to_vec(),
        pdf[1000..2000].to_vec()
    );

    // Outsiders are refused by Parley; the internal location is unreachable.
    for path in [
        img["url"].as_str().unwrap(),
        img["thumbnailUrl"].as_str().unwrap(),
    ] {
        let res = get_as(&s, &eve, path).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let thumbs = s.files_in("var/uploads/media/thumbs");
    assert_eq!(thumbs.len(), 1, "{thumbs:?}");
    for path in [
        format!("/_parley_media/{stored_img}"),
        format!("/_parley_media/thumbs/{}", thumbs[0]),
        "/_parley_media/".to_string(),
    ] {
        let res = get_as(&s, &bob, &path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }

    // The upload location takes 25 MiB and refuses what could never fit.
    let res = upload_audio(
        &s.app.http,
        &url,
        &ann.token,
        media_form(chat, vec![1; 25 * 1024 * 1024], "big.bin"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED, "25 MiB through nginx");
    let res = upload_audio(
        &s.app.http,
        &url,
        &ann.token,
        media_form(chat, vec![1; 27 * 1024 * 1024], "huge.bin"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
