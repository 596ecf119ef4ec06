//! REST writes outlast what a Galera cluster adds to a single server: a transaction
//! refused with a deadlock or a certification conflict (1213) is run again by the
//! server, once per refusal, and the request succeeds with its change stored once;
//! refusals that do not stop answer `503 unavailable` with `Retry-After`, in bounded
//! time, with nothing stored. The refusals are real server errors: a trigger SIGNALs
//! 1213 a given number of times (its counter is a MEMORY table, so a refused
//! transaction's rollback does not undo the count).

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, TestApp};

/// Makes the next `times` inserts into `table` fail with error 1213.
async fn refuse_inserts(app: &TestApp, table: &str, times: u32) {
    let mut db = app.mysql().await;
    db.query_drop(
        "CREATE TABLE IF NOT EXISTS refusals (tbl VARCHAR(64) PRIMARY KEY, left_n INT NOT NULL) ENGINE=MEMORY",
    )
    .await
    .expect("refusals table");
    db.exec_drop(
        "REPLACE INTO refusals (tbl, left_n) VALUES (?, ?)",
        (table, times),
    )
    .await
    .expect("count");
    db.query_drop(format!("DROP TRIGGER IF EXISTS refuse_{table}"))
        .await
        .expect("drop trigger");
    db.query_drop(format!(
        "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW BEGIN \
           IF (SELECT left_n FROM refusals WHERE tbl = '{table}') > 0 THEN \
             UPDATE refusals SET left_n = left_n - 1 WHERE tbl = '{table}'; \
             SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, \
               MESSAGE_TEXT = 'Deadlock found when trying to get lock (test)'; \
           END IF; \
         END"
    ))
    .await
    .expect("trigger");
}

async fn refusals_left(app: &TestApp, table: &str) -> i64 {
    let mut db = app.mysql().await;
    db.exec_first("SELECT left_n FROM refusals WHERE tbl = ?", (table,))
        .await
        .expect("left")
        .expect("row")
}

async fn count(app: &TestApp, sql: &str) -> u64 {
    let mut db = app.mysql().await;
    db.query_first(sql).await.expect("count").expect("row")
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/auth/login",
        &json!({"email": email, "password": password}),
    )
    .await
}

#[actix_web::test]
async fn a_sign_in_refused_twice_by_a_conflict_is_retried_and_stores_one_session() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let before = count(&app, "SELECT COUNT(*) FROM auth_sessions").await;
    refuse_inserts(&app, "auth_sessions", 2).await;

    let res = login(&app, &ann.email, &ann.password).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert!(body["token"].is_string(), "{body}");
    assert_eq!(
        refusals_left(&app, "auth_sessions").await,
        0,
        "tried three times"
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM auth_sessions").await,
        before + 1,
        "one session, not one per try"
    );
    // The token works: its session row is the one that was committed.
    let me = app
        .get_auth("/api/users/me", body["token"].as_str().unwrap())
        .await;
    assert_eq!(me.status(), StatusCode::OK);
}

#[actix_web::test]
async fn a_group_change_refused_once_is_retried_and_says_so_once() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let chat = app.group_chat(&ann, &[&bob]).await;
    let system =
        format!("SELECT COUNT(*) FROM messages WHERE chat_id = {chat} AND kind = 'system'");
    let before = count(&app, &system).await;
    // The rename's system message is the insert that is refused.
    refuse_inserts(&app, "messages", 1).await;

    let res = app
        .http
        .request(Method::PATCH, app.url(&format!("/api/chats/{chat}")))
        .bearer_auth(&ann.token)
        .json(&json!({"title": "renamed"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(refusals_left(&app, "messages").await, 0);
    assert_eq!(count(&app, &system).await, before + 1, "one system message");
    let title: String = app
        .mysql()
        .await
        .exec_first("SELECT title FROM chats WHERE id = ?", (chat,))
        .await
        .expect("title")
        .expect("row");
    assert_eq!(title, "renamed");
}

#[actix_web::test]
async fn refusals_that_do_not_stop_answer_unavailable_in_bounded_time_and_store_nothing() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let before = count(&app, "SELECT COUNT(*) FROM chats").await;
    refuse_inserts(&app, "chats", 1_000).await;

    let started = Instant::now();
    let res = app
        .post_auth("/api/chats", &ann.token, &json!({"userId": bob.id}))
        .await;
    let took = started.elapsed();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
    // A single server gives a conflict about 2 s of retries (a cluster 8 s).
    assert!(took < Duration::from_secs(4), "{took:?}");
    let tries = 1_000 - refusals_left(&app, "chats").await;
    assert!((2..=5).contains(&tries), "{tries} tries");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM chats").await, before);

    // Once the refusals stop, the same request succeeds.
    refuse_inserts(&app, "chats", 0).await;
    let res = app
        .post_auth("/api/chats", &ann.token, &json!({"userId": bob.id}))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM chats").await, before + 1);
}
