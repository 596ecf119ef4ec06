//! The words a message is found by. MariaDB's full-text index (InnoDB) ignores words
//! shorter than `innodb_ft_min_token_size` (3, and not settable without a server
//! restart) and the words of its stopword list, yet search must match words of 2
//! characters ("ok", "go") by prefix. So Parley tokenizes itself and stores each
//! word with a one-letter prefix in `messages.search_text`: "ok" is indexed as "wok",
//! and a query word "ok" becomes the prefix search `+wok*`. The index only ever sees
//! plain alphanumeric tokens, so no query can inject boolean-mode operators.

/// Prepended to every indexed and searched word.
const PREFIX: char = 'w';
/// Longest word indexed (InnoDB's own limit is 84 characters).
const MAX_WORD_CHARS: usize = 40;
/// Shortest query word that is searched for.
pub const MIN_QUERY_WORD_CHARS: usize = 2;

/// The words of `text`, lowercased, each truncated to `MAX_WORD_CHARS`.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.chars()
                .take(MAX_WORD_CHARS)
                .flat_map(char::to_lowercase)
                .collect()
        })
}

/// What `messages.search_text` holds for a plaintext message with `content`.
pub fn index_text(content: &str) -> String {
    let mut out = String::with_capacity(content.len() + content.len() / 4);
    for w in words(content) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push(PREFIX);
        out.push_str(&w);
    }
    out
}

/// The boolean-mode `AGAINST` expression for `query`: every word of at least
/// `MIN_QUERY_WORD_CHARS` characters, required, matched as a prefix. `None` when the
/// query has no such word.
pub fn match_expression(query: &str) -> Option<String> {
    let terms: Vec<String> = words(query)
        .filter(|w| w.chars().count() >= MIN_QUERY_WORD_CHARS)
        .map(|w| format!("+{PREFIX}{w}*"))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_prefixed_lowercased_and_split_on_anything_else() {
        assert_eq!(index_text("OK, go to Café-Bar!"), "wok wgo wto wcafé wbar");
        assert_eq!(index_text("  "), "");
        let long = "x".repeat(100);
        assert_eq!(index_text(&long).chars().count(), 1 + MAX_WORD_CHARS);
    }

    #[test]
    fn queries_become_required_prefixes_without_operators() {
        assert_eq!(
            match_expression("Caf ok a").as_deref(),
            Some("+wcaf* +wok*")
        );
        assert_eq!(match_expression("\"x\" -a +b* (c)"), None);
        assert_eq!(match_expression("-hello* @>").as_deref(), Some("+whello*"));
    }
}
