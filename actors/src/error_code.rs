//! The one vocabulary of error codes clients switch on, for the WebSocket `error`
//! event and the HTTP error body alike. The strings are the wire contract
//! (docs/PROTOCOL.md, "Error codes"); a test fails when a code is not listed there
//! with the status given here. This crate knows no HTTP framework, so the status is
//! a plain `u16` (src/error.rs turns it into actix's).

use std::fmt;

use serde::{Serialize, Serializer};

/// Declares the enum, its list and its two mappings from one table, so a code cannot
/// exist without a string, a status and a place in `ALL`.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal, $status:literal;)*) => {
        /// A stable, snake_case error code. Serialised as its string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The wire string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                }
            }

            /// The HTTP status that goes with the code: the only place it is decided.
            /// Codes only the WebSocket sends get the status they would have over HTTP.
            pub const fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    /// A body that could not be read at all.
    BadRequest = "bad_request", 400;
    MalformedJson = "malformed_json", 400;
    /// A JSON or form field has the wrong type or value.
    InvalidField = "invalid_field", 400;
    MissingField = "missing_field", 400;
    InvalidQuery = "invalid_query", 400;
    QueryTooShort = "query_too_short", 400;
    QueryTooLong = "query_too_long", 400;
    InvalidPath = "invalid_path", 400;
    BadMultipart = "bad_multipart", 400;
    MissingFile = "missing_file", 400;
    EmptyFile = "empty_file", 400;
    /// A public key that is not an RSA-OAEP SPKI key of an accepted size, or push
    /// subscription keys (`p256dh`, `auth`) of the wrong shape.
    InvalidKey = "invalid_key", 400;
    /// A push subscription endpoint that is not an https URL on a public address.
    InvalidEndpoint = "invalid_endpoint", 400;
    InvalidEmail = "invalid_email", 400;
    InvalidUsername = "invalid_username", 400;
    InvalidPassword = "invalid_password", 400;
    InvalidLogin = "invalid_login", 400;
    InvalidMember = "invalid_member", 400;
    InvalidTitle = "invalid_title", 400;
    /// `/ws` asked without a WebSocket upgrade.
    NotAWebsocket = "not_a_websocket", 400;
    /// A WebSocket frame that is not the `{event, data, ref}` envelope.
    BadFrame = "bad_frame", 400;
    UnknownEvent = "unknown_event", 400;
    /// An event's `data` that does not fit the event.
    InvalidData = "invalid_data", 400;
    /// An `e2ee` envelope of the wrong shape.
    InvalidEnvelope = "invalid_envelope", 400;
    BinaryNotSupported = "binary_not_supported", 400;
    MissingToken = "missing_token", 401;
    InvalidToken = "invalid_token", 401;
    TokenExpired = "token_expired", 401;
    InvalidTicket = "invalid_ticket", 401;
    InvalidCredentials = "invalid_credentials", 401;
    /// The token's sign-in session was signed out or revoked (or the token predates
    /// sessions): sign in again.
    SessionRevoked = "session_revoked", 401;
    Forbidden = "forbidden", 403;
    /// Registration in `auth.registration = "invite"` mode without a usable invite
    /// (missing, unknown, used up, expired or revoked: one answer for all).
    InviteInvalid = "invite_invalid", 403;
    /// Registration with `auth.registration = "closed"`.
    RegistrationClosed = "registration_closed", 403;
    /// A correct password for an account an administrator disabled.
    AccountDisabled = "account_disabled", 403;
    /// `POST /api/auth/reset` with a token that is unknown, used or expired.
    ResetTokenInvalid = "reset_token_invalid", 403;
    /// A password confirming a change (the current one) is wrong.
    WrongPassword = "wrong_password", 403;
    NotFound = "not_found", 404;
    /// Web Push is not configured (no `push.vapid_private_key`, or `push.enabled = false`).
    PushDisabled = "push_disabled", 404;
    MethodNotAllowed = "method_not_allowed", 405;
    EmailTaken = "email_taken", 409;
    UsernameTaken = "username_taken", 409;
    NotAGroup = "not_a_group", 409;
    /// A call id in use, or a call already answered.
    Conflict = "conflict", 409;
    /// The person called is in another call.
    /// `message:edit` past `messages.edit_window_secs`.
    EditWindowClosed = "edit_window_closed", 409;
    /// An edit or reaction to a message deleted for everyone.
    MessageDeleted = "message_deleted", 409;
    /// `message:react`: the user has 8 different emoji on the message already.
    TooManyReactions = "too_many_reactions", 409;
    CalleeBusy = "callee_busy", 409;
    TooLarge = "too_large", 413;
    QuotaExceeded = "quota_exceeded", 413;
    /// An image with more pixels or frames than the server decodes.
    ImageTooLarge = "image_too_large", 413;
    UnsupportedMediaType = "unsupported_media_type", 415;
    RateLimited = "rate_limited", 429;
    TooManySessions = "too_many_sessions", 429;
    Internal = "internal", 500;
    /// A dependency (MySQL, Redis, the hashing pool) cannot take the request now.
    Unavailable = "unavailable", 503;
    /// Too much already waiting (a queue, the syncs of a connection) or the caller is
    /// already in a call: retry later.
    Busy = "busy", 503;
    ShuttingDown = "shutting_down", 503;
    StorageFull = "storage_full", 507;
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Tests and logs compare against the wire string; these keep that a one-liner.
impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::ErrorCode;

    #[test]
    fn strings_are_unique_snake_case_and_serialised_as_is() {
        let strings: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            strings.len(),
            ErrorCode::ALL.len(),
            "a string is used twice"
        );
        for &code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s} is not snake_case"
            );
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{s}\""));
            assert!((400..600).contains(&code.http_status()), "{s}");
        }
    }

    /// `| \`code\` | status | … |` rows of PROTOCOL.md's error table.
    fn documented() -> BTreeMap<String, String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
        let text = std::fs::read_to_string(path).expect("docs/PROTOCOL.md");
        let start = text
            .find("| code | HTTP status |")
            .expect("PROTOCOL.md has an error table headed `| code | HTTP status | …`");
        text[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let code = cells[1].trim_matches('`').to_owned();
                (code, cells.get(2).copied().unwrap_or_default().to_owned())
            })
            .collect()
    }

    #[test]
    fn protocol_md_lists_every_code_with_its_status() {
        let table = documented();
        let mut problems = Vec::new();
        for &code in ErrorCode::ALL {
            match table.get(code.as_str()) {
                None => problems.push(format!("`{code}` is not listed")),
                Some(status) if !status.starts_with(&code.http_status().to_string()) => problems
                    .push(format!(
                        "`{code}` is listed with status {status:?}; the code says {}",
                        code.http_status()
                    )),
                Some(_) => {}
            }
        }
        let known: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for listed in table.keys().filter(|c| !known.contains(c.as_str())) {
            problems.push(format!(
                "`{listed}` is listed but the server never sends it"
            ));
        }
        assert!(
            problems.is_empty(),
            "docs/PROTOCOL.md's error table disagrees with ErrorCode:\n{}",
            problems.join("\n")
        );
    }
}
