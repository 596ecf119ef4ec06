//! Hostile users: see mod.rs. Groups without consent and the chat list: one account
//! puts a victim in more groups than one unpaged query can load, starts chats in a
//! loop, or keeps people in a group they want out of.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};

use crate::peer::{ws_url, Conn, Event};
use crate::support::{mysql, percentile, reliability, Parley, Secrets, TestDb, User};

/// More memberships than MySQL's 65,535 placeholders: the old chat list put every
/// chat id of the viewer in one `IN` list and failed for good past that.
const GROUPS: u64 = 70_000;

async fn get(p: &Parley, token: &str, path: &str) -> (u16, Value, Duration) {
    let t = Instant::now();
    let res = p
        .http
        .get(p.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, t.elapsed())
}

fn ids_of(page: &Value) -> Vec<u64> {
    page["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_victim_put_in_70000_groups_still_loads_their_chat_list_page_by_page() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let victim = p.register("victim", &secrets).await;
    let attacker = p.register("attacker", &secrets).await;
    let friend = p.register("friend", &secrets).await;
    let direct = p.direct_chat(&friend, &victim).await;

    // The attack, written straight into MySQL for speed: 70,000 groups of two, the
    // attacker and the victim (what POST /api/chats in a loop made before the limit).
    let t = Instant::now();
    let mut c = mysql(&db.url).await;
    c.exec_drop(
        "INSERT INTO chats (kind, title, created_by) \
         SELECT 'group', CONCAT('spam ', seq), ? FROM seq_1_to_70000",
        (attacker.id,),
    )
    .await
    .unwrap();
    for member in [victim.id, attacker.id] {
        c.exec_drop(
            "INSERT INTO chat_members (chat_id, user_id) \
             SELECT id, ? FROM chats WHERE created_by = ? AND kind = 'group'",
            (member, attacker.id),
        )
        .await
        .unwrap();
    }
    let memberships: Option<u64> = c
        .exec_first(
            "SELECT COUNT(*) FROM chat_members WHERE user_id = ?",
            (victim.id,),
        )
        .await
        .unwrap();
    let _ = c.disconnect().await;
    assert_eq!(memberships, Some(GROUPS + 1));
    let setup = t.elapsed();

    // The friend writes now: the real conversation is the newest activity.
    let (mut fconn, _) = Conn::ready(&ws_url(&p.ws_base(), &friend.token)).await;
    fconn.send(json!({"event": "message:send", "ref": "1",
        "data": {"chatId": direct, "clientId": "hello", "kind": "text", "content": "still there?"}}));
    let ack = fconn.reply("1", Duration::from_secs(10)).await.unwrap();
    assert_eq!(ack["event"], "ack", "{ack}");

    // The victim's client loads: the first page, with the friend's chat on top.
    let (status, first, first_took) = get(&p, &victim.token, "/api/chats").await;
    assert_eq!(status, 200, "{first}");
    let first_ids = ids_of(&first);
    assert_eq!(first_ids.len(), 50, "default page");
    assert_eq!(first_ids[0], direct, "newest activity first");
    assert_eq!(
        first["chats"][0]["lastMessage"]["content"], "still there?",
        "{}",
        first["chats"][0]
    );

    // Scrolling on: pages of 200 follow each other with no repeat and no gap (the
    // spam groups share one creation time, so the chat id orders them).
    let mut seen: HashSet<u64> = first_ids.iter().copied().collect();
    let mut previous = *first_ids.last().unwrap();
    let mut next = first["nextBefore"].as_str().unwrap().to_string();
    let mut took = Vec::new();
    for _ in 0..10 {
        let (status, page, d) = get(
            &p,
            &victim.token,
            &format!("/api/chats?limit=200&before={next}"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        took.push(d);
        let ids = ids_of(&page);
        assert_eq!(ids.len(), 200);
        for id in &ids {
            assert!(seen.insert(*id), "chat {id} on two pages");
            assert_eq!(*id, previous - 1, "no gap after {previous}");
            previous = *id;
        }
        next = page["nextBefore"].as_str().unwrap().to_string();
    }

    // And the victim can still connect and talk.
    let t = Instant::now();
    let (mut vconn, _) = Conn::ready(&ws_url(&p.ws_base(), &victim.token)).await;
    let ready_after = t.elapsed();
    vconn.send(json!({"event": "message:send", "ref": "2",
        "data": {"chatId": direct, "clientId": "yes", "kind": "text", "content": "yes!"}}));
    let ack = vconn.reply("2", Duration::from_secs(10)).await.unwrap();
    assert_eq!(ack["event"], "ack", "{ack}");
    p.assert_logs_clean(&secrets);

    reliability(
        "hostile_chat_list_70000_groups",
        &[
            ("groups", GROUPS.to_string()),
            ("setup", crate::support::ms(setup)),
            ("first_page", crate::support::ms(first_took)),
            ("page200_p50", crate::support::ms(percentile(&took, 50.0))),
            ("page200_max", crate::support::ms(percentile(&took, 100.0))),
            ("ws_ready", crate::support::ms(ready_after)),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_cannot_start_chats_in_a_loop_or_make_huge_groups() {
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[("PARLEY__LIMITS__CHATS_PER_MIN", "20".into())]).await;
    let victim = p.register("victim", &secrets).await;
    let attacker = p.register("attacker", &secrets).await;
    let bystander = p.register("bystander", &secrets).await;

    let (mut created, mut refused) = (0, 0);
    let mut retry_after = Vec::new();
    for i in 0..100 {
        let res = p
            .http
            .post(p.url("/api/chats"))
            .bearer_auth(&attacker.token)
            .json(&json!({"title": format!("spam {i}"), "memberIds": [victim.id]}))
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            201 => created += 1,
            429 => {
                refused += 1;
                retry_after.push(
                    res.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                );
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(created, 20, "the minute's allowance, then no more");
    assert_eq!(refused, 80);
    assert!(retry_after.iter().all(|s| (1..=60).contains(s)));

    // One request cannot add thousands either (ids need not even exist: the size
    // is refused first).
    let many: Vec<u64> = (1..=1000).collect();
    let res = p
        .http
        .post(p.url("/api/chats"))
        .bearer_auth(&bystander.token)
        .json(&json!({"title": "huge", "memberIds": many}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_member", "{body}");

    // Others are not limited by the attacker.
    let res = p
        .http
        .post(p.url("/api/chats"))
        .bearer_auth(&bystander.token)
        .json(&json!({"userId": victim.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let (status, page, _) = get(&p, &victim.token, "/api/chats?limit=200").await;
    assert_eq!(status, 200);
    assert_eq!(
        ids_of(&page).len(),
        21,
        "20 spam groups and the bystander's chat"
    );
    p.assert_logs_clean(&secrets);

    reliability(
        "hostile_chat_creation_loop",
        &[
            ("attempts", "100".into()),
            ("created", created.to_string()),
            ("refused_429", refused.to_string()),
            (
                "retry_after_max_s",
                retry_after.iter().max().unwrap().to_string(),
            ),
            ("group_of_1001", "400".into()),
        ],
    );
}

/// Frames of `conn` within `d` that carry `event`.
async fn frames_within(conn: &mut Conn, event: &str, d: Duration) -> Vec<Value> {
    let deadline = Instant::now() + d;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_within(left).await {
            Some(Event::Frame(v)) if v["event"] == event => out.push(v),
            Some(Event::Frame(_)) => {}
            Some(other) => panic!("connection ended: {other:?}"),
            None => return out,
        }
    }
}

async fn leave(p: &Parley, who: &User, chat: u64) -> u16 {
    p.http
        .delete(p.url(&format!("/api/chats/{chat}/members/me")))
        .bearer_auth(&who.token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_against_their_will_leaves_and_hears_no_more() {
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let victim = p.register("victim", &secrets).await;
    let attacker = p.register("attacker", &secrets).await;
    let accomplice = p.register("accomplice", &secrets).await;
    let group = p.group_chat(&attacker, &[&victim, &accomplice]).await;

    let (mut vconn, _) = Conn::ready(&ws_url(&p.ws_base(), &victim.token)).await;
    let (mut aconn, _) = Conn::ready(&ws_url(&p.ws_base(), &attacker.token)).await;
    let (mut cconn, _) = Conn::ready(&ws_url(&p.ws_base(), &accomplice.token)).await;

    // The group is in use (its room runs, members loaded) before the victim leaves:
    // leaving must reach the running room, not only rooms started afterwards.
    aconn.send(json!({"event": "message:send", "ref": "first", "data":
        {"chatId": group, "clientId": "first", "kind": "text", "content": "welcome"}}));
    aconn.reply("first", Duration::from_secs(10)).await.unwrap();
    vconn
        .wait_event("message:received", Duration::from_secs(5))
        .await
        .unwrap();
    cconn
        .wait_event("message:received", Duration::from_secs(5))
        .await
        .unwrap();
    let t = Instant::now();
    assert_eq!(leave(&p, &victim, group).await, 204);
    let left_in = t.elapsed();
    for conn in [&mut aconn, &mut cconn, &mut vconn] {
        let ev = conn
            .wait_event("chat:member-left", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(ev["data"], json!({"chatId": group, "userId": victim.id}));
    }

    // The attacker keeps writing to the group: the others get it, the victim not.
    for i in 0..20 {
        aconn.send(json!({"event": "message:send", "ref": format!("s{i}"),
            "data": {"chatId": group, "clientId": format!("spam-{i}"), "kind": "text", "content": "spam"}}));
    }
    for i in 0..20 {
        let r = aconn
            .reply(&format!("s{i}"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r["event"], "ack", "{r}");
    }
    let got = frames_within(&mut cconn, "message:received", Duration::from_secs(2)).await;
    assert_eq!(got.len(), 20, "the remaining member gets every message");
    let pushed = frames_within(&mut vconn, "message:received", Duration::from_secs(1)).await;
    assert!(pushed.is_empty(), "pushed to the leaver: {pushed:?}");

    // Nor on reconnect or by asking: history and the chat are closed to them.
    drop(vconn);
    let (mut vconn, before_ready) = Conn::ready(&ws_url(&p.ws_base(), &victim.token)).await;
    assert!(
        before_ready
            .iter()
            .all(|f| f["event"] != "message:received"),
        "{before_ready:?}"
    );
    vconn.send(json!({"event": "sync", "ref": "sync", "data": {"afterId": 0}}));
    let synced = vconn.reply("sync", Duration::from_secs(10)).await.unwrap();
    assert_eq!(synced["data"]["count"], 0, "{synced}");
    vconn.send(json!({"event": "message:send", "ref": "w",
        "data": {"chatId": group, "clientId": "back", "kind": "text", "content": "let me in"}}));
    let refused = vconn.reply("w", Duration::from_secs(10)).await.unwrap();
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let path = format!("/api/chats/{group}");
    let (status, body, _) = get(&p, &victim.token, &path).await;
    assert_eq!(status, 403, "{path}: {body}");
    assert_eq!(body["error"]["code"], "forbidden");
    // Issue 19: the history up to the departure stays readable, nothing after it.
    let (status, page, _) = get(&p, &victim.token, &format!("/api/messages?chatId={group}")).await;
    assert_eq!(status, 200, "{page}");
    let kept = page["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        kept.first().map(|m| m["kind"].clone()),
        Some(json!("system")),
        "{page}"
    );
    assert!(kept.iter().all(|m| m["content"] != "spam"), "{page}");
    let (_, page, _) = get(&p, &victim.token, "/api/chats").await;
    assert!(ids_of(&page).is_empty(), "{page}");
    assert_eq!(leave(&p, &victim, group).await, 403, "leaving twice");
    let count = crate::support::count(
        &db.url,
        &format!("SELECT COUNT(*) FROM chat_members WHERE chat_id = {group}"),
    )
    .await;
    assert_eq!(count, 2);
    p.assert_logs_clean(&secrets);

    reliability(
        "hostile_group_leave",
        &[
            ("leave", crate::support::ms(left_in)),
            ("pushed_after_leave", pushed.len().to_string()),
            ("history_status", "200".into()),
        ],
    );
}
