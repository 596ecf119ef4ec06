//! The shape of an end-to-end encryption envelope (PROTOCOL.md). The server checks
//! shape only — version, algorithm, a 12-byte IV, a ciphertext at least as long as
//! the GCM tag, and one wrapped key for every member of the chat, the sender
//! included — and never sees plaintext.
//!
//! Every message carries one wrapped key per member, so its frame grows with the
//! group: [`max_members`] is the largest group whose envelope still fits one
//! inbound frame (`limits.ws_frame_bytes`), and a bigger group is refused
//! encryption with its own code (`too_many_members_for_encryption`) rather than a
//! frame that is too large.

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

/// Base64 of a key wrapped with RSA-2048 (the web client's keys): 256 bytes.
const RSA2048_WRAPPED_B64: usize = 4 * 256usize.div_ceil(3);
/// One entry of `keys` at its longest: `"<20-digit user id>":"<wrapped key>",`.
const KEY_ENTRY_BYTES: usize = 1 + 20 + 3 + RSA2048_WRAPPED_B64 + 2;
/// The plaintext a frame keeps room for: the longest text message in ASCII
/// (`room::MAX_TEXT_CHARS` bytes, a room test keeps them equal), which is also room
/// for an attachment's name, key and thumbnail.
pub(crate) const PLAINTEXT_RESERVE_BYTES: usize = 10_000;
/// That plaintext's ciphertext with its GCM tag, in base64.
const CIPHERTEXT_B64: usize = 4 * (PLAINTEXT_RESERVE_BYTES + TAG_BYTES).div_ceil(3);
/// The rest of a `message:send` frame at its longest (compact JSON): `event`, a
/// 64-character `ref` and `clientId`, 20-digit `chatId`, `mediaId` and `replyToId`,
/// `kind: "image"`, `encrypted`, and the envelope's `v`, `alg`, `iv` and braces
/// (those of `keys` too) — the test `the_largest_frame_fits_at_max_members` builds
/// it and counts.
const FRAME_SKELETON_BYTES: usize = 417;

/// The largest group whose encrypted message (RSA-2048 keys, the other fields at
/// their longest) fits in a frame of `frame_bytes`: 139 at the default 64 KiB. Each
/// member adds 370 bytes to every message; larger RSA keys fit fewer members.
pub const fn max_members(frame_bytes: usize) -> usize {
    // The last entry of `keys` has no comma: one byte less than n entries.
    frame_bytes.saturating_sub(FRAME_SKELETON_BYTES + CIPHERTEXT_B64 - 1) / KEY_ENTRY_BYTES
}

/// [`max_members`] at the default `limits.ws_frame_bytes` (65,536): the figure
/// PROTOCOL.md and the web client (`static/js/e2ee.js` `MAX_MEMBERS`) state.
pub const MAX_MEMBERS: usize = max_members(64 * 1024);

/// The refusal for a chat of `members` people when at most `max` fit.
pub fn too_many_members(members: usize, max: usize) -> WireError {
    WireError::new(
        ErrorCode::TooManyMembersForEncryption,
        format!(
            "this chat has {members} members; end-to-end encryption carries a key for every \
             member in each message and fits at most {max}: send without encryption"
        ),
    )
}

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

/// Checks `raw` (the `e2ee` JSON) for a chat with `members`, whose frames are
/// limited to `frame_bytes` (`limits.ws_frame_bytes`).
pub fn check_envelope(raw: &str, members: &[UserId], frame_bytes: usize) -> Result<(), WireError> {
    // Before the shape: above the limit no envelope is right, and the client needs
    // this reason, not a complaint about a key.
    let max = max_members(frame_bytes);
    if members.len() > max {
        return Err(too_many_members(members.len(), max));
    }
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

    const FRAME: usize = 64 * 1024;

    #[test]
    fn accepts_a_well_formed_envelope() {
        let members = [UserId(1), UserId(2)];
        check_envelope(&env(12, 40, &[(1, 256), (2, 256)]), &members, FRAME).unwrap();
    }

    /// The longest `message:send` frame for `n` members (compact JSON, every field
    /// at its longest, 20-digit ids, RSA-2048 keys, the longest ASCII text).
    fn largest_frame(n: usize) -> String {
        let id = u64::MAX;
        let keys: serde_json::Map<String, serde_json::Value> = (0..n as u64)
            .map(|i| ((id - i).to_string(), b64(256).into()))
            .collect();
        serde_json::json!({"event": "message:send", "ref": "r".repeat(64), "data": {
            "chatId": id, "clientId": "c".repeat(64), "kind": "image", "content": "",
            "mediaId": id, "replyToId": id, "encrypted": true,
            "e2ee": {"v": 1, "alg": ALGORITHM, "iv": b64(IV_BYTES),
                     "ciphertext": b64(PLAINTEXT_RESERVE_BYTES + TAG_BYTES), "keys": keys}}})
        .to_string()
    }

    #[test]
    fn the_largest_frame_fits_at_max_members() {
        assert_eq!(MAX_MEMBERS, 139);
        for frame in [FRAME, 32 * 1024, 128 * 1024] {
            let max = max_members(frame);
            assert!(
                largest_frame(max).len() <= frame,
                "{max} members in {frame}"
            );
            assert!(
                largest_frame(max + 1).len() > frame,
                "{} members in {frame}",
                max + 1
            );
        }
        assert_eq!(max_members(1000), 0);
    }

    #[test]
    fn a_group_above_the_limit_is_refused_for_its_size() {
        let members: Vec<UserId> = (1..=MAX_MEMBERS as u64 + 1).map(UserId).collect();
        let keys: Vec<(u64, usize)> = members.iter().map(|u| (u.0, 256)).collect();
        let raw = env(12, 40, &keys);
        let err = check_envelope(&raw, &members, FRAME).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyMembersForEncryption);
        assert!(
            err.message.contains(&MAX_MEMBERS.to_string()),
            "{}",
            err.message
        );
        check_envelope(&raw, &members[..MAX_MEMBERS], FRAME).unwrap_err();
        let keys = &keys[..MAX_MEMBERS];
        check_envelope(&env(12, 40, keys), &members[..MAX_MEMBERS], FRAME).unwrap();
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
            let err = check_envelope(&raw, &members, FRAME).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnvelope, "{why}");
        }
    }
}
