//! An offline client converges (issue 17): Bob's laptop is away while Ann and Cat edit,
//! delete and react; his phone and Dave stay online. When the laptop comes back,
//! `ready.lastChange` and `sync {afterId, afterChange}` bring it to exactly what the
//! phone shows, which is exactly what the history says over HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{json, Value};

use crate::changes::{change_id, deleted_shape, history, sync_all};
use crate::helpers::{spawn_app, two_nodes, AnnBob, Redis, TestApp, TestUser, WsClient};

/// A client's copy of its chats, kept by PROTOCOL.md's convergence rules: one copy per
/// message id; an edit replaces the message unless not newer than the last edit applied;
/// a delete empties it and always applies; a reaction's count follows the newest change
/// to that emoji, and whether a user is listed follows the newest change to that user's
/// reaction (with "newest per emoji" alone, a client that got two people's reactions out
/// of order, from two nodes, would drop one of them for good). Users are listed in the
/// order of the change ids that added them, emoji in the order of their earliest user.
#[derive(Debug, Default)]
pub(crate) struct Model {
    messages: BTreeMap<u64, Value>,
    content_change: HashMap<u64, u64>,
    reactions: HashMap<u64, BTreeMap<String, EmojiState>>,
    /// Orders what was read with a message (change 0) as it was listed.
    seq: u64,
    /// Every change id applied.
    pub(crate) changes: BTreeSet<u64>,
}

/// One emoji on one message.
#[derive(Debug, Default)]
struct EmojiState {
    count: u64,
    count_change: u64,
    /// Per user: (change, seq, active) of the newest change to their reaction.
    users: HashMap<u64, (u64, u64, bool)>,
}

impl Model {
    pub(crate) fn apply(&mut self, frame: &Value) {
        let d = &frame["data"];
        match frame["event"].as_str().unwrap_or_default() {
            "message:received" => self.received(d),
            "message:edited" => self.edited(&d["message"], change_id(&d["changeId"])),
            "message:deleted" => self.deleted(id(&d["messageId"]), change_id(&d["changeId"])),
            "message:reaction" => self.reaction(
                id(&d["messageId"]),
                id(&d["userId"]),
                d["emoji"].as_str().expect("emoji"),
                d["active"].as_bool().expect("active"),
                d["count"].as_u64().expect("count"),
                change_id(&d["changeId"]),
            ),
            _ => {}
        }
    }

    fn received(&mut self, m: &Value) {
        let mid = id(&m["id"]);
        if !self.messages.contains_key(&mid) {
            self.insert(mid, m);
        }
    }

    /// A message seen for the first time, with the reactions it was read with.
    fn insert(&mut self, mid: u64, m: &Value) {
        self.messages.insert(mid, m.clone());
        let emoji = self.reactions.entry(mid).or_default();
        for r in m["reactions"].as_array().into_iter().flatten() {
            let st = emoji
                .entry(r["emoji"].as_str().expect("emoji").to_string())
                .or_default();
            st.count = r["count"].as_u64().expect("count");
            for u in r["userIds"].as_array().expect("userIds") {
                self.seq += 1;
                st.users.insert(id(u), (0, self.seq, true));
            }
        }
    }

    fn edited(&mut self, m: &Value, change: u64) {
        self.changes.insert(change);
        let mid = id(&m["id"]);
        if m["deleted"] == true {
            return self.deleted(mid, change);
        }
        let Some(cur) = self.messages.get_mut(&mid) else {
            self.insert(mid, m);
            return;
        };
        let stale = self.content_change.get(&mid).is_some_and(|c| *c >= change);
        if cur["deleted"] == true || stale {
            return;
        }
        self.content_change.insert(mid, change);
        *cur = m.clone();
    }

    fn deleted(&mut self, mid: u64, change: u64) {
        self.changes.insert(change);
        if let Some(cur) = self.messages.get_mut(&mid) {
            *cur = deleted_shape(cur);
        }
        self.reactions.remove(&mid);
    }

