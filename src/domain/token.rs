//! One-time secrets handed to people (invites, password-reset links): 256 random
//! bits, URL-safe base64 without padding (43 characters), so they travel in a link
//! untouched. Only a SHA-256 of one is ever stored (`TokenHash`): whoever reads the
//! database, a backup or a log of its queries cannot use what they find.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Random bytes in a token: far beyond guessing, whatever the rate.
const TOKEN_BYTES: usize = 32;
/// Its length once encoded.
const TOKEN_CHARS: usize = 43;

/// A freshly made token, to be shown once (printed by the admin CLI).
pub struct SecretToken(String);

impl SecretToken {
    pub fn generate() -> SecretToken {
        use rand::RngExt;
        let bytes: [u8; TOKEN_BYTES] = rand::rng().random();
        SecretToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

/// What the database keeps of a token, and what a presented one is looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// The hash of a token someone presented, or `None` when it cannot be one of
    /// ours (wrong length or alphabet): refused without a query.
    pub fn of_presented(raw: &str) -> Option<TokenHash> {
        let shaped = raw.len() == TOKEN_CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        shaped.then(|| TokenHash::of(raw))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_distinct_and_found_by_their_hash_only() {
        let a = SecretToken::generate();
        let b = SecretToken::generate();
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.as_str().len(), TOKEN_CHARS);
        assert_eq!(TokenHash::of_presented(a.as_str()), Some(a.hash()));
        assert_ne!(a.hash(), b.hash());
        let short = &a.as_str()[1..];
        let padded = format!("{}=", &a.as_str()[1..]);
        let slashed = format!("/{}", &a.as_str()[1..]);
        for bad in ["", short, padded.as_str(), slashed.as_str()] {
            assert_eq!(TokenHash::of_presented(bad), None, "{bad:?}");
        }
    }
}
