//! Human durations in flags and fault specs (`250ms`, `5s`, `1m`; a bare number is seconds).

use std::time::Duration;

/// Longest duration any setting accepts: a day is more than any timeout here should be.
pub(crate) const MAX: Duration = Duration::from_secs(24 * 3600);

/// Parses `raw`, or `None` when it is not a duration up to [`MAX`].
pub(crate) fn parse(raw: &str) -> Option<Duration> {
    let trimmed = raw.trim();
    let parsed = match trimmed.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(trimmed).ok(),
    };
    parsed.filter(|d| *d <= MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bare_number_is_seconds_and_units_are_accepted() {
        assert_eq!(parse("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("-1s"), None);
        assert_eq!(parse("1000h"), None);
        assert_eq!(parse("soon"), None);
    }
}
