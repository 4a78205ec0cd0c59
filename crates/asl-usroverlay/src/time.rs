//! Timestamps: seconds since the epoch, shown as RFC 3339 UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in whole seconds since the Unix epoch (0 if the clock is before 1970).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2026-11-23T17:50:01Z` for a Unix time (`@SECONDS` past the year 9999).
pub fn rfc3339(secs: u64) -> String {
    match i64::try_from(secs).map(jiff::Timestamp::from_second) {
        Ok(Ok(t)) => format!("{t:.0}"),
        _ => format!("@{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_456_201), "2026-11-23T17:50:01Z");
    }
}
