//! Full-text search over the messages of a user's chats. The words are matched by
//! InnoDB's FULLTEXT index `ft_message_search` on `message_search.search_text` (a row
//! per findable message, written off the message path: `db::search_index`), whose
//! tokens name their chat (what is indexed and how a query becomes an `AGAINST`
//! expression: `domain::search_text`). Why this index, and what it costs, is measured
//! by `scripts/search-bench.sh` (README, "Search: MariaDB full-text index, measured").
//!
//! The plan MariaDB picks (EXPLAIN): `s` by `fulltext` (ft_message_search), which
//! hands over only the messages of the chats named in the expression that hold every
//! word, then `m` by its primary key, then `cm` by `eq_ref` on its primary key (chat, user) — a membership check of
//! one key lookup each, kept although the expression already names only the user's
//! chats — and a filesort of the hits. Its cost grows with the postings of the searched
//! chats, never with the rest of the server.

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Row, Value};
use parley_actors::store::Message;
use parley_actors::{ChatId, MessageId, UserId};

use super::messages::{message_from_row, MESSAGE_COLUMNS, MESSAGE_JOINS};
use super::{Db, DbError};
use crate::domain::search_text::QueryWords;

/// Most prefix terms (chats × words) in one `AGAINST` expression: a user in more chats
/// is searched a slice of chats at a time (measured: 500 terms of a rare word cost
/// 25 ms on top of the postings read, 2,000 terms 50 ms).
const TERMS_PER_QUERY: usize = 2_000;

/// A search may run this long (MariaDB's `max_statement_time`, seconds) before the
/// server stops it: a search over very many postings (a user in many busy chats, a
/// two-letter prefix) must not hold a connection and a core for long. Measured: the
/// slowest case of `scripts/search-bench.sh`, a two-letter prefix in a quarter of the
/// messages of 50 chats, takes 1–3.3 s on two loaded cores.
const SEARCH_MAX_SECS: f64 = 5.0;

/// How MariaDB reports a search stopped by `max_statement_time`: "Query execution was
/// interrupted (max_statement_time exceeded)" when the server notices between rows,
/// InnoDB's `HA_ERR_ABORTED_BY_USER` when the full-text lookup itself is stopped (what
/// a prepared statement gets).
const STATEMENT_TIMEOUT: [u16; 2] = [1969, 188];

/// One page of search hits.
#[derive(Debug)]
pub enum SearchPage {
    /// Hits, newest first, and whether there are older ones.
    Found { messages: Vec<Message>, more: bool },
    /// The words are in so many messages that the search ran out of time.
    TooBroad,
}

impl Db {
    /// The messages of `user`'s chats (only of `chat`, when given) that hold every
    /// word of `words` as the start of one of theirs, with id < `before`, newest
    /// first. Only plaintext messages that are not deleted can match: only they have
    /// a row in `message_search`, and the query says so again, so a row written
    /// wrongly still never leaks an envelope or a deleted text.
    pub async fn search_messages(
        &self,
        user: UserId,
        chat: Option<ChatId>,
        words: &QueryWords,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<SearchPage, DbError> {
        let chats = match chat {
            Some(c) => vec![c],
            None => self.chat_ids_of(user).await?,
        };
        let per_query = (TERMS_PER_QUERY / words.len().max(1)).max(1);
        let mut hits: Vec<Row> = Vec::new();
        for slice in chats.chunks(per_query) {
            // Each slice's newest `limit + 1` below `before`: together they hold the
            // newest `limit + 1` of all.
            match self
                .search_slice(user, slice, words, before, limit + 1)
                .await?
            {
                Some(rows) => hits.extend(rows),
                None => return Ok(SearchPage::TooBroad),
            }
        }
        let mut msgs = hits
            .into_iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        msgs.sort_unstable_by_key(|m| std::cmp::Reverse(m.id));
        let more = msgs.len() > limit as usize;
        msgs.truncate(limit as usize);
        Ok(SearchPage::Found {
            messages: self.with_status(msgs).await?,
            more,
        })
    }

    /// The chats `user` is a member of.
    async fn chat_ids_of(&self, user: UserId) -> Result<Vec<ChatId>, DbError> {
        let mut conn = self.conn().await?;
        let ids: Vec<u64> = conn
            .exec(
                "SELECT chat_id FROM chat_members WHERE user_id = ? ORDER BY chat_id",
                (user.0,),
            )
            .await?;
        Ok(ids.into_iter().map(ChatId).collect())
    }

    /// One search over `chats` (all the user's or one), at most `limit` rows; `None`
    /// when it ran out of time.
    async fn search_slice(
        &self,
        user: UserId,
        chats: &[ChatId],
        words: &QueryWords,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Option<Vec<Row>>, DbError> {
        let sql = format!(
            "SET STATEMENT max_statement_time = {SEARCH_MAX_SECS} FOR \
             SELECT {MESSAGE_COLUMNS} FROM message_search s \
             JOIN messages m ON m.id = s.message_id \
             JOIN chat_members cm ON cm.chat_id = m.chat_id AND cm.user_id = ? {MESSAGE_JOINS} \
             WHERE MATCH(s.search_text) AGAINST(? IN BOOLEAN MODE) \
             AND s.message_id < ? AND m.kind NOT IN ('call', 'system') AND m.encrypted = 0 AND m.deleted_at IS NULL \
             ORDER BY s.message_id DESC LIMIT ?"
        );
        let params: Vec<Value> = vec![
            user.0.into(),
            words.against(chats).into(),
            before.map_or(u64::MAX, |b| b.0).into(),
            limit.into(),
        ];
        let mut conn = self.conn().await?;
        match conn.exec(sql, Params::Positional(params)).await {
            Ok(rows) => Ok(Some(rows)),
            Err(mysql_async::Error::Server(e)) if STATEMENT_TIMEOUT.contains(&e.code) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
