//! The reconciler: every client's log against MySQL.
//!
//! - Each acknowledged message is in `messages` exactly once, with the id, clientId
//!   and content its ack carried; every ack for one clientId carried the same id.
//! - No (sender, clientId) and no (sender, sequence number) is stored twice.
//! - Every recipient (every member but the sender) received every stored message of
//!   its chats, counting live pushes, catch-up pushes and `sync` replies. A message
//!   pushed again (same id, e.g. undelivered and re-pushed after a reconnect) is
//!   de-duplicated by id and counted as `repushed`; an id that arrives with a
//!   different sender, clientId or content than its row is an error.
//! - Per sender and chat, ids grow with the sequence number (stored in send order),
//!   and each recipient saw that sender's messages for the first time in order
//!   within one connection.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::peer::{parse_content, PeerLog};
use crate::support::Row;

#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Distinct messages acknowledged to their senders.
    pub acked: usize,
    /// Rows of the peers' messages.
    pub stored: usize,
    /// Acknowledged but not stored (or stored differently), plus stored messages a
    /// recipient never received.
    pub lost: usize,
    /// Stored twice (same sender and clientId, or same sender and sequence number).
    pub duplicated: usize,
    /// Stored out of send order, or first seen out of order by a recipient.
    pub reordered: usize,
    /// Same id pushed again to one recipient outside a `sync` reply (allowed: an
    /// undelivered message is pushed again after a reconnect; de-duplicated by id).
    pub repushed: usize,
    /// Stored rows of peer messages that no ack ever confirmed.
    pub unacked_stored: usize,
    pub deliveries: usize,
    /// Messages a recipient got only from a `sync` reply, never as a push (live or
    /// catch-up on connect): the client's own catch-up covered for the server.
    pub missed_push: usize,
    pub missed_push_detail: Vec<String>,
    pub problems: Vec<String>,
}

impl Report {
    pub fn assert_clean(&self, case: &str) {
        assert!(
            self.problems.is_empty(),
            "{case}: reconciliation failed ({} problems, showing 40): {:#?}",
            self.problems.len(),
            self.problems.iter().take(40).collect::<Vec<_>>()
        );
        assert_eq!(
            (self.lost, self.duplicated, self.reordered),
            (0, 0, 0),
            "{case}: lost / duplicated / reordered"
        );
    }

    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("acked", self.acked.to_string()),
            ("stored", self.stored.to_string()),
            ("deliveries", self.deliveries.to_string()),
            ("lost", self.lost.to_string()),
            ("duplicated", self.duplicated.to_string()),
            ("reordered", self.reordered.to_string()),
            ("repushed", self.repushed.to_string()),
            ("missed_push", self.missed_push.to_string()),
        ]
    }

    /// Every message reached every connected recipient as a push (none only via the
    /// client's own `sync`).
    pub fn assert_pushed(&self, case: &str) {
        assert_eq!(
            self.missed_push,
            0,
            "{case}: messages that reached a recipient only through its own sync: {:#?}",
            self.missed_push_detail.iter().take(20).collect::<Vec<_>>()
        );
    }
}

