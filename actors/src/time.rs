//! Wire timestamps: RFC 3339 UTC with milliseconds (`2026-11-24T10:00:00.123Z`).
//! MySQL holds `DATETIME(3)` in UTC (every connection sets `time_zone = '+00:00'`).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// Now, truncated to milliseconds so it round-trips through `DATETIME(3)`.
    pub fn now() -> Timestamp {
        let now = Utc::now();
        let ms = now.timestamp_millis();
        Timestamp(DateTime::from_timestamp_millis(ms).unwrap_or(now))
    }

    pub fn naive(&self) -> NaiveDateTime {
        self.0.naive_utc()
    }
}

impl From<NaiveDateTime> for Timestamp {
    fn from(n: NaiveDateTime) -> Self {
        Timestamp(n.and_utc())
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_with_millis_and_z() {
        let n = chrono::NaiveDate::from_ymd_opt(2026, 11, 24)
            .and_then(|d| d.and_hms_milli_opt(10, 0, 0, 123))
            .expect("valid date");
        let t = Timestamp::from(n);
        assert_eq!(t.to_string(), "2026-11-24T10:00:00.123Z");
        assert_eq!(
            serde_json::to_string(&t).expect("serializes"),
            "\"2026-11-24T10:00:00.123Z\""
        );
    }
}
