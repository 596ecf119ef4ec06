//! HS256 tokens with `sub` (the user id, as a string), `sid` (the sign-in session,
//! `auth_sessions.id`), `iat` and `exp`. Verification pins the algorithm, so
//! `alg: none` or an RS256 confusion token is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parley_actors::{AuthSessionId, UserId};
use serde::{Deserialize, Serialize};

/// What a token says, as it is signed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub sid: u64,
    pub iat: u64,
    pub exp: u64,
}

/// What a token is read as: `sid` may be missing in a token issued before sessions
/// existed, which must be told apart from a forged one (it gets `session_revoked`,
/// so its owner signs in again, not `invalid_token`).
#[derive(Deserialize)]
struct Read {
    sub: String,
    sid: Option<u64>,
}

/// The holder of a verified token: a user, signed in as a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bearer {
    pub user: UserId,
    pub sid: AuthSessionId,
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    /// Signed by us, but before sign-ins were sessions: no session to check it against.
    #[error("token without a session")]
    NoSession,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// A token for `user`, signed in as session `sid`.
    pub fn issue(
        &self,
        user: UserId,
        sid: AuthSessionId,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = unix_now();
        let claims = Claims {
            sub: user.to_string(),
            sid: sid.0,
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The signature, algorithm and lifetime checked: who holds the token. Whether
    /// its session is still live is `AuthSessions`' question.
    pub fn verify(&self, token: &str) -> Result<Bearer, TokenError> {
        let data = decode::<Read>(token, &self.decoding, &self.validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        let user = data
            .claims
            .sub
            .parse::<u64>()
            .map(UserId)
            .map_err(|_| TokenError::Invalid)?;
        let sid = data.claims.sid.ok_or(TokenError::NoSession)?;
        Ok(Bearer {
            user,
            sid: AuthSessionId(sid),
        })
    }

    /// Signs arbitrary claims with this secret (tests and the bench mint tokens).
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trips_and_refuses_tampering() {
        let keys = JwtKeys::new(SECRET, Duration::from_secs(60));
        let t = keys.issue(UserId(7), AuthSessionId(3)).unwrap();
        assert_eq!(
            keys.verify(&t).unwrap(),
            Bearer {
                user: UserId(7),
                sid: AuthSessionId(3)
            }
        );
        let other = JwtKeys::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        assert!(other.verify(&t).is_err(), "foreign secret accepted");
        assert!(keys.verify("not.a.token").is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = JwtKeys::new(SECRET, Duration::from_secs(60));
        let now = unix_now();
        let t = keys
            .sign_claims(&Claims {
                sub: "7".into(),
                sid: 1,
                iat: now - 3600,
                exp: now - 600,
            })
            .unwrap();
        assert!(matches!(keys.verify(&t), Err(TokenError::Expired)));
    }

    #[test]
    fn a_token_from_before_sessions_is_told_apart_from_a_forged_one() {
        let keys = JwtKeys::new(SECRET, Duration::from_secs(60));
        let now = unix_now();
        let old = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "7", "iat": now, "exp": now + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(keys.verify(&old), Err(TokenError::NoSession)));
        let other = JwtKeys::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        let forged = other.issue(UserId(7), AuthSessionId(1)).unwrap();
        assert!(matches!(keys.verify(&forged), Err(TokenError::Invalid)));
    }
}
