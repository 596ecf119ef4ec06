//! The search index's rows (`message_search`, one per findable message, under the
//! FULLTEXT index that `db::search` queries) and the queue of stored messages still
//! to be indexed. A message is indexed after it is stored, off the message path, by
//! `crate::search_index`: InnoDB maintains a FULLTEXT index at every commit that
//! touches it, and doing that in the send path's INSERT cost 40% of send throughput
//! (README, "Issue 17 (everyday messaging): before and after"). Edits and deletes
//! change the row in their own transaction, so the index never shows an old text
//! after the change is acknowledged.
//!
//! Races between the indexer and a change are settled by row locks: the indexer reads
//! the messages it indexes `LOCK IN SHARE MODE` and only ever inserts (`INSERT
//! IGNORE`), a change takes the message `FOR UPDATE` and then writes or deletes its
//! row. Whichever commits second sees the first's result: an edit after indexing
//! replaces the row, an edit before it leaves a row the indexer skips, and a deleted
//! message is never read by the indexer (`deleted_at IS NULL`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use mysql_async::prelude::Queryable;
use mysql_async::{Params, TxOpts, Value};
use parley_actors::store::{Inserted, MessageKind};
use parley_actors::{ChatId, MessageId};
use tokio::sync::Notify;

use super::messages::kind_from;
use super::{Db, DbError};
use crate::domain::search_text::index_text;

/// Ids waiting at most (8 bytes each: under 1 MiB). Beyond it the newest are dropped
/// and found again by a repair scan (see `SearchQueue::push`).
const MAX_PENDING: usize = 100_000;

/// What the index holds for a message, `None` when it can never be found: encrypted
/// messages (the server has no words), call traces, deleted messages, and texts with
/// no word long enough to search for.
pub fn searchable(
    chat: ChatId,
    kind: MessageKind,
    encrypted: bool,
    content: &str,
) -> Option<String> {
    // Call traces and system messages are JSON the client renders, not words.
    if encrypted || matches!(kind, MessageKind::Call | MessageKind::System) || content.is_empty() {
        return None;
    }
    Some(index_text(chat, content)).filter(|t| !t.is_empty())
}

/// Stored messages not yet indexed, in the order they were stored on this node.
#[derive(Default)]
pub struct SearchQueue {
    pending: Mutex<VecDeque<u64>>,
    ready: Notify,
    /// The lowest id dropped because the queue was full (`u64::MAX`: none).
    dropped_from: AtomicU64,
    dropped_total: AtomicU64,
}

impl SearchQueue {
    pub fn new() -> SearchQueue {
        SearchQueue {
            dropped_from: AtomicU64::new(u64::MAX),
            ..SearchQueue::default()
        }
    }

    /// Queues the findable messages among a store batch's outcomes (a message sent
    /// again under its client id was queued the first time).
    pub fn push_stored(&self, outcomes: &[Inserted]) {
        let ids = outcomes.iter().filter_map(|o| match o {
            Inserted::Fresh(m)
                if !m.encrypted && !matches!(m.kind, MessageKind::Call | MessageKind::System) =>
            {
                (!m.content.is_empty()).then_some(m.id.0)
            }
            _ => None,
        });
        self.push(ids);
    }

