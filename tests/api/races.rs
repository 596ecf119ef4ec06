//! Changes that race each other on two nodes (issue 17): the counts, the toggles and
//! the edit-versus-delete each end the same for a live client (applying events by
//! PROTOCOL.md's convergence rules) as in the history — and a delete always wins.

use std::collections::BTreeSet;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use crate::changes::{change_id, deleted_shape};
use crate::convergence::{http_view, Device};
use crate::helpers::{two_nodes, AnnBob, Redis, TestUser};

/// The change ids of these acks (those that changed something), checking each is an ack
/// or one of the `allowed` refusals.
fn changes_of(replies: &[Value], allowed: &[&str]) -> Vec<u64> {
    let mut out = Vec::new();
    for r in replies {
        if r["event"] == "error" {
            let code = r["data"]["code"].as_str().unwrap_or_default();
            assert!(allowed.contains(&code), "{r}");
            continue;
        }
        assert_eq!(r["event"], "ack", "{r}");
        if r["data"]["changeId"].is_u64() {
            out.push(change_id(&r["data"]["changeId"]));
        }
    }
    out
}

#[actix_web::test]
async fn many_people_reacting_at_once_end_with_the_same_count_everywhere() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let ann = n1.register("ann").await;
    let dave = n1.register("dave").await;
    let mut people = Vec::new();
    for i in 0..10 {
        people.push(n1.register(&format!("person{i}")).await);
    }
    let mut members: Vec<&TestUser> = people.iter().collect();
    members.push(&dave);
    let group = n1.group_chat(&ann, &members).await;
    let mut a = n1.ws(&ann).await;
    let mut watchers = [
        Device::new(n1.ws(&ann).await, &ann),
        Device::new(n2.ws(&dave).await, &dave),
    ];
    let mut sessions = Vec::new();
    for (i, p) in people.iter().enumerate() {
        sessions.push(if i % 2 == 0 {
            n1.ws(p).await
        } else {
            n2.ws(p).await
        });
    }
    let m = a.send_text(group, "m", "react at once").await;
    for w in &mut watchers {
        w.catch_up(&BTreeSet::new(), &[&m]).await;
    }
    for (active, count) in [(true, 10), (false, 0)] {
        let refs: Vec<String> = sessions
            .iter()
            .map(|s| {
                s.fire(
                    "message:react",
                    json!({"messageId": m["id"], "emoji": "👍", "active": active}),
                )
            })
            .collect();
        let mut changes = BTreeSet::new();
        for (s, r) in sessions.iter_mut().zip(&refs) {
            changes.extend(changes_of(&s.replies(std::slice::from_ref(r)).await, &[]));
        }
        assert_eq!(changes.len(), 10, "each one changed something");
        let http = http_view(&n2, &dave, &[group]).await;
        let reactions = &http[&m["id"].as_u64().unwrap()]["reactions"];
        if count == 0 {
            assert_eq!(*reactions, json!([]));
        } else {
            assert_eq!(reactions[0]["count"], count, "{reactions}");
            assert_eq!(reactions[0]["userIds"].as_array().unwrap().len(), 10);
        }
        for w in &mut watchers {
            w.catch_up(&changes, &[]).await;
            let view = w.model.view(&[group]);
            let sorted = |v: &std::collections::BTreeMap<u64, Value>| {
                let mut ids: Vec<u64> = v[&m["id"].as_u64().unwrap()]["reactions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|r| r["userIds"].as_array().unwrap().clone())
                    .map(|u| u.as_u64().unwrap())
                    .collect();
                ids.sort_unstable();
                ids
            };
            assert_eq!(sorted(&view), sorted(&http), "the same people");
            assert_eq!(
                view, http,
                "a live client applying the events ends where the history is \
                 (userIds in the order of the changes that added them)"
            );
        }
    }
}

