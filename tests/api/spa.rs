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