    /// Queues `ids`. When the queue is full the ids are dropped and the lowest is
    /// remembered: the indexer then scans the messages from there for rows missing
    /// from the index, so an overload delays search, never loses it.
    pub fn push(&self, ids: impl Iterator<Item = u64>) {
        let mut lowest_dropped = u64::MAX;
        let mut added = false;
        {
            let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                if q.len() < MAX_PENDING {
                    q.push_back(id);
                    added = true;
                } else {
                    lowest_dropped = lowest_dropped.min(id);
                    self.dropped_total.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if lowest_dropped != u64::MAX {
            self.note_missing_from(lowest_dropped);
        }
        if added {
            self.ready.notify_one();
        }
    }

    /// Asks for a repair scan of the messages from `id` on.
    pub fn note_missing_from(&self, id: u64) {
        self.dropped_from.fetch_min(id, Ordering::Relaxed);
        self.ready.notify_one();
    }

    /// The id a repair scan should start from, if one is due (and no longer due).
    pub fn take_missing_from(&self) -> Option<u64> {
        let from = self.dropped_from.swap(u64::MAX, Ordering::Relaxed);
        (from != u64::MAX).then_some(from)
    }

    /// Up to `max` queued ids, oldest first.
    pub fn take(&self, max: usize) -> Vec<u64> {
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// Puts back ids whose indexing failed, in front, to be tried again.
    pub fn put_back(&self, ids: Vec<u64>) {
        let overflow = {
            let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let room = MAX_PENDING.saturating_sub(q.len());
            let (keep, over) = ids.split_at(ids.len().min(room));
            for id in keep.iter().rev() {
                q.push_front(*id);
            }
            over.iter().copied().min()
        };
        if let Some(id) = overflow {
            self.note_missing_from(id);
        }
    }

    /// Waits until something was queued or a repair asked for.
    pub async fn wait(&self) {
        self.ready.notified().await;
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }
}

impl Db {
    /// Indexes the messages `ids` that can be found and have no row yet; returns how
    /// many rows it wrote.
    pub async fn index_messages(&self, ids: &[u64]) -> Result<usize, DbError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (list, params) = super::id_list(ids.iter().copied());
        self.index_where(&format!("m.id IN ({list})"), Params::Positional(params))
            .await
    }

    /// Indexes every findable message with an id in `from..=to` that has no row: the
    /// repair of what an overflow, a failure or a crash left out.
    pub async fn index_missing(&self, from: u64, to: u64) -> Result<usize, DbError> {
        self.index_where(
            "m.id BETWEEN ? AND ? AND NOT EXISTS \
             (SELECT 1 FROM message_search s WHERE s.message_id = m.id)",
            Params::Positional(vec![from.into(), to.into()]),
        )
        .await
    }

    async fn index_where(&self, filter: &str, params: Params) -> Result<usize, DbError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        // Shared locks: a concurrent edit or delete of one of these waits for this
        // transaction, or this one for it (module comment).
        let rows: Vec<(u64, u64, String, bool, String)> = tx
            .exec(
                format!(
                    "SELECT m.id, m.chat_id, m.kind, m.encrypted, m.content FROM messages m \
                     WHERE {filter} AND m.deleted_at IS NULL AND m.encrypted = 0 \
                     AND m.kind NOT IN ('call', 'system') AND m.content <> '' LOCK IN SHARE MODE"
                ),
                params,
            )
            .await?;
        let docs: Vec<(u64, String)> = rows
            .into_iter()
            .filter_map(|(id, chat, kind, encrypted, content)| {
                searchable(ChatId(chat), kind_from(&kind), encrypted, &content).map(|t| (id, t))
            })
            .collect();
        let mut written = 0;
        for part in docs.chunks(1_000) {
            let mut values: Vec<Value> = Vec::with_capacity(part.len() * 2);
            for (id, text) in part {
                values.push((*id).into());
                values.push(text.as_str().into());
            }
            tx.exec_drop(
                format!(
                    "INSERT IGNORE INTO message_search (message_id, search_text) VALUES {}",
                    vec!["(?,?)"; part.len()].join(",")
                ),
                Params::Positional(values),
            )
            .await?;
            written += usize::try_from(tx.affected_rows()).unwrap_or(0);
        }
        tx.commit().await?;
        Ok(written)
    }

    /// The first message stored at or after `since_unix_ms` (ids grow with time), by
    /// bisecting the ids: about 30 primary-key reads, no scan.
    pub async fn first_message_since(&self, since_unix_ms: u64) -> Result<Option<u64>, DbError> {
        let mut conn = self.conn().await?;
        let bounds: Option<(Option<u64>, Option<u64>)> = conn
            .query_first("SELECT MIN(id), MAX(id) FROM messages")
            .await?;
        let Some((Some(mut lo), Some(mut hi))) = bounds else {
            return Ok(None);
        };
        let since = chrono::DateTime::from_timestamp_millis(
            i64::try_from(since_unix_ms).unwrap_or(i64::MAX),
        )
        .map(|t| t.naive_utc())
        .ok_or_else(|| DbError::Mapping("a time out of range".into()))?;
        // P(x): the first message with an id >= x is new enough. P grows with x;
        // the answer is the least x with P(x), and P(MAX(id)) must hold.
        let mut newer = async |x: u64| -> Result<bool, DbError> {
            let created: Option<chrono::NaiveDateTime> = conn
                .exec_first(
                    "SELECT created_at FROM messages WHERE id >= ? ORDER BY id LIMIT 1",
                    (x,),
                )
                .await?;
            Ok(created.is_some_and(|c| c >= since))
        };
        if !newer(hi).await? {
            return Ok(None);
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if newer(mid).await? {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(Some(lo))
    }

    pub fn search_queue(&self) -> &SearchQueue {
        &self.search_queue
    }
}

/// Within a change's transaction: the message's row as its new `text` has it (none
/// when it can no longer be found).
pub(crate) async fn set_row(
    tx: &mut mysql_async::Transaction<'_>,
    id: MessageId,
    text: Option<String>,
) -> Result<(), DbError> {
    match text {
        Some(text) => {
            tx.exec_drop(
                "INSERT INTO message_search (message_id, search_text) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE search_text = VALUES(search_text)",
                (id.0, text),
            )
            .await?
        }
        None => {
            tx.exec_drop("DELETE FROM message_search WHERE message_id = ?", (id.0,))
                .await?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_asks_for_a_repair_from_the_lowest_dropped_id() {
        let q = SearchQueue::new();
        q.push(0..MAX_PENDING as u64);
        assert_eq!(q.take_missing_from(), None);
        q.push([900_000_000, 700_000_000].into_iter());
        assert_eq!(q.dropped_total(), 2);
        assert_eq!(q.take_missing_from(), Some(700_000_000));
        assert_eq!(q.take_missing_from(), None);
        assert_eq!(q.take(3), vec![0, 1, 2]);
        q.put_back(vec![0, 1, 2]);
        assert_eq!(q.take(2), vec![0, 1]);
        assert_eq!(q.pending(), MAX_PENDING - 2);
    }

    #[test]
    fn only_plaintext_words_are_searchable() {
        let chat = ChatId(7);
        assert_eq!(
            searchable(chat, MessageKind::Text, false, "Hello there"),
            Some("c7whello c7wthere".into())
        );
        assert_eq!(searchable(chat, MessageKind::Text, true, "{}"), None);
        assert_eq!(searchable(chat, MessageKind::Call, false, "missed"), None);
        assert_eq!(searchable(chat, MessageKind::Text, false, "a ! ?"), None);
        assert_eq!(searchable(chat, MessageKind::Audio, false, ""), None);
    }
}
