//! The background indexer: makes stored messages findable (`db::search_index`), off
//! the message path and yielding to it. One task per node indexes what this node
//! stored, in batches, and after each batch sleeps so that it is busy at most
//! `search.index_duty_percent` of the time: under a load that saturates the machine
//! search falls behind and catches up afterwards, while sending keeps its speed. A
//! batch that fails is retried; ids dropped by a full queue, and messages stored in
//! the `REPAIR_WINDOW` before this process started (another process may have died
//! before indexing them), are found again by scanning for messages without a row.

use std::time::{Duration, Instant};

use crate::db::Db;

/// Ids indexed in one transaction.
const BATCH: usize = 2_000;
/// Ids scanned per repair step.
const REPAIR_STEP: u64 = 5_000;
/// At start, messages stored this long before are checked for a missing row.
const REPAIR_WINDOW: Duration = Duration::from_secs(600);
/// Waits after a failed batch (the database is down or overloaded): doubled each
/// time up to the last.
const BACKOFF: [u64; 5] = [250, 500, 1_000, 5_000, 30_000];

/// Runs until the process ends.
pub async fn run(db: Db, duty_percent: u32) {
    let duty = duty_percent.clamp(1, 100);
    let started_ms = unix_ms();
    let mut start_repair_due = true;
    let mut failures = 0usize;
    loop {
        if start_repair_due {
            match db
                .first_message_since(started_ms.saturating_sub(REPAIR_WINDOW.as_millis() as u64))
                .await
            {
                Ok(Some(from)) => db.search_queue().note_missing_from(from),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "search index: cannot look for unindexed messages yet");
                    failures = backoff(failures).await;
                    continue;
                }
            }
            start_repair_due = false;
            failures = 0;
        }
        if let Some(from) = db.search_queue().take_missing_from() {
            match repair(&db, from, duty).await {
                Ok(()) => failures = 0,
                Err((at, e)) => {
                    tracing::warn!(error = %e, from = at, "search index: repair scan failed; retrying");
                    db.search_queue().note_missing_from(at);
                    failures = backoff(failures).await;
                }
            }
            continue;
        }
        let ids = db.search_queue().take(BATCH);
        if ids.is_empty() {
            db.search_queue().wait().await;
            continue;
        }
        let t = Instant::now();
        match db.index_messages(&ids).await {
            Ok(_) => {
                failures = 0;
                pace(t.elapsed(), duty).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, ids = ids.len(), "search index: a batch failed; retrying");
                db.search_queue().put_back(ids);
                failures = backoff(failures).await;
            }
        }
    }
}

/// Indexes the messages from `from` to the newest that have no row, a step at a time,
/// paced like batches. On failure, where to start again.
async fn repair(db: &Db, from: u64, duty: u32) -> Result<(), (u64, crate::db::DbError)> {
    let newest = db.newest_message_id().await.map_err(|e| (from, e))?.0;
    let mut lo = from;
    while lo <= newest {
        let hi = lo.saturating_add(REPAIR_STEP - 1).min(newest);
        let t = Instant::now();
        let n = db.index_missing(lo, hi).await.map_err(|e| (lo, e))?;
        if n > 0 {
            tracing::info!(from = lo, to = hi, indexed = n, "search index: repaired");
        }
        pace(t.elapsed(), duty).await;
        lo = hi + 1;
    }
    Ok(())
}

/// After work that took `busy`, rests so that work is `duty` percent of the time.
async fn pace(busy: Duration, duty: u32) {
    if duty < 100 {
        tokio::time::sleep(busy * (100 - duty) / duty).await;
    }
}

async fn backoff(failures: usize) -> usize {
    let ms = BACKOFF[failures.min(BACKOFF.len() - 1)];
    tokio::time::sleep(Duration::from_millis(ms)).await;
    failures + 1
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
