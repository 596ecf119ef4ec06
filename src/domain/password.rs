use parley_actors::ErrorCode;

use super::InvalidInput;

/// A new password: 8–128 characters (counted as characters, not bytes). Its Debug
/// never shows it, so it cannot leak into a log line by accident.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Password, InvalidInput> {
        let n = raw.chars().count();
        if !(8..=128).contains(&n) {
            return Err(InvalidInput::new(
                ErrorCode::InvalidPassword,
                "password must be 8 to 128 characters",
            ));
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::Password;

    #[test]
    fn length_bounds_count_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        // 8 characters, 16 bytes
        assert!(Password::parse("пароль12").is_ok());
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = Password::parse("hunter22hunter").unwrap();
        assert!(!format!("{p:?}").contains("hunter"));
    }
}
