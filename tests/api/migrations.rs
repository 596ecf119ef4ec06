use mysql_async::prelude::Queryable;
use parley::db::migrate::{self, MigrateError};
use parley::db::Db;

use crate::helpers::test_settings;
use secrecy::ExposeSecret;

struct Scratch {
    url: String,
    db: Db,
}

async fn scratch() -> Scratch {
    let s = test_settings();
    let url = s.database.url.expose_secret().to_string();
    migrate::create_database_if_missing(&url).await.unwrap();
    let db = Db::connect(&url, 8).unwrap();
    Scratch { url, db }
}

impl Scratch {
    async fn done(self) {
        self.db.close().await;
        migrate::drop_database(&self.url).await.unwrap();
    }
}

#[actix_web::test]
async fn migrations_apply_once_and_a_second_run_is_a_no_op() {
    let s = scratch().await;
    let first = migrate::run(&s.db).await.unwrap();
    assert!(first >= 6, "applied {first}");
    assert_eq!(migrate::run(&s.db).await.unwrap(), 0);
    let mut conn = s.db.pool().await.unwrap().get_conn().await.unwrap();
    let tables: Vec<String> = conn
        .query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND engine = 'InnoDB' ORDER BY table_name")
        .await
        .unwrap();
    for t in [
        "media_files",
        "calls",
        "chat_members",
        "chats",
        "messages",
        "public_keys",
        "users",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    let charset: Option<String> = conn
        .query_first("SELECT default_character_set_name FROM information_schema.schemata WHERE schema_name = DATABASE()")
        .await
        .unwrap();
    assert_eq!(charset.as_deref(), Some("utf8mb4"));
    let idx: Vec<String> = conn
        .query("SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'messages' GROUP BY index_name")
        .await
        .unwrap();
    assert!(
        idx.iter().any(|c| c == "chat_id,id"),
        "messages(chat_id, id) index: {idx:?}"
    );
    assert!(
        idx.iter().any(|c| c == "sender_id,client_id"),
        "unique (sender, clientId): {idx:?}"
    );
    drop(conn);
    s.done().await;
}

#[actix_web::test]
async fn two_concurrent_runs_apply_everything_exactly_once() {
    let s = scratch().await;
    let other = Db::connect(&s.url, 8).unwrap();
    let (a, b) = tokio::join!(migrate::run(&s.db), migrate::run(&other));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a + b,
        a.max(b),
        "one run applied all, the other none: {a} {b}"
    );
    assert!(a.max(b) >= 6);
    other.close().await;
    s.done().await;
}

#[actix_web::test]
async fn an_edited_migration_refuses_to_run() {
    let s = scratch().await;
    migrate::run(&s.db).await.unwrap();
    let mut conn = s.db.pool().await.unwrap().get_conn().await.unwrap();
    conn.query_drop("UPDATE refinery_schema_history SET checksum = '12345' WHERE version = 1")
        .await
        .unwrap();
    drop(conn);
    match migrate::run(&s.db).await {
        Err(MigrateError::Refinery(e)) => {
            assert!(e.to_string().contains("is different than"), "{e}")
        }
        other => panic!("expected a divergence error, got {other:?}"),
    }
    s.done().await;
}
