//! Correctness bookkeeping: every message acknowledged once, received once per
//! recipient, in per-sender order. Each connection task owns its own counters (no
//! locks on the hot path); they are merged at the end of a run.

use std::collections::HashMap;

/// What one sender saw of its own messages: one slot per sequence number.
#[derive(Debug, Default, Clone)]
pub struct AckBook {
    /// acks[seq] = how many acks arrived for that message.
    acks: Vec<u8>,
    /// Messages sent (sequence numbers 0..sent).
    pub sent: u64,
    /// `error` replies to a send.
    pub errors: u64,
    /// Sequence numbers refused with an `error` (not stored, so not expected anywhere).
    refused: std::collections::HashSet<u64>,
    /// Acks for a sequence number never sent.
    pub unknown: u64,
}

impl AckBook {
    pub fn on_send(&mut self) -> u64 {
        let seq = self.sent;
        self.sent += 1;
        self.acks.push(0);
        seq
    }

    pub fn on_ack(&mut self, seq: u64) {
        match self.acks.get_mut(seq as usize) {
            Some(n) => *n = n.saturating_add(1),
            None => self.unknown += 1,
        }
    }

    pub fn on_error(&mut self, seq: u64) {
        self.errors += 1;
        self.refused.insert(seq);
    }

    pub fn acked(&self) -> u64 {
        self.acks.iter().filter(|&&n| n > 0).count() as u64
    }

    /// Sent, and answered neither with an ack nor with an error.
    pub fn outstanding(&self) -> u64 {
        self.acks
            .iter()
            .enumerate()
            .filter(|&(i, &n)| n == 0 && !self.refused.contains(&(i as u64)))
            .count() as u64
    }

    /// Whether message `seq` was acknowledged (stored); only those must be delivered.
    pub fn is_acked(&self, seq: u64) -> bool {
        self.acks.get(seq as usize).is_some_and(|&n| n > 0)
    }

    pub fn duplicates(&self) -> u64 {
        self.acks.iter().map(|&n| n.saturating_sub(1) as u64).sum()
    }
}

/// One (recipient, sender) stream as the recipient saw it.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    counts: Vec<u8>,
    max_seen: Option<u64>,
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl Stream {
    pub fn on_receive(&mut self, seq: u64) {
        let i = seq as usize;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].saturating_add(1);
        if self.counts[i] > 1 {
            self.duplicates += 1;
            return;
        }
        self.received += 1;
        match self.max_seen {
            Some(m) if seq < m => self.reordered += 1,
            _ => self.max_seen = Some(seq),
        }
    }

    /// Acknowledged messages that never arrived.
    pub fn lost(&self, book: &AckBook) -> u64 {
        (0..book.sent)
            .filter(|&i| book.is_acked(i) && self.counts.get(i as usize).copied().unwrap_or(0) == 0)
            .count() as u64
    }

    /// Arrivals of messages the sender never had acknowledged (never sent, or refused).
    pub fn unexpected(&self, book: &AckBook) -> u64 {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(i, &n)| n > 0 && !book.is_acked(i as u64))
            .count() as u64
    }
}

/// All streams one recipient expects, keyed by the sender's user id.
#[derive(Debug, Default, Clone)]
pub struct Inbox {
    pub streams: HashMap<u64, Stream>,
    /// Messages from senders not expected at all.
    pub strangers: u64,
}

impl Inbox {
    pub fn expect(&mut self, sender: u64) {
        self.streams.entry(sender).or_default();
    }

    pub fn on_receive(&mut self, sender: u64, seq: u64) -> bool {
        match self.streams.get_mut(&sender) {
            Some(s) => {
                s.on_receive(seq);
                true
            }
            None => {
                self.strangers += 1;
                false
            }
        }
    }
}

/// The verdict over a whole run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub sent: u64,
    pub acked: u64,
    pub ack_lost: u64,
    pub ack_duplicates: u64,
    pub ack_errors: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub unexpected: u64,
}

impl Verdict {
    /// Merges sender books (by sender user id) and recipient inboxes.
    pub fn compute(books: &HashMap<u64, AckBook>, inboxes: &[Inbox]) -> Verdict {
        let mut v = Verdict::default();
        for b in books.values() {
            v.sent += b.sent;
            v.acked += b.acked();
            v.ack_lost += b.outstanding();
            v.ack_duplicates += b.duplicates();
            v.ack_errors += b.errors;
            v.unexpected += b.unknown;
        }
        for inbox in inboxes {
            v.unexpected += inbox.strangers;
            for (sender, s) in &inbox.streams {
                let empty = AckBook::default();
                let book = books.get(sender).unwrap_or(&empty);
                v.expected_deliveries += book.acked();
                v.delivered += s.received;
                v.lost += s.lost(book);
                v.duplicates += s.duplicates;
                v.reordered += s.reordered;
                v.unexpected += s.unexpected(book);
            }
        }
        v
    }

