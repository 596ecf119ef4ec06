//! Frames naming chats that do not exist, or are someone else's, start nothing
//! (issue 15, item 9): the old server started a room actor, and a query kept for
//! 300 s, for every unknown chat id in a frame.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::peer::{ws_url, Conn, Event};
use crate::support::{ms, reliability, AnnBob, Parley, Secrets, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_for_chats_that_are_not_yours_start_no_rooms() {
    let _one_at_a_time = crate::support::exclusive().await;
    let db = TestDb::fresh();
    let secrets = Secrets::default();
    let p = Parley::start(&db.url, &[]).await;
    let eve = p.register("prober", &secrets).await;
    // Someone else's chat: real, but not Eve's.
    let AnnBob {
        ann, chat: theirs, ..
    } = p.ann_bob(&secrets).await;
    let rooms_before = p.metrics().await["parley_rooms"];

    let (mut c, _) = Conn::ready(&ws_url(&p.ws_base(), &eve.token)).await;
    let probes = 2000u64;
    let started = Instant::now();
    for i in 0..probes {
        // Unknown ids, and the foreign chat every 100th frame.
        let chat = if i % 100 == 0 { theirs } else { 1_000_000 + i };
        let event = if i % 2 == 0 { "message:send" } else { "typing" };
        let data = if event == "typing" {
            json!({"chatId": chat, "active": true})
        } else {
            json!({"chatId": chat, "clientId": format!("p{i}"), "kind": "text", "content": "x"})
        };
        c.send(json!({"event": event, "ref": format!("r{i}"), "data": data}));
    }
    let mut forbidden = 0;
    let mut other = Vec::new();
    while forbidden + (other.len() as u64) < probes {
        match c.recv_within(Duration::from_secs(20)).await {
            Some(Event::Frame(v)) if v["event"] == "error" => {
                if v["data"]["code"] == "forbidden" {
                    forbidden += 1;
                } else {
                    other.push(v);
                }
            }
            Some(Event::Frame(_)) => {}
            e => panic!("connection ended after {forbidden} answers: {e:?}"),
        }
    }
    let took = started.elapsed();
    let rooms_after = p.metrics().await["parley_rooms"];
    reliability(
        "unknown_chat_probes",
        &[
            ("probes", probes.to_string()),
            ("forbidden", forbidden.to_string()),
            ("answered_in", ms(took)),
            ("rooms_started", (rooms_after - rooms_before).to_string()),
        ],
    );
    assert!(
        other.is_empty(),
        "other answers: {:?}",
        &other[..other.len().min(3)]
    );
    assert_eq!(forbidden, probes);
    assert_eq!(
        rooms_after, rooms_before,
        "rooms were started for chats Eve is not in"
    );
    // Nothing was stored, and the real members still chat normally.
    let stored = crate::support::count(&db.url, "SELECT COUNT(*) FROM messages").await;
    assert_eq!(stored, 0);
    let (mut a, _) = Conn::ready(&ws_url(&p.ws_base(), &ann.token)).await;
    a.send(json!({"event": "message:send", "ref": "ok", "data":
        {"chatId": theirs, "clientId": "real-1", "kind": "text", "content": "hi"}}));
    let ack = a.reply("ok", Duration::from_secs(10)).await.unwrap();
    assert_eq!(ack["event"], "ack", "{ack}");
    assert_eq!(p.metrics().await["parley_rooms"], rooms_before + 1.0);
    p.assert_logs_clean(&secrets);
}
