use parley_actors::ErrorCode;

use super::InvalidInput;

/// An email address in its canonical form (NFKC + case folding, see `fold`) of a
/// plausible shape (the only real check is a mail that arrives, which Parley does not
/// send): `local@domain.tld`, no spaces, no control or zero-width characters, ≤ 254.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, InvalidInput> {
        let bad = || {
            InvalidInput::new(
                ErrorCode::InvalidEmail,
                "email must look like name@example.com",
            )
        };
        let s = super::fold::fold(raw).ok_or_else(bad)?;
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn accepts_and_folds_case() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        assert!(Email::parse("a.b+tag@sub.example.org").is_ok());
        assert_eq!(
            Email::parse("ＡＮＮ@example.com").unwrap().as_str(),
            "ann@example.com",
            "fullwidth letters are NFKC-folded"
        );
    }

    #[test]
    fn refuses_bad_shapes() {
        for (raw, why) in [
            ("", "empty"),
            ("ann", "no at sign"),
            ("@example.com", "no local part"),
            ("ann@", "no domain"),
            ("ann@localhost", "no dot in domain"),
            ("ann@@example.com", "two at signs"),
            ("an n@example.com", "space"),
            ("ann@example..com", "empty label"),
            ("ann@-example.com", "label starts with a hyphen"),
            ("a\u{200b}nn@example.com", "zero-width space"),
            ("a\u{1}nn@example.com", "control character"),
            ("ann@exa\u{200d}mple.com", "zero-width joiner in the domain"),
        ] {
            assert!(Email::parse(raw).is_err(), "{why}: {raw:?} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err(), "too long");
    }
}
