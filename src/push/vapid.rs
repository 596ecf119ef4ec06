//! The server's VAPID identity (RFC 8292): a P-256 key pair whose public half
//! browsers bind a subscription to, and the `Authorization: vapid t=<jwt>, k=<key>`
//! header each push carries (an ES256 JWT, signed with `jsonwebtoken`, naming the
//! push service's origin, an expiry under 24 h and a contact).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use p256::SecretKey;
use serde::Serialize;

/// A JWT is valid this long (RFC 8292 allows at most 24 h).
pub const JWT_LIFETIME_SECS: i64 = 12 * 3600;

/// The VAPID key pair, ready to sign.
pub struct VapidKey {
    signing: EncodingKey,
    /// The uncompressed public point, base64url without padding: `k=` and
    /// `GET /api/push/vapid-public-key`.
    public: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: i64,
    sub: &'a str,
}

impl VapidKey {
    /// From the setting: a base64url (padding optional) 32-byte P-256 scalar.
    pub fn from_base64url(text: &str) -> Result<VapidKey, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .map_err(|_| "not base64url".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!("{} bytes, expected 32", bytes.len()));
        }
        let secret =
            SecretKey::from_slice(&bytes).map_err(|_| "not a P-256 private key".to_owned())?;
        Self::from_secret(&secret)
    }

    fn from_secret(secret: &SecretKey) -> Result<VapidKey, String> {
        let der = secret
            .to_pkcs8_der()
            .map_err(|_| "the key cannot be encoded".to_owned())?;
        let public = secret.public_key().to_encoded_point(false);
        Ok(VapidKey {
            signing: EncodingKey::from_ec_der(der.as_bytes()),
            public: URL_SAFE_NO_PAD.encode(public.as_bytes()),
        })
    }

    /// The public key as browsers take it (`applicationServerKey`).
    pub fn public_base64url(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header for a push to `origin` (`https://host[:port]`).
    pub fn authorization(&self, origin: &str, subject: &str, now: i64) -> Result<String, String> {
        let claims = Claims {
            aud: origin,
            exp: now + JWT_LIFETIME_SECS,
            sub: subject,
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.signing)
            .map_err(|e| format!("signing the VAPID JWT: {e}"))?;
        Ok(format!("vapid t={jwt}, k={}", self.public))
    }
}

/// A new key pair: (private for the secrets file, public), both base64url.
pub fn generate() -> (String, String) {
    use rand::RngExt;
    loop {
        let bytes: [u8; 32] = rand::rng().random();
        // Fails only for 0 or a value ≥ the group order (about 2^-32): draw again.
        if let Ok(secret) = SecretKey::from_slice(&bytes) {
            let public = secret.public_key().to_encoded_point(false);
            return (
                URL_SAFE_NO_PAD.encode(bytes),
                URL_SAFE_NO_PAD.encode(public.as_bytes()),
            );
        }
    }
}

/// `push.subject`: a `mailto:` address or an `https:` URL (RFC 8292 §2.1).
pub fn valid_subject(s: &str) -> bool {
    if s.len() > 256 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if let Some(addr) = s.strip_prefix("mailto:") {
        return addr
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty());
    }
    reqwest::Url::parse(s).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_sign_a_verifiable_jwt() {
        let (private, public) = generate();
        let key = VapidKey::from_base64url(&private).unwrap();
        assert_eq!(key.public_base64url(), public);
        let header = key
            .authorization("https://push.example.net", "mailto:a@b.c", 1_000_000)
            .unwrap();
        let (t, k) = header
            .strip_prefix("vapid t=")
            .and_then(|h| h.split_once(", k="))
            .unwrap();
        assert_eq!(k, public);
        let point = URL_SAFE_NO_PAD.decode(k).unwrap();
        assert_eq!(point.len(), 65);
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_audience(&["https://push.example.net"]);
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(
            t,
            &jsonwebtoken::DecodingKey::from_ec_der(&point),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "mailto:a@b.c");
        assert_eq!(data.claims["exp"], 1_000_000 + JWT_LIFETIME_SECS);
    }

    #[test]
    fn bad_keys_and_subjects_are_refused() {
        assert!(VapidKey::from_base64url("abc").is_err());
        assert!(VapidKey::from_base64url(&URL_SAFE_NO_PAD.encode([0u8; 32])).is_err());
        assert!(VapidKey::from_base64url(&URL_SAFE_NO_PAD.encode([0xffu8; 32])).is_err());
        assert!(valid_subject("mailto:admin@example.org"));
        assert!(valid_subject("https://chat.example.org"));
        assert!(!valid_subject("http://chat.example.org"));
        assert!(!valid_subject("mailto:nobody"));
        assert!(!valid_subject("admin@example.org"));
    }
}
