//! `Device`: how a sign-in session is named in the list of sessions ("Firefox on
//! Linux"): what the client said in `device`, else a label read from its User-Agent,
//! else "Unknown device". Always 1 to 100 printable characters.

use parley_actors::ErrorCode;

use super::InvalidInput;

/// Longest label (the `auth_sessions.device` column).
pub const MAX_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device(String);

impl Device {
    /// The label a client chose (`device` of login or register), trimmed. An empty
    /// one is `None`: the User-Agent decides.
    pub fn parse(raw: &str) -> Result<Option<Device>, InvalidInput> {
        let label = raw.trim();
        if label.is_empty() {
            return Ok(None);
        }
        if label.chars().count() > MAX_CHARS {
            return Err(InvalidInput::new(
                ErrorCode::InvalidField,
                format!("device: at most {MAX_CHARS} characters"),
            ));
        }
        if label
            .chars()
            .any(|c| c.is_control() || super::fold::is_forbidden(c))
        {
            return Err(InvalidInput::new(
                ErrorCode::InvalidField,
                "device: only printable characters",
            ));
        }
        Ok(Some(Device(label.to_owned())))
    }

    /// The chosen label, else one read from `user_agent`.
    pub fn or_from_user_agent(chosen: Option<Device>, user_agent: Option<&str>) -> Device {
        chosen.unwrap_or_else(|| Device::from_user_agent(user_agent.unwrap_or("")))
    }

    /// "Browser on OS", "Browser", "OS" or "Unknown device". Only well-known tokens
    /// are looked for (the order matters: Edge and Opera also say Chrome, Chrome
    /// also says Safari), so nothing a client sends is ever shown back as is.
    pub fn from_user_agent(ua: &str) -> Device {
        const BROWSERS: &[(&str, &str)] = &[
            ("Edg/", "Edge"),
            ("EdgA/", "Edge"),
            ("OPR/", "Opera"),
            ("SamsungBrowser/", "Samsung Internet"),
            ("Firefox/", "Firefox"),
            ("FxiOS/", "Firefox"),
            ("CriOS/", "Chrome"),
            ("Chromium/", "Chromium"),
            ("Chrome/", "Chrome"),
            ("Safari/", "Safari"),
            ("curl/", "curl"),
            ("Wget/", "Wget"),
            ("python-requests/", "Python"),
            ("okhttp/", "Android app"),
            ("reqwest", "Rust client"),
        ];
        const SYSTEMS: &[(&str, &str)] = &[
            ("Android", "Android"),
            ("iPhone", "iOS"),
            ("iPad", "iPadOS"),
            ("CrOS", "ChromeOS"),
            ("Windows", "Windows"),
            ("Mac OS X", "macOS"),
            ("Macintosh", "macOS"),
            ("Linux", "Linux"),
            ("FreeBSD", "FreeBSD"),
        ];
        let find = |table: &[(&str, &'static str)]| {
            table
                .iter()
                .find(|(token, _)| ua.contains(token))
                .map(|(_, name)| *name)
        };
        let label = match (find(BROWSERS), find(SYSTEMS)) {
            (Some(b), Some(s)) => format!("{b} on {s}"),
            (Some(b), None) => b.to_owned(),
            (None, Some(s)) => s.to_owned(),
            (None, None) => "Unknown device".to_owned(),
        };
        Device(label)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_label_is_trimmed_and_checked() {
        assert_eq!(
            Device::parse("  Ann's laptop ").unwrap().unwrap().as_str(),
            "Ann's laptop"
        );
        assert_eq!(Device::parse("   ").unwrap(), None);
        assert!(Device::parse(&"x".repeat(101)).is_err());
        assert!(Device::parse(&"é".repeat(100)).unwrap().is_some());
        assert!(Device::parse("bad\u{7}bell").is_err());
        assert!(Device::parse("line\nbreak").is_err());
        assert!(Device::parse("zero\u{200B}width").is_err());
    }

    #[test]
    fn user_agents_read_as_browser_on_system() {
        for (ua, label) in [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
                "Safari on macOS",
            ),
            ("curl/8.5.0", "curl"),
            ("", "Unknown device"),
            ("<script>alert(1)</script>", "Unknown device"),
        ] {
            assert_eq!(Device::from_user_agent(ua).as_str(), label, "{ua}");
        }
    }
}
