use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, closed_port, spawn_app, spawn_app_with};

#[actix_web::test]
async fn health_answers_ok() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/api/health")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[actix_web::test]
async fn ready_is_200_when_the_database_answers() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/api/ready")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["redis"], "disabled");
}

#[actix_web::test]
async fn ready_is_503_when_the_database_port_is_closed() {
    let port = closed_port();
    let app = spawn_app_with(|s| {
        s.database.url = format!("mysql://root@127.0.0.1:{port}/parley_nowhere").into();
    })
    .await;
    // The process itself is alive...
    let res = app.http.get(app.url("/api/health")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // ...but not ready, and says so quickly.
    let started = std::time::Instant::now();
    let res = app.http.get(app.url("/api/ready")).send().await.unwrap();
    assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[actix_web::test]
async fn ready_is_503_when_configured_redis_is_down() {
    let port = closed_port();
    let app = spawn_app_with(|s| s.redis.url = Some(format!("redis://127.0.0.1:{port}"))).await;
    let res = app.http.get(app.url("/api/ready")).send().await.unwrap();
    assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
}

#[actix_web::test]
async fn unknown_routes_and_methods_get_the_json_error_body() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/api/nope")).send().await.unwrap();
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .http
        .delete(app.url("/api/health"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let res = app
        .http
        .get(app.url("/api/auth/login"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[actix_web::test]
async fn ready_names_the_redis_server_in_use() {
    let redis = parley_testkit::db::Redis::start();
    let url = redis.url();
    let app = spawn_app_with(|s| s.redis.url = Some(url)).await;
    let res = app.http.get(app.url("/api/ready")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["redis"], "ok");
    assert_eq!(body["redisPrimary"], format!("127.0.0.1:{}", redis.port));
}

#[actix_web::test]
async fn with_sentinels_ready_names_the_primary_they_name() {
    let set = parley_testkit::sentinel::SentinelSet::start().await;
    let primary = set.primary_port().await;
    let sentinels = set.sentinels();
    let app = spawn_app_with(|s| {
        s.redis.url = None;
        s.redis.sentinels = Some(sentinels);
        s.redis.master_name = set.master_name().into();
    })
    .await;
    let res = app.http.get(app.url("/api/ready")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["redis"], "ok");
    assert_eq!(body["redisPrimary"], format!("127.0.0.1:{primary}"));
}