    fn reaction(
        &mut self,
        mid: u64,
        user: u64,
        emoji: &str,
        active: bool,
        count: u64,
        change: u64,
    ) {
        self.changes.insert(change);
        let live = self
            .messages
            .get(&mid)
            .is_some_and(|m| m["deleted"] != true);
        if !live {
            return;
        }
        let st = self
            .reactions
            .entry(mid)
            .or_default()
            .entry(emoji.to_string())
            .or_default();
        if change > st.count_change {
            st.count = count;
            st.count_change = change;
        }
        if st.users.get(&user).is_none_or(|(c, _, _)| change > *c) {
            st.users.insert(user, (change, 0, active));
        }
    }

    /// The caller's own reaction, from its ack (which carries only the change id).
    fn own_reaction(&mut self, mid: u64, user: u64, emoji: &str, active: bool, change: u64) {
        let before = self
            .reactions
            .get(&mid)
            .and_then(|e| e.get(emoji))
            .map_or(0, |st| st.count);
        let count = if active { before + 1 } else { before - 1 };
        self.reaction(mid, user, emoji, active, count, change);
    }

    /// A message's `reactions` as the model has them.
    fn reactions_of(&self, mid: u64) -> Value {
        let mut list: Vec<((u64, u64), Value)> = Vec::new();
        for (emoji, st) in self.reactions.get(&mid).into_iter().flatten() {
            if st.count == 0 {
                continue;
            }
            let mut on: Vec<(u64, u64, u64)> = st
                .users
                .iter()
                .filter(|(_, (_, _, active))| *active)
                .map(|(u, (c, seq, _))| (*c, *seq, *u))
                .collect();
            on.sort_unstable();
            let first = on.first().map_or((u64::MAX, 0), |(c, seq, _)| (*c, *seq));
            let ids: Vec<u64> = on.iter().take(20).map(|(_, _, u)| *u).collect();
            list.push((
                first,
                json!({"emoji": emoji, "count": st.count, "userIds": ids}),
            ));
        }
        list.sort_by_key(|(first, _)| *first);
        Value::Array(list.into_iter().map(|(_, r)| r).collect())
    }

    /// What is compared: every message but its `status` (the sender's view of the
    /// receipts, which no change touches).
    pub(crate) fn view(&self, chats: &[u64]) -> BTreeMap<u64, Value> {
        self.messages
            .iter()
            .filter(|(_, m)| chats.iter().any(|c| m["chatId"] == *c))
            .map(|(k, m)| {
                let mut m = without_status(m);
                if m["deleted"] != true {
                    m["reactions"] = self.reactions_of(*k);
                }
                (*k, m)
            })
            .collect()
    }
}

fn id(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("an id: {v}"))
}

fn without_status(m: &Value) -> Value {
    let mut m = m.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove("status");
    }
    m
}

/// The chats' messages as `user` reads them over HTTP, by id, without `status`.
pub(crate) async fn http_view(
    app: &TestApp,
    user: &TestUser,
    chats: &[u64],
) -> BTreeMap<u64, Value> {
    let mut all = BTreeMap::new();
    for chat in chats {
        for m in history(app, user, *chat).await {
            all.insert(id(&m["id"]), without_status(&m));
        }
    }
    all
}

/// A user's session with its model: every frame it reads is applied, and so are its
/// own actions (from their acks).
pub(crate) struct Device {
    pub(crate) ws: WsClient,
    user: u64,
    pub(crate) model: Model,
}

impl Device {
    pub(crate) fn new(ws: WsClient, user: &TestUser) -> Device {
        Device {
            ws,
            user: user.id,
            model: Model::default(),
        }
    }

    /// Applies what was read while waiting for a reply, in order.
    fn apply_skipped(&mut self) {
        for f in std::mem::take(&mut self.ws.skipped) {
            self.model.apply(&f);
        }
    }

    async fn react(&mut self, m: &Value, emoji: &str, active: bool) -> u64 {
        let change = change_id(&self.ws.react(m, emoji, active).await);
        self.apply_skipped();
        self.model
            .own_reaction(id(&m["id"]), self.user, emoji, active, change);
        change
    }

