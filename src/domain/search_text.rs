//! The words a message is found by. MariaDB's full-text index (InnoDB) ignores words
//! shorter than `innodb_ft_min_token_size` (3, and not settable without a server
//! restart) and the words of its stopword list, yet search must match words of 2
//! characters ("ok", "go") by prefix. So Parley tokenizes itself and stores each
//! word in `message_search.search_text` behind a prefix naming the message's chat: "ok" in
//! chat 7 is indexed as `c7wok`, and a query word "ok" becomes the prefix search
//! `+c7wok*` for each chat searched. The index only ever sees plain alphanumeric
//! tokens, so no query can inject boolean-mode operators.
//!
//! Why the chat is in the token: InnoDB reads every posting of a term before anything
//! else filters them, so with bare words a search costs as much as the word is common
//! on the whole server — 0.5 s for a word in a quarter of 200,000 messages, searched
//! in one chat or in all. With the chat in the token it reads only the postings of the
//! chats searched: 20 ms for that word in one chat, 50 ms in 3 chats, and it stays so
//! however large the rest of the server grows (numbers: README, "Search: MariaDB
//! full-text index, measured"; `scripts/search-bench.sh`).
//!
//! Text is NFKC-normalised first, so a word typed with a decomposed accent (`e` +
//! U+0301, as some keyboards send it) or in a compatibility form (`ﬁ`, full-width
//! letters) is the same word; case and accents are left to the column's collation
//! (`utf8mb4_unicode_ci`), which the index compares with: `cafe` finds `Café`.

use parley_actors::ChatId;

/// Between the chat id and the word: a chat id never ends in it, so `c7wok*` cannot
/// reach into chat 71.
const SEPARATOR: char = 'w';
/// Longest word indexed (InnoDB's own limit is 84 characters, the prefix included).
const MAX_WORD_CHARS: usize = 40;
/// Shortest query word that is searched for (shorter words are not indexed either).
pub const MIN_QUERY_WORD_CHARS: usize = 2;

/// The words of `text` (NFKC), lowercased, each truncated to `MAX_WORD_CHARS`.
fn words(text: &str) -> Vec<String> {
    let text = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(text);
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.chars()
                .take(MAX_WORD_CHARS)
                .flat_map(char::to_lowercase)
                .collect()
        })
        .collect()
}

/// What `message_search.search_text` holds for a plaintext message of `chat` with
/// `content`: its words of `MIN_QUERY_WORD_CHARS` or more (no query looks for a
/// shorter one), each behind the chat's prefix.
pub fn index_text(chat: ChatId, content: &str) -> String {
    let prefix = format!("c{}{SEPARATOR}", chat.0);
    let mut out = String::with_capacity(content.len() * 2);
    for w in words(content) {
        if w.chars().count() < MIN_QUERY_WORD_CHARS {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&prefix);
        out.push_str(&w);
    }
    out
}

/// The words a search looks for, in the order they are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryWords(Vec<String>);

impl QueryWords {
    /// The words of `query` of at least `MIN_QUERY_WORD_CHARS` characters; `None` when
    /// it has none.
    ///
    /// A word that starts another word of the query is dropped (`ca cafe`: a message
    /// with a word starting `cafe` has one starting `ca`), and the longest words come
    /// first: InnoDB looks the terms up in order and narrows the hits as it goes, so a
    /// short, common prefix costs least after a long, rarer word (measured: a rare word
    /// before a common one is about three times as fast as after it).
    pub fn parse(query: &str) -> Option<QueryWords> {
        let mut terms: Vec<String> = words(query)
            .into_iter()
            .filter(|w| w.chars().count() >= MIN_QUERY_WORD_CHARS)
            .collect();
        // Longest first (stable: equal lengths keep the query's order), then without
        // repeats and without words that start a word kept before them.
        terms.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
        let mut kept: Vec<String> = Vec::with_capacity(terms.len());
        for t in terms {
            if !kept.iter().any(|k| k.starts_with(t.as_str())) {
                kept.push(t);
            }
        }
        (!kept.is_empty()).then_some(QueryWords(kept))
    }

    /// How many words are looked up.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The boolean-mode `AGAINST` expression that finds messages of `chats` holding
    /// every word as the start of one of theirs: one group of required words per chat,
    /// any group matching, `(+c1wok* +c1wgo*) (+c2wok* +c2wgo*)`. Grouped by chat
    /// rather than by word (`+(c1wok* c2wok*) +(…)`) because InnoDB intersects the
    /// required terms of a group as it reads them: measured, a rare and a common word
    /// in 50 chats take 25 ms this way and 900 ms the other. Empty `chats`: an empty
    /// expression (never sent: nothing to search).
    pub fn against(&self, chats: &[ChatId]) -> String {
        let mut out = String::new();
        for c in chats {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('(');
            for (i, w) in self.0.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&format!("+c{}{SEPARATOR}{w}*", c.0));
            }
            out.push(')');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn against(query: &str, chats: &[u64]) -> Option<String> {
        let chats: Vec<ChatId> = chats.iter().copied().map(ChatId).collect();
        QueryWords::parse(query).map(|w| w.against(&chats))
    }

    #[test]
    fn words_are_prefixed_lowercased_and_split_on_anything_else() {
        assert_eq!(
            index_text(ChatId(7), "OK, go to Café-Bar!"),
            "c7wok c7wgo c7wto c7wcafé c7wbar"
        );
        assert_eq!(index_text(ChatId(7), "  "), "");
        assert_eq!(
            index_text(ChatId(12), "a b cd I"),
            "c12wcd",
            "one-letter words are never searched for"
        );
        let long = "x".repeat(100);
        assert_eq!(
            index_text(ChatId(7), &long).chars().count(),
            3 + MAX_WORD_CHARS
        );
    }

    #[test]
    fn queries_become_required_prefixes_without_operators() {
        assert_eq!(
            against("Caf ok a", &[7]).as_deref(),
            Some("(+c7wcaf* +c7wok*)")
        );
        assert_eq!(against("\"x\" -a +b* (c)", &[7]), None);
        assert_eq!(against("-hello* @>", &[7]).as_deref(), Some("(+c7whello*)"));
    }

    #[test]
    fn each_word_is_looked_for_in_every_chat_searched() {
        assert_eq!(
            against("go ok", &[1, 71]).as_deref(),
            Some("(+c1wgo* +c1wok*) (+c71wgo* +c71wok*)")
        );
        assert_eq!(against("go", &[]).as_deref(), Some(""));
    }

    #[test]
    fn longer_words_come_first_and_words_that_start_another_are_dropped() {
        assert_eq!(
            against("ok zebrafish ca cafe OK", &[7]).as_deref(),
            Some("(+c7wzebrafish* +c7wcafe* +c7wok*)")
        );
        assert_eq!(QueryWords::parse("cafe café").map(|w| w.len()), Some(2));
    }

    #[test]
    fn decomposed_accents_and_compatibility_forms_are_one_word() {
        // "nai\u{308}ve" is "naïve" with a combining diaeresis; "\u{fb01}" is the "fi"
        // ligature; full-width letters are letters.
        assert_eq!(
            index_text(ChatId(7), "nai\u{308}ve \u{fb01}ne ＡＢ"),
            "c7wnaïve c7wfine c7wab"
        );
        assert_eq!(
            against("nai\u{308}ve", &[7]).as_deref(),
            Some("(+c7wnaïve*)")
        );
    }
}
