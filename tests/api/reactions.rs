//! Reactions (issue 17): one emoji each, at most 8 distinct per user per message, at
//! most 20 users listed per emoji — and nothing stored for what is refused.

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use crate::changes::{change_id, event_for, read_message};
use crate::helpers::{spawn_app, AnnBob, TestApp};

async fn count(app: &TestApp, table: &str) -> u64 {
    let mut conn = app.mysql().await;
    conn.query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .unwrap()
        .unwrap()
}

#[actix_web::test]
async fn a_reaction_is_one_emoji_and_anything_else_is_refused() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let m = a.send_text(chat, "m", "react to me").await;
    // One grapheme cluster of 41 bytes: a family of four with skin tones.
    let long_family = "👨🏽\u{200d}👩🏽\u{200d}👧🏽\u{200d}👦🏽";
    assert!(long_family.len() > 32);
    let refused: Vec<(Value, &str)> = vec![
        (json!("ab"), "two letters"),
        (json!("👍👍"), "two emoji"),
        (json!("x".repeat(40)), "a 40-byte string"),
        (json!(long_family), "one grapheme but over 32 bytes"),
        (json!("1"), "a digit"),
        (json!(""), "empty"),
        (json!(" "), "a space"),
        (json!("👍 "), "an emoji and a space"),
        (json!("\u{200d}"), "a joiner alone"),
        (json!(1), "not a string"),
        (Value::Null, "null"),
    ];
    for (emoji, why) in refused {
        let code = b
            .refused(
                "message:react",
                json!({"messageId": m["id"], "emoji": emoji, "active": true}),
            )
            .await;
        assert_eq!(code, "invalid_data", "{why}");
    }
    let code = b
        .refused(
            "message:react",
            json!({"messageId": m["id"], "emoji": "👍"}),
        )
        .await;
    assert_eq!(code, "invalid_data", "without active");
    assert_eq!(count(&app, "message_reactions").await, 0);
    assert_eq!(count(&app, "message_changes").await, 0);

    // Skin tones, the heart with its variation selector, a ZWJ family, a flag.
    let accepted = ["👍🏽", "❤️", "👨\u{200d}👩\u{200d}👧\u{200d}👦", "🇫🇷"];
    for emoji in accepted {
        change_id(&b.react(&m, emoji, true).await);
        let ev = event_for(&mut a, "message:reaction", &m["id"]).await;
        assert_eq!(ev["emoji"], emoji, "the emoji comes back byte for byte");
    }
    let read = read_message(&app, &ann, chat, &m["id"]).await;
    let emoji: Vec<&str> = read["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["emoji"].as_str().unwrap())
        .collect();
    assert_eq!(emoji, accepted, "in the order first used");
    // 👍 is not 👍🏽: a different emoji, not the same one again.
    change_id(&b.react(&m, "👍", true).await);
    let read = read_message(&app, &ann, chat, &m["id"]).await;
    assert_eq!(read["reactions"].as_array().unwrap().len(), 5, "{read}");
}

#[actix_web::test]
async fn at_most_eight_distinct_emoji_per_user_per_message() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let mut b = app.ws(&bob).await;
    let m = a.send_text(chat, "m", "react a lot").await;
    let other = a.send_text(chat, "o", "another message").await;
    let eight = ["👍", "❤️", "😂", "😮", "😢", "🙏", "🎉", "🔥"];
    for e in eight {
        change_id(&a.react(&m, e, true).await);
    }
    let code = a
        .refused(
            "message:react",
            json!({"messageId": m["id"], "emoji": "👀", "active": true}),
        )
        .await;
    assert_eq!(code, "too_many_reactions");
    // One already there again is no ninth: nothing changes, no error.
    assert_eq!(a.react(&m, "👍", true).await, Value::Null);
    // The limit is per user and per message.
    change_id(&b.react(&m, "👀", true).await);
    change_id(&a.react(&other, "👀", true).await);
    // Removing one makes room.
    change_id(&a.react(&m, "🔥", false).await);
    change_id(&a.react(&m, "👀", true).await);
    let mut conn = app.mysql().await;
    let mine: Option<u64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM message_reactions WHERE message_id = {} AND user_id = {}",
            m["id"], ann.id
        ))
        .await
        .unwrap();
    assert_eq!(mine, Some(8));
    let read = read_message(&app, &bob, chat, &m["id"]).await;
    let eyes = read["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["emoji"] == "👀")
        .unwrap()
        .clone();
    assert_eq!(
        eyes,
        json!({"emoji": "👀", "count": 2, "userIds": [bob.id, ann.id]})
    );
}

#[actix_web::test]
async fn a_reaction_lists_at_most_twenty_users_the_earliest_and_counts_them_all() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let mut others = Vec::new();
    for i in 0..21 {
        others.push(app.register(&format!("user{i:02}")).await);
    }
    let refs: Vec<_> = others.iter().collect();
    let group = app.group_chat(&ann, &refs).await;
    let mut a = app.ws(&ann).await;
    let m = a.send_text(group, "m", "everyone react").await;
    for u in &others {
        let mut c = app.ws(u).await;
        change_id(&c.react(&m, "👍", true).await);
        c.close();
    }
    change_id(&a.react(&m, "👍", true).await);
    let read = read_message(&app, &ann, group, &m["id"]).await;
    let earliest: Vec<u64> = others.iter().take(20).map(|u| u.id).collect();
    assert_eq!(
        read["reactions"],
        json!([{"emoji": "👍", "count": 22, "userIds": earliest}])
    );
}