    /// Reads and applies frames until the model has every one of `changes` and `messages`.
    pub(crate) async fn catch_up(&mut self, changes: &BTreeSet<u64>, messages: &[&Value]) {
        self.apply_skipped();
        loop {
            let missing_change = changes.iter().any(|c| !self.model.changes.contains(c));
            let missing_message = messages
                .iter()
                .any(|m| !self.model.messages.contains_key(&id(&m["id"])));
            if !missing_change && !missing_message {
                return;
            }
            let f = self.ws.next().await;
            self.model.apply(&f);
        }
    }
}

/// Records a change id in every set it belongs to.
fn note(change: u64, sets: &mut [&mut BTreeSet<u64>]) -> u64 {
    for s in sets.iter_mut() {
        assert!(s.insert(change), "change id {change} given twice");
    }
    change
}

#[actix_web::test]
async fn a_client_that_was_offline_converges_to_one_that_stayed_online() {
    let redis = Redis::start();
    let (n1, n2) = two_nodes(&redis).await;
    let AnnBob {
        ann,
        bob,
        chat: direct,
    } = n1.ann_bob().await;
    let cat = n1.register("cat").await;
    let dave = n1.register("dave").await;
    let group = n1.group_chat(&ann, &[&bob, &cat, &dave]).await;
    // Bob is not in this one: nothing of it may reach him.
    let private = n1.direct_chat(&ann, &cat).await;
    let bobs = [group, direct];

    let mut a = n1.ws(&ann).await;
    let mut c = n2.ws(&cat).await;
    let mut dave_dev = Device::new(n1.ws(&dave).await, &dave);
    let (laptop_ws, ready) = n1.ws_ready(&bob).await;
    assert_eq!(ready["data"]["lastChange"], 0, "no change yet: {ready}");
    let mut laptop = Device::new(laptop_ws, &bob);
    let mut phone = Device::new(n2.ws(&bob).await, &bob);

    let mut g = Vec::new();
    for i in 0..5 {
        g.push(
            a.send_text(group, &format!("g{i}"), &format!("group {i}"))
                .await,
        );
    }
    let mut d = Vec::new();
    for i in 0..3 {
        d.push(
            a.send_text(direct, &format!("d{i}"), &format!("direct {i}"))
                .await,
        );
    }
    let p = a.send_text(private, "p0", "not for bob").await;
    let all: Vec<&Value> = g.iter().chain(d.iter()).collect();
    laptop.catch_up(&BTreeSet::new(), &all).await;
    phone.catch_up(&BTreeSet::new(), &all).await;

    // While everyone is online.
    let (mut seen_by_bob, mut in_group) = (BTreeSet::new(), BTreeSet::new());
    note(
        change_id(&a.edit(&g[0], "group 0, edited").await["changeId"]),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    note(
        change_id(&c.react(&g[1], "👍", true).await),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    laptop.catch_up(&seen_by_bob, &[]).await;
    note(
        laptop.react(&g[3], "😂", true).await,
        &mut [&mut seen_by_bob, &mut in_group],
    );
    note(
        change_id(&c.react(&g[2], "👍", true).await),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    note(
        change_id(&a.react(&d[0], "❤️", true).await),
        &mut [&mut seen_by_bob],
    );
    laptop.catch_up(&seen_by_bob, &all).await;
    assert!(
        laptop
            .model
            .messages
            .values()
            .all(|m| m["chatId"] != private),
        "nothing of a chat bob is not in"
    );
    // The laptop acknowledges what it has (as the client does), keeps its cursors, goes.
    let ids: Vec<u64> = laptop.model.messages.keys().copied().collect();
    laptop
        .ws
        .acked("message:delivered", json!({"messageIds": ids}))
        .await;
    laptop.apply_skipped();
    let cursor = *laptop.model.changes.last().expect("changes seen");
    let last_id = *laptop.model.messages.keys().last().expect("messages seen");
    laptop.ws.close();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While the laptop is away.
    note(
        change_id(&a.edit(&g[1], "group 1, edited while away").await["changeId"]),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    note(
        change_id(&a.delete(&g[2]).await),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    note(
        change_id(&a.react(&g[3], "❤️", true).await),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    note(
        change_id(&c.react(&g[3], "😮", true).await),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    note(
        change_id(&c.react(&g[3], "😮", false).await),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    note(
        change_id(&c.react(&g[0], "👍", true).await),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    // The phone acts on what it has seen, as a person does.
    phone.catch_up(&seen_by_bob, &[]).await;
    note(
        phone.react(&g[3], "😂", false).await,
        &mut [&mut seen_by_bob, &mut in_group],
    );
    // The phone acts on what it has seen, as a person does.
    phone.catch_up(&seen_by_bob, &[]).await;
    note(
        phone.react(&g[4], "😢", true).await,
        &mut [&mut seen_by_bob, &mut in_group],
    );
    let g5 = c.send_text(group, "g5", "sent while away").await;
    note(
        change_id(&c.edit(&g5, "sent while away, edited").await["changeId"]),
        &mut [&mut seen_by_bob, &mut in_group],
    );
    note(
        change_id(&a.edit(&d[0], "direct 0, edited").await["changeId"]),
        &mut [&mut seen_by_bob],
    );
    // Edited, then deleted: the replayed edit must not bring the words back.
    note(
        change_id(&a.edit(&d[1], "a regretted edit").await["changeId"]),
        &mut [&mut seen_by_bob],
    );
    note(change_id(&a.delete(&d[1]).await), &mut [&mut seen_by_bob]);
    note(
        change_id(&a.react(&d[2], "🙏", true).await),
        &mut [&mut seen_by_bob],
    );
    // The phone acts on what it has seen, as a person does.
    phone.catch_up(&seen_by_bob, &[]).await;
    note(
        phone.react(&d[2], "👍", true).await,
        &mut [&mut seen_by_bob],
    );
    let d3 = a.send_text(direct, "d3", "direct, while away").await;
    note(
        change_id(&a.react(&d3, "👍🏽", true).await),
        &mut [&mut seen_by_bob],
    );
    // The newest changes of all are in a chat bob is not in.
    let mut not_bobs = BTreeSet::new();
    note(
        change_id(&a.edit(&p, "still not for bob").await["changeId"]),
        &mut [&mut not_bobs],
    );
    note(
        change_id(&c.react(&p, "👍", true).await),
        &mut [&mut not_bobs],
    );

    phone.catch_up(&seen_by_bob, &[&g5, &d3]).await;
    dave_dev.catch_up(&in_group, &[&g5]).await;

    // The laptop comes back (to the other node).
    let (ws, ready) = n2.ws_ready(&bob).await;
    laptop.ws = ws;
    let newest = *seen_by_bob.last().unwrap();
    assert_eq!(
        ready["data"]["lastChange"], newest,
        "ready.lastChange is the newest change bob can see (not {not_bobs:?}): {ready}"
    );
    assert!(newest > cursor);
    let (frames, acks) = sync_all(&mut laptop.ws, last_id, Some(cursor)).await;
    let replayed: Vec<u64> = frames
        .iter()
        .filter(|f| f["data"]["changeId"].is_u64())
        .map(|f| id(&f["data"]["changeId"]))
        .collect();
    let expected: Vec<u64> = seen_by_bob.range(cursor + 1..).copied().collect();
    assert_eq!(
        replayed, expected,
        "every missed change, once, oldest first"
    );
    for f in &frames {
        let chat = if f["event"] == "message:edited" {
            &f["data"]["message"]["chatId"]
        } else {
            &f["data"]["chatId"]
        };
        assert!(bobs.iter().any(|b| chat == b), "only bob's chats: {f}");
    }
    assert!(
        !frames.iter().any(|f| f.to_string().contains("regretted")),
        "a message deleted since is replayed deleted, edits included: {frames:?}"
    );
    let last = acks.last().unwrap();
    assert_eq!(last["lastChange"], newest, "{acks:?}");
    assert_eq!(last["hasMore"], false, "{acks:?}");
    assert_eq!(
        acks.iter()
            .map(|a| a["changes"].as_u64().unwrap())
            .sum::<u64>(),
        expected.len() as u64,
        "{acks:?}"
    );
    for f in &frames {
        laptop.model.apply(f);
    }
    laptop.apply_skipped();

    let stayed = phone.model.view(&bobs);
    let came_back = laptop.model.view(&bobs);
    assert_eq!(
        came_back, stayed,
        "the laptop after sync equals the phone that stayed"
    );
    assert_eq!(http_view(&n1, &bob, &bobs).await, stayed, "and the history");
    assert_eq!(
        dave_dev.model.view(&[group]),
        http_view(&n2, &dave, &[group]).await,
        "dave, who stayed online, too"
    );
    assert!(
        dave_dev.model.changes.is_subset(&in_group),
        "dave got only the group's changes"
    );
    // The states are the ones intended (not merely equal).
    let g3 = &stayed[&id(&g[3]["id"])];
    assert_eq!(
        g3["reactions"],
        json!([{"emoji": "❤️", "count": 1, "userIds": [ann.id]}])
    );
    assert_eq!(stayed[&id(&g[2]["id"])], deleted_shape(&g[2]));
    assert_eq!(
        stayed[&id(&g[1]["id"])]["content"],
        "group 1, edited while away"
    );
    assert_eq!(stayed[&id(&g5["id"])]["content"], "sent while away, edited");
    assert_eq!(
        stayed[&id(&d[2]["id"])]["reactions"],
        json!([{"emoji": "🙏", "count": 1, "userIds": [ann.id]},
               {"emoji": "👍", "count": 1, "userIds": [bob.id]}])
    );
    assert!(stayed.contains_key(&id(&d3["id"])));
}

#[actix_web::test]
async fn more_than_one_page_of_changes_is_replayed_in_order_across_sync_calls() {
    let app = spawn_app().await;
    let AnnBob { ann, bob, chat } = app.ann_bob().await;
    let mut a = app.ws(&ann).await;
    let m = a.send_text(chat, "m", "toggle me").await;
    let (b, ready) = app.ws_ready(&bob).await;
    assert_eq!(ready["data"]["lastChange"], 0);
    let mut laptop = Device::new(b, &bob);
    laptop.catch_up(&BTreeSet::new(), &[&m]).await;
    laptop.ws.close();

    // 520 reaction changes and an edit: two pages of at most 500.
    let mut made = Vec::new();
    for i in 0..520 {
        made.push(change_id(&a.react(&m, "👍", i % 2 == 0).await));
    }
    made.push(change_id(
        &a.edit(&m, "after 520 changes").await["changeId"],
    ));
    assert!(made.windows(2).all(|w| w[0] < w[1]), "increasing");
    let newest = *made.last().unwrap();

    let (ws, ready) = app.ws_ready(&bob).await;
    laptop.ws = ws;
    assert_eq!(ready["data"]["lastChange"], newest);
    // Without afterChange: no changes, and where to start from.
    let (frames, acks) = sync_all(&mut laptop.ws, id(&m["id"]), None).await;
    assert!(
        !frames.iter().any(|f| f["data"]["changeId"].is_u64()),
        "no change replayed without afterChange"
    );
    assert_eq!(acks[0]["lastChange"], newest, "{acks:?}");

    let (frames, acks) = sync_all(&mut laptop.ws, id(&m["id"]), Some(0)).await;
    assert_eq!(acks.len(), 2, "two calls: {acks:?}");
    assert_eq!(acks[0]["hasMore"], true);
    assert_eq!(acks[0]["changes"], 500);
    assert_eq!(acks[0]["lastChange"], made[499]);
    assert_eq!(acks[1]["hasMore"], false);
    assert_eq!(acks[1]["changes"], 21);
    assert_eq!(acks[1]["lastChange"], newest);
    let replayed: Vec<u64> = frames
        .iter()
        .filter(|f| f["data"]["changeId"].is_u64())
        .map(|f| id(&f["data"]["changeId"]))
        .collect();
    assert_eq!(replayed, made, "each change once, in order");
    for f in &frames {
        laptop.model.apply(f);
    }
    let view = laptop.model.view(&[chat]);
    assert_eq!(view, http_view(&app, &bob, &[chat]).await);
    assert_eq!(
        view[&id(&m["id"])]["reactions"],
        json!([]),
        "an even number of toggles"
    );
    assert_eq!(view[&id(&m["id"])]["content"], "after 520 changes");
}