    /// Human-readable problems; empty when the run was clean.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut add = |n: u64, what: &str| {
            if n > 0 {
                p.push(format!("{n} {what}"));
            }
        };
        add(self.ack_lost, "messages never acknowledged");
        add(self.ack_duplicates, "duplicate acks");
        add(self.ack_errors, "sends answered with an error");
        add(self.lost, "deliveries lost");
        add(self.duplicates, "duplicate deliveries");
        add(self.reordered, "deliveries out of per-sender order");
        add(self.unexpected, "unexpected messages");
        p
    }
}

/// Parses the bench's message content: "<seq> <scheduled ns> <padding>".
pub fn parse_content(content: &str) -> Option<(u64, u64)> {
    let mut it = content.split(' ');
    let seq = it.next()?.parse().ok()?;
    let ns = it.next()?.parse().ok()?;
    Some((seq, ns))
}

pub fn make_content(seq: u64, ns: u64, pad: usize) -> String {
    let mut s = format!("{seq} {ns} ");
    s.extend(std::iter::repeat_n('x', pad));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sent: u64, acks: &[u64], received: &[u64]) -> Verdict {
        let mut book = AckBook::default();
        for _ in 0..sent {
            book.on_send();
        }
        for &a in acks {
            book.on_ack(a);
        }
        let mut inbox = Inbox::default();
        inbox.expect(7);
        for &r in received {
            inbox.on_receive(7, r);
        }
        let books = HashMap::from([(7u64, book)]);
        Verdict::compute(&books, &[inbox])
    }

    #[test]
    fn a_clean_run_has_no_problems() {
        let v = run(4, &[0, 1, 2, 3], &[0, 1, 2, 3]);
        assert!(v.problems().is_empty(), "{v:?}");
        assert_eq!((v.sent, v.acked, v.delivered), (4, 4, 4));
        assert_eq!(v.expected_deliveries, 4);
    }

    #[test]
    fn a_lost_delivery_is_detected() {
        let v = run(4, &[0, 1, 2, 3], &[0, 1, 3]);
        assert_eq!(v.lost, 1);
        assert_eq!(v.reordered, 0);
        assert!(!v.problems().is_empty());
    }

    #[test]
    fn a_lost_last_delivery_is_detected() {
        let v = run(4, &[0, 1, 2, 3], &[0, 1, 2]);
        assert_eq!(v.lost, 1);
    }

    #[test]
    fn a_lost_ack_is_detected() {
        let v = run(3, &[0, 2], &[0, 1, 2]);
        assert_eq!(v.ack_lost, 1);
        assert!(!v.problems().is_empty());
    }

    #[test]
    fn a_duplicate_delivery_is_detected() {
        let v = run(3, &[0, 1, 2], &[0, 1, 1, 2]);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.lost, 0);
        assert_eq!(v.reordered, 0);
        assert!(!v.problems().is_empty());
    }

    #[test]
    fn a_duplicate_ack_is_detected() {
        let v = run(2, &[0, 1, 1], &[0, 1]);
        assert_eq!(v.ack_duplicates, 1);
        assert!(!v.problems().is_empty());
    }

    #[test]
    fn a_reordered_delivery_is_detected() {
        let v = run(4, &[0, 1, 2, 3], &[0, 2, 1, 3]);
        assert_eq!(v.reordered, 1);
        assert_eq!(v.lost, 0);
        assert_eq!(v.duplicates, 0);
        assert!(!v.problems().is_empty());
    }

    #[test]
    fn a_refused_send_is_not_expected_but_its_delivery_is_flagged() {
        let mut book = AckBook::default();
        for _ in 0..3 {
            book.on_send();
        }
        book.on_ack(0);
        book.on_error(1);
        book.on_ack(2);
        let mut inbox = Inbox::default();
        inbox.expect(7);
        inbox.on_receive(7, 0);
        inbox.on_receive(7, 2);
        let books = HashMap::from([(7u64, book.clone())]);
        let v = Verdict::compute(&books, &[inbox.clone()]);
        assert_eq!((v.lost, v.unexpected, v.expected_deliveries), (0, 0, 2));
        assert_eq!(
            v.problems(),
            vec!["1 sends answered with an error".to_string()]
        );
        inbox.on_receive(7, 1);
        let v = Verdict::compute(&books, &[inbox]);
        assert_eq!(v.unexpected, 1);
    }

    #[test]
    fn a_message_nobody_sent_is_detected() {
        let v = run(2, &[0, 1], &[0, 1, 5]);
        assert_eq!(v.unexpected, 1);
        let mut inbox = Inbox::default();
        assert!(!inbox.on_receive(99, 0));
        assert_eq!(inbox.strangers, 1);
    }

    #[test]
    fn content_round_trips() {
        let c = make_content(42, 123_456_789, 10);
        assert_eq!(parse_content(&c), Some((42, 123_456_789)));
        assert_eq!(parse_content("hello"), None);
    }
}
