use reqwest::StatusCode;

use crate::helpers::{assert_error, spawn_app};

#[actix_web::test]
async fn client_routes_fall_back_to_the_spa_and_api_paths_do_not() {
    let app = spawn_app().await;
    for path in ["/", "/login", "/register", "/chat/42"] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        if path != "/" {
            assert_eq!(res.headers()["cache-control"], "no-cache", "{path}");
        }
        let body = res.text().await.unwrap();
        assert!(body.contains("<html"), "{path}");
    }
    let res = app
        .http
        .get(app.url("/api/definitely-not"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[actix_web::test]
async fn the_manifest_and_the_service_worker_are_files_not_the_spa() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/manifest.webmanifest"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/manifest+json"
    );
    let manifest: serde_json::Value = res.json().await.unwrap();
    assert_eq!(manifest["name"], "Parley");
    assert_eq!(manifest["display"], "standalone");
    for icon in manifest["icons"].as_array().unwrap() {
        let src = icon["src"].as_str().unwrap();
        let res = app.http.get(app.url(src)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{src}");
        assert_eq!(res.headers()["content-type"], "image/png", "{src}");
    }

    let res = app.http.get(app.url("/sw.js")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.contains("javascript"), "{ct}");
    // a new worker (and the shell it caches) is picked up at once, not after an hour
    assert_eq!(res.headers()["cache-control"], "no-cache");
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("addEventListener('push'"));
}
