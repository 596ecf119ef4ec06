//! The shape of an end-to-end encryption envelope (PROTOCOL.md). The server checks
//! shape only — version, algorithm, a 12-byte IV, a ciphertext at least as long as
//! the GCM tag, and one wrapped key for every member of the chat, the sender
//! included — and never sees plaintext.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::error_code::ErrorCode;
use crate::ids::UserId;
use crate::protocol::WireError;

pub const VERSION: u32 = 1;
pub const ALGORITHM: &str = "RSA-OAEP-256+A256GCM";
pub const IV_BYTES: usize = 12;
pub const TAG_BYTES: usize = 16;
/// A wrapped key is an RSA block: 256 bytes at 2048 bits, 1024 at 8192.
const WRAPPED_KEY_BYTES: std::ops::RangeInclusive<usize> = 256..=1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    v: u32,
    alg: String,
    iv: String,
    ciphertext: String,
    keys: HashMap<String, String>,
}

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidEnvelope, msg)
}

fn decode(field: &str, value: &str) -> Result<Vec<u8>, WireError> {
    STANDARD
        .decode(value)
        .map_err(|_| invalid(format!("e2ee.{field} is not base64")))
}

/// Checks `raw` (the `e2ee` JSON) for a chat with `members`.
pub fn check_envelope(raw: &str, members: &[UserId]) -> Result<(), WireError> {
    let env: Envelope = serde_json::from_str(raw)
        .map_err(|e| invalid(format!("e2ee is not a valid envelope: {e}")))?;
    if env.v != VERSION {
        return Err(invalid(format!("e2ee.v must be {VERSION}")));
    }
    if env.alg != ALGORITHM {
        return Err(invalid(format!("e2ee.alg must be {ALGORITHM:?}")));
    }
    if decode("iv", &env.iv)?.len() != IV_BYTES {
        return Err(invalid(format!("e2ee.iv must be {IV_BYTES} bytes")));
    }
    if decode("ciphertext", &env.ciphertext)?.len() < TAG_BYTES {
        return Err(invalid(
            "e2ee.ciphertext is shorter than the authentication tag",
        ));
    }
    for m in members {
        let key = env
            .keys
            .get(&m.to_string())
            .ok_or_else(|| invalid(format!("e2ee.keys has no key for member {m}")))?;
        if !WRAPPED_KEY_BYTES.contains(&decode("keys", key)?.len()) {
            return Err(invalid(format!("e2ee.keys[{m}] is not an RSA-wrapped key")));
        }
    }
    if env.keys.len() != members.len() {
        return Err(invalid(
            "e2ee.keys names someone who is not a member of this chat",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(n: usize) -> String {
        STANDARD.encode(vec![7u8; n])
    }

    fn env(iv: usize, ct: usize, keys: &[(u64, usize)]) -> String {
        let keys: HashMap<String, String> =
            keys.iter().map(|(u, n)| (u.to_string(), b64(*n))).collect();
        serde_json::json!({"v":1,"alg":ALGORITHM,"iv":b64(iv),"ciphertext":b64(ct),"keys":keys})
            .to_string()
    }

    #[test]
    fn accepts_a_well_formed_envelope() {
        let members = [UserId(1), UserId(2)];
        check_envelope(&env(12, 40, &[(1, 256), (2, 256)]), &members).unwrap();
    }

    #[test]
    fn refuses_each_malformation() {
        let members = [UserId(1), UserId(2)];
        for (raw, why) in [
            (env(8, 40, &[(1, 256), (2, 256)]), "short iv"),
            (
                env(12, 10, &[(1, 256), (2, 256)]),
                "ciphertext shorter than the tag",
            ),
            (env(12, 40, &[(1, 256)]), "a member's key missing"),
            (
                env(12, 40, &[(1, 256), (2, 256), (3, 256)]),
                "a stranger's key",
            ),
            (
                env(12, 40, &[(1, 256), (2, 16)]),
                "a key too short to be RSA",
            ),
            (
                r#"{"v":2,"alg":"RSA-OAEP-256+A256GCM","iv":"","ciphertext":"","keys":{}}"#.into(),
                "version",
            ),
            ("[]".into(), "not an object"),
        ] {
            let err = check_envelope(&raw, &members).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnvelope, "{why}");
        }
    }
}