#[actix_web::test]
async fn one_person_toggling_from_two_nodes_at_once_converges() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let mut a = n1.ws(&ann).await;
    let mut watchers = [
        Device::new(n1.ws(&ann).await, &ann),
        Device::new(n2.ws(&ann).await, &ann),
    ];
    let mut b1 = n1.ws(&bob).await;
    let mut b2 = n2.ws(&bob).await;
    let m = a.send_text(chat, "m", "toggle me from everywhere").await;
    for w in &mut watchers {
        w.catch_up(&BTreeSet::new(), &[&m]).await;
    }
    let (mut r1, mut r2) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let data = |active: bool| json!({"messageId": m["id"], "emoji": "👍", "active": active});
        r1.push(b1.fire("message:react", data(i % 2 == 0)));
        r2.push(b2.fire("message:react", data(i % 2 == 1)));
    }
    let mut changes: BTreeSet<u64> = changes_of(&b1.replies(&r1).await, &[])
        .into_iter()
        .collect();
    changes.extend(changes_of(&b2.replies(&r2).await, &[]));
    assert!(!changes.is_empty());
    let http = http_view(&n1, &bob, &[chat]).await;
    for w in &mut watchers {
        w.catch_up(&changes, &[]).await;
        assert_eq!(w.model.view(&[chat]), http);
    }
    // The history agrees with the newest change (the one a client keeps).
    let mut conn = n1.mysql().await;
    let newest: Option<(u8, u32)> = conn
        .query_first(format!(
            "SELECT active, count FROM message_changes WHERE message_id = {} ORDER BY id DESC LIMIT 1",
            m["id"]
        ))
        .await
        .unwrap();
    let (active, count) = newest.unwrap();
    let stored: Option<u64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM message_reactions WHERE message_id = {}",
            m["id"]
        ))
        .await
        .unwrap();
    assert_eq!(stored, Some(u64::from(count)));
    assert_eq!(
        active == 1,
        count == 1,
        "the newest change says where it ended"
    );
}

#[actix_web::test]
async fn an_edit_racing_a_delete_never_brings_the_words_back() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob { ann, bob, chat } = n1.ann_bob().await;
    let mut a1 = n1.ws(&ann).await;
    let mut a2 = n2.ws(&ann).await;
    let mut b1 = n1.ws(&bob).await;
    let mut watcher = Device::new(n2.ws(&bob).await, &bob);
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(
            a1.send_text(chat, &format!("m{i}"), &format!("first words {i}"))
                .await,
        );
    }
    let all: Vec<&Value> = sent.iter().collect();
    watcher.catch_up(&BTreeSet::new(), &all).await;
    let (mut edits, mut deletes, mut reacts) = (Vec::new(), Vec::new(), Vec::new());
    for (i, m) in sent.iter().enumerate() {
        edits.push(a1.fire(
            "message:edit",
            json!({"messageId": m["id"], "content": format!("rewritten {i}")}),
        ));
        reacts.push(b1.fire(
            "message:react",
            json!({"messageId": m["id"], "emoji": "👍", "active": true}),
        ));
        deletes.push(a2.fire("message:delete", json!({"messageId": m["id"]})));
    }
    let mut changes: BTreeSet<u64> = changes_of(&a1.replies(&edits).await, &["message_deleted"])
        .into_iter()
        .collect();
    changes.extend(changes_of(&b1.replies(&reacts).await, &["message_deleted"]));
    let deleted = changes_of(&a2.replies(&deletes).await, &[]);
    assert_eq!(deleted.len(), 10, "each delete did it");
    changes.extend(deleted);

    let http = http_view(&n2, &bob, &[chat]).await;
    for m in &sent {
        assert_eq!(
            http[&m["id"].as_u64().unwrap()],
            deleted_shape(m),
            "deleted wins"
        );
    }
    watcher.catch_up(&changes, &[]).await;
    assert_eq!(watcher.model.view(&[chat]), http);
    let ids: Vec<String> = sent.iter().map(|m| m["id"].to_string()).collect();
    let ids = ids.join(",");
    let mut conn = n1.mysql().await;
    let left: Option<u64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM messages m WHERE id IN ({ids}) AND \
             (content <> '' OR e2ee IS NOT NULL OR deleted_at IS NULL OR \
              EXISTS (SELECT 1 FROM message_search s WHERE s.message_id = m.id))"
        ))
        .await
        .unwrap();
    assert_eq!(
        left,
        Some(0),
        "no words (nor search text) came back after a delete"
    );
    let reactions: Option<u64> = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM message_reactions WHERE message_id IN ({ids})"
        ))
        .await
        .unwrap();
    assert_eq!(reactions, Some(0), "no reaction outlives the delete");
}
