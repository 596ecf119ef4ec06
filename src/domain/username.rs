use parley_actors::ErrorCode;

use super::InvalidInput;

/// 3–32 characters of `[a-z0-9_.]` after NFKC + case folding (see `fold`), so `Ann`,
/// `ＡＮＮ` and `ann` are one name; anything else (accents, zero-width or control
/// characters) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Username, InvalidInput> {
        let s = super::fold::fold(raw).unwrap_or_default();
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if !(3..=32).contains(&s.len()) || !ok_chars {
            return Err(InvalidInput::new(
                ErrorCode::InvalidUsername,
                "username must be 3 to 32 characters of a-z, 0-9, _ and .",
            ));
        }
        Ok(Username(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Username;

    #[test]
    fn accepts_and_folds_case() {
        assert_eq!(Username::parse("Ann_B.1").unwrap().as_str(), "ann_b.1");
        assert!(Username::parse("abc").is_ok());
        assert!(Username::parse(&"a".repeat(32)).is_ok());
        assert_eq!(Username::parse("ＶＩＣＴＯＲ").unwrap().as_str(), "victor");
    }

    #[test]
    fn refuses_bad_names() {
        for (raw, why) in [
            ("ab", "too short"),
            ("", "empty"),
            ("a b c", "space"),
            ("ann-b", "hyphen"),
            ("ännа", "non-ASCII"),
            ("ann@x", "at sign"),
            ("a%_b", "percent"),
            ("vîctor", "accented letter"),
            ("vi\u{200b}ctor", "zero-width space"),
            ("v\u{1}ictor", "control character"),
        ] {
            assert!(Username::parse(raw).is_err(), "{why}: {raw:?} was accepted");
        }
        assert!(Username::parse(&"a".repeat(33)).is_err(), "too long");
    }
}
