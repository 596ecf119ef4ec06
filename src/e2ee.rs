//! The end-to-end encryption envelope of PROTOCOL.md, both ways, for Rust clients
//! (tests, scripts). The server itself never calls `encrypt` or `decrypt`: it only
//! checks an envelope's shape (`parley_actors::e2ee`).
//!
//! A message key is a fresh AES-256-GCM key; the ciphertext carries the 16-byte tag
//! and is bound by the AAD `parley/e2ee/v1|chatId|senderId|clientId`; the key is
//! wrapped for every member with RSA-OAEP (SHA-256, MGF1-SHA-256). This is what the
//! browser's WebCrypto produces, so the two interoperate.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use parley_actors::{ChatId, UserId};
use rand::RngExt;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = parley_actors::e2ee::ALGORITHM;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    pub v: u32,
    pub alg: String,
    pub iv: String,
    pub ciphertext: String,
    pub keys: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum E2eeError {
    #[error("not a usable RSA public key: {0}")]
    BadKey(String),
    #[error("RSA keys must be 2048 to 8192 bits, this one has {0}")]
    KeySize(usize),
    #[error("the envelope has no key for this reader")]
    NoKeyForReader,
    #[error("the envelope is malformed: {0}")]
    Malformed(String),
    #[error("decryption failed (wrong key, or the message was altered or moved)")]
    Decrypt,
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

/// A validated public key with its fingerprint and canonical PEM.
pub struct ParsedKey {
    pub key: PublicKey,
    pub pem: String,
    pub fingerprint: String,
    pub bits: usize,
}

/// Parses an SPKI PEM RSA key of 2048–8192 bits.
pub fn parse_public_key(pem: &str) -> Result<ParsedKey, E2eeError> {
    let key =
        PublicKey::from_public_key_pem(pem.trim()).map_err(|e| E2eeError::BadKey(e.to_string()))?;
    let bits = key.size() * 8;
    if !(2048..=8192).contains(&bits) {
        return Err(E2eeError::KeySize(bits));
    }
    let der = key
        .to_public_key_der()
        .map_err(|e| E2eeError::BadKey(e.to_string()))?;
    let pem = key
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| E2eeError::BadKey(e.to_string()))?;
    Ok(ParsedKey {
        fingerprint: hex::encode(Sha256::digest(der.as_bytes())),
        key,
        pem,
        bits,
    })
}

/// The GCM additional data that binds a ciphertext to its chat, sender and client id.
pub fn aad(chat: ChatId, sender: UserId, client_id: &str) -> Vec<u8> {
    format!("parley/e2ee/v1|{chat}|{sender}|{client_id}").into_bytes()
}

/// Encrypts `plaintext` for every `(member, key)` (include the sender).
pub fn encrypt(
    plaintext: &str,
    chat: ChatId,
    sender: UserId,
    client_id: &str,
    members: &[(UserId, &PublicKey)],
) -> Result<Envelope, E2eeError> {
    let mut rng = rand::rng();
    let raw_key: [u8; 32] = rng.random();
    let iv: [u8; 12] = rng.random();
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(raw_key));
    let aad = aad(chat, sender, client_id);
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(iv),
            Payload {
                msg: plaintext.as_bytes(),
                aad: &aad,
            },
        )
        .map_err(|e| E2eeError::Encrypt(e.to_string()))?;
    let mut keys = BTreeMap::new();
    for (user, key) in members {
        let wrapped = key
            .encrypt(&mut rng, Oaep::<Sha256>::new(), &raw_key)
            .map_err(|e| E2eeError::Encrypt(e.to_string()))?;
        keys.insert(user.to_string(), B64.encode(wrapped));
    }
    Ok(Envelope {
        v: 1,
        alg: ALGORITHM.to_string(),
        iv: B64.encode(iv),
        ciphertext: B64.encode(ciphertext),
        keys,
    })
}

/// Decrypts an envelope as `reader`, with the message's own chat, sender and client id.
pub fn decrypt(
    env: &Envelope,
    chat: ChatId,
    sender: UserId,
    client_id: &str,
    reader: UserId,
    key: &PrivateKey,
) -> Result<String, E2eeError> {
    let b64 = |field: &str, v: &str| {
        B64.decode(v)
            .map_err(|_| E2eeError::Malformed(format!("{field} is not base64")))
    };
    if env.v != 1 || env.alg != ALGORITHM {
        return Err(E2eeError::Malformed("unknown version or algorithm".into()));
    }
    let wrapped = env
        .keys
        .get(&reader.to_string())
        .ok_or(E2eeError::NoKeyForReader)?;
    let raw_key = key
        .decrypt(Oaep::<Sha256>::new(), &b64("keys", wrapped)?)
        .map_err(|_| E2eeError::Decrypt)?;
    let raw_key: [u8; 32] = raw_key
        .try_into()
        .map_err(|_| E2eeError::Malformed("the wrapped key is not 32 bytes".into()))?;
    let iv: [u8; 12] = b64("iv", &env.iv)?
        .try_into()
        .map_err(|_| E2eeError::Malformed("iv is not 12 bytes".into()))?;
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(raw_key));
    let aad = aad(chat, sender, client_id);
    let plain = cipher
        .decrypt(
            &Nonce::from(iv),
            Payload {
                msg: &b64("ciphertext", &env.ciphertext)?,
                aad: &aad,
            },
        )
        .map_err(|_| E2eeError::Decrypt)?;
    String::from_utf8(plain).map_err(|_| E2eeError::Malformed("plaintext is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair() -> (PrivateKey, PublicKey) {
        let private = PrivateKey::new(&mut rand::rng(), 2048).unwrap();
        let public = private.to_public_key();
        (private, public)
    }

    #[test]
    fn round_trips_for_every_member_and_binds_its_context() {
        let (a_priv, a_pub) = keypair();
        let (b_priv, b_pub) = keypair();
        let env = encrypt(
            "hello",
            ChatId(3),
            UserId(1),
            "c1",
            &[(UserId(1), &a_pub), (UserId(2), &b_pub)],
        )
        .unwrap();
        assert_eq!(
            decrypt(&env, ChatId(3), UserId(1), "c1", UserId(2), &b_priv).unwrap(),
            "hello"
        );
        assert_eq!(
            decrypt(&env, ChatId(3), UserId(1), "c1", UserId(1), &a_priv).unwrap(),
            "hello"
        );
        // Replayed into another chat, under another sender or client id: refused.
        assert!(decrypt(&env, ChatId(4), UserId(1), "c1", UserId(2), &b_priv).is_err());
        assert!(decrypt(&env, ChatId(3), UserId(9), "c1", UserId(2), &b_priv).is_err());
        assert!(decrypt(&env, ChatId(3), UserId(1), "c2", UserId(2), &b_priv).is_err());
        // The server's shape check accepts what we produce.
        let raw = serde_json::to_string(&env).unwrap();
        parley_actors::e2ee::check_envelope(&raw, &[UserId(1), UserId(2)]).unwrap();
    }

    #[test]
    fn parses_keys_and_refuses_small_ones() {
        let (_, public) = keypair();
        let pem = public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let parsed = parse_public_key(&pem).unwrap();
        assert_eq!(parsed.bits, 2048);
        assert_eq!(parsed.fingerprint.len(), 64);
        let small = PrivateKey::new(&mut rand::rng(), 1024)
            .unwrap()
            .to_public_key();
        let pem = small.to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        assert!(matches!(
            parse_public_key(&pem),
            Err(E2eeError::KeySize(1024))
        ));
        assert!(
            parse_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
        );
    }
}