/// `members`: chat id → member ids. Only rows whose content is a peer message
/// (`p:<user>:<seq>`) are reconciled; probes and call traces are ignored.
/// `require_all_acked`: every stored peer message must have been acknowledged (true
/// when every peer settled before reconciling).
pub fn reconcile(
    logs: &[PeerLog],
    rows: &[Row],
    members: &HashMap<u64, Vec<u64>>,
    require_all_acked: bool,
) -> Report {
    let mut r = Report::default();
    let peers: HashSet<u64> = logs.iter().map(|l| l.user_id).collect();
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|row| peers.contains(&row.sender_id) && parse_content(&row.content).is_some())
        .collect();
    r.stored = rows.len();
    let by_id: HashMap<u64, &Row> = rows.iter().map(|row| (row.id, *row)).collect();

    // Stored once: per (sender, clientId) and per (sender, seq).
    let mut by_client: HashMap<(u64, &str), Vec<&Row>> = HashMap::new();
    let mut by_seq: HashMap<(u64, usize), Vec<u64>> = HashMap::new();
    for row in &rows {
        by_client
            .entry((row.sender_id, row.client_id.as_str()))
            .or_default()
            .push(row);
        let (user, seq) = parse_content(&row.content).unwrap();
        if user != row.sender_id {
            r.problems.push(format!(
                "row {} from {} carries content of user {user}",
                row.id, row.sender_id
            ));
        }
        by_seq.entry((row.sender_id, seq)).or_default().push(row.id);
    }
    for ((sender, cid), v) in &by_client {
        if v.len() > 1 {
            r.duplicated += v.len() - 1;
            r.problems
                .push(format!("({sender}, {cid}) stored {} times", v.len()));
        }
    }
    for ((sender, seq), ids) in &by_seq {
        if ids.len() > 1 {
            r.duplicated += ids.len() - 1;
            r.problems.push(format!(
                "sender {sender} seq {seq} stored as {} rows: {ids:?}",
                ids.len()
            ));
        }
    }

    // Acknowledged ⇒ stored once, as acknowledged.
    let mut acked_clients: HashSet<(u64, String)> = HashSet::new();
    for l in logs {
        for s in &l.sent {
            let Some((id, _)) = s.acked else { continue };
            r.acked += 1;
            acked_clients.insert((l.user_id, s.client_id.clone()));
            if s.ack_ids.len() > 1 {
                r.problems.push(format!(
                    "{}: clientId {} acknowledged with ids {:?}",
                    l.name, s.client_id, s.ack_ids
                ));
            }
            match by_client.get(&(l.user_id, s.client_id.as_str())) {
                None => {
                    r.lost += 1;
                    r.problems.push(format!(
                        "{}: {} acknowledged as {id} but not stored",
                        l.name, s.client_id
                    ));
                }
                Some(v) => {
                    let row = v[0];
                    if row.id != id || row.content != s.content || row.chat_id != s.chat {
                        r.lost += 1;
                        r.problems.push(format!(
                            "{}: {} acknowledged as {id} but stored as {row:?}",
                            l.name, s.client_id
                        ));
                    }
                }
            }
        }
    }
    for row in &rows {
        if !acked_clients.contains(&(row.sender_id, row.client_id.clone())) {
            r.unacked_stored += 1;
            if require_all_acked {
                r.problems.push(format!(
                    "row {} ({}, {}) stored but never acknowledged",
                    row.id, row.sender_id, row.client_id
                ));
            }
        }
    }

    // Stored in send order, per sender and chat.
    let mut per_stream: HashMap<(u64, u64), Vec<(usize, u64)>> = HashMap::new();
    for row in &rows {
        let (_, seq) = parse_content(&row.content).unwrap();
        per_stream
            .entry((row.sender_id, row.chat_id))
            .or_default()
            .push((seq, row.id));
    }
    for ((sender, chat), mut v) in per_stream {
        v.sort();
        for w in v.windows(2) {
            if w[1].1 < w[0].1 {
                r.reordered += 1;
                r.problems.push(format!(
                    "sender {sender} chat {chat}: seq {} stored as {} after seq {} as {}",
                    w[1].0, w[1].1, w[0].0, w[0].1
                ));
            }
        }
    }

    // Every recipient got every message of its chats, once after de-duplication.
    for l in logs {
        let mut seen: HashMap<u64, &crate::peer::Received> = HashMap::new();
        let pushed: HashSet<u64> = l
            .received
            .iter()
            .filter(|m| !m.during_sync)
            .map(|m| m.id)
            .collect();
        // (epoch, sender, chat) → last first-seen seq.
        let mut order: HashMap<(usize, u64, u64), usize> = HashMap::new();
        for m in &l.received {
            if let Some(prev) = seen.get(&m.id) {
                if prev.content != m.content
                    || prev.sender != m.sender
                    || prev.client_id != m.client_id
                {
                    r.problems.push(format!(
                        "{}: id {} arrived as two different messages",
                        l.name, m.id
                    ));
                }
                if m.sender != l.user_id && parse_content(&m.content).is_some() && !m.during_sync {
                    r.repushed += 1;
                }
                continue;
            }
            seen.insert(m.id, m);
            let Some((_, seq)) = parse_content(&m.content) else {
                continue;
            };
            if !peers.contains(&m.sender) {
                continue;
            }
            match by_id.get(&m.id) {
                None => r.problems.push(format!(
                    "{}: received id {} that is not stored: {m:?}",
                    l.name, m.id
                )),
                Some(row) => {
                    if row.sender_id != m.sender
                        || row.client_id != m.client_id
                        || row.content != m.content
                        || row.chat_id != m.chat
                    {
                        r.problems.push(format!(
                            "{}: id {} received as {m:?} but stored as {row:?}",
                            l.name, m.id
                        ));
                    }
                }
            }
            if m.sender == l.user_id {
                continue;
            }
            if m.during_sync {
                // A sync reply can overtake the live push of a message stored a moment
                // before (the push then follows): only a push that never came counts.
                if !pushed.contains(&m.id) {
                    r.missed_push += 1;
                    if r.missed_push_detail.len() < 50 {
                        r.missed_push_detail.push(format!(
                            "{}: id {} ({}) came only in a sync reply, never pushed (connection {})",
                            l.name, m.id, m.content, m.epoch
                        ));
                    }
                }
                // A sync reply is the client's own catch-up, in id order of its own:
                // the push order is judged on pushes only.
                continue;
            }
            let key = (m.epoch, m.sender, m.chat);
            if let Some(&last) = order.get(&key) {
                if seq < last {
                    r.reordered += 1;
                    r.problems.push(format!(
                        "{}: from {} in chat {} seq {seq} first seen after seq {last} (connection {})",
                        l.name, m.sender, m.chat, m.epoch
                    ));
                }
            }
            order.insert(key, seq.max(order.get(&key).copied().unwrap_or(0)));
        }
        let mut missing: BTreeMap<u64, usize> = BTreeMap::new();
        for row in &rows {
            if row.sender_id == l.user_id {
                continue;
            }
            let is_member = members
                .get(&row.chat_id)
                .is_some_and(|m| m.contains(&l.user_id));
            if !is_member {
                if seen.contains_key(&row.id) {
                    r.problems.push(format!(
                        "{}: received id {} of chat {} it is not a member of",
                        l.name, row.id, row.chat_id
                    ));
                }
                continue;
            }
            if seen.contains_key(&row.id) {
                r.deliveries += 1;
            } else {
                r.lost += 1;
                *missing.entry(row.chat_id).or_default() += 1;
            }
        }
        for (chat, n) in missing {
            r.problems.push(format!(
                "{}: {n} stored messages of chat {chat} never received",
                l.name
            ));
        }
    }
    r
}
