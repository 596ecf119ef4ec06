use parley_actors::ErrorCode;

use super::{Email, InvalidInput, Username};

/// What a person signs in with: an email (it has an `@`) or a username, in the same
/// canonical form registration stores, so every spelling of one account reaches the
/// same row *and* the same throttle. Invisible and control characters are refused
/// here, before any lookup or hashing, instead of being ignored by the database's
/// collation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Email(Email),
    Username(Username),
}

impl Login {
    pub fn parse(raw: &str) -> Result<Login, InvalidInput> {
        let bad = || {
            InvalidInput::new(
                ErrorCode::InvalidLogin,
                "enter your email or username (no invisible or control characters)",
            )
        };
        if raw.len() > 1024 {
            return Err(bad());
        }
        if raw.contains('@') {
            Email::parse(raw).map(Login::Email).map_err(|_| bad())
        } else {
            Username::parse(raw).map(Login::Username).map_err(|_| bad())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Login::Email(e) => e.as_str(),
            Login::Username(u) => u.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Login;

    #[test]
    fn spellings_of_one_account_parse_alike() {
        for raw in ["victor", "VICTOR", " Victor ", "ｖｉｃｔｏｒ"] {
            assert_eq!(Login::parse(raw).unwrap().as_str(), "victor", "{raw:?}");
        }
        assert!(matches!(
            Login::parse("Victor@Example.COM").unwrap(),
            Login::Email(_)
        ));
    }

    #[test]
    fn invisible_control_and_impossible_names_are_refused() {
        for raw in [
            "vi\u{200b}ctor",
            "v\u{1}ictor",
            "vîctor",
            "vi\u{200b}ctor@example.com",
            "victor@exa\u{0}mple.com",
            "",
            "@",
        ] {
            let e = Login::parse(raw).unwrap_err();
            assert_eq!(e.code, "invalid_login", "{raw:?}");
        }
    }
}
