//! Unix timestamps and the replay window every timestamped scheme enforces.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::SignatureError;

/// The current time in whole seconds since the Unix epoch, the unit every scheme signs.
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Parses a timestamp header: decimal seconds since the Unix epoch.
pub(crate) fn parse_timestamp(header: &str, value: &str) -> Result<i64, SignatureError> {
    value
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedHeader(header.to_owned()))
}

/// Refuses a timestamp further than `tolerance` from `now` in either direction:
/// old ones may be replays, future ones would stay replayable for longer.
pub(crate) fn check_timestamp(
    timestamp: i64,
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.saturating_sub(timestamp) > tolerance {
        return Err(SignatureError::TimestampTooOld);
    }
    if timestamp.saturating_sub(now) > tolerance {
        return Err(SignatureError::TimestampTooNew);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_inside_the_tolerance_pass_on_both_sides() {
        let five_minutes = Duration::from_secs(300);
        assert_eq!(check_timestamp(1000, 1300, five_minutes), Ok(()));
        assert_eq!(check_timestamp(1300, 1000, five_minutes), Ok(()));
        assert_eq!(
            check_timestamp(999, 1300, five_minutes),
            Err(SignatureError::TimestampTooOld)
        );
        assert_eq!(
            check_timestamp(1301, 1000, five_minutes),
            Err(SignatureError::TimestampTooNew)
        );
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let tolerance = Duration::from_secs(300);
        assert_eq!(
            check_timestamp(i64::MIN, i64::MAX, tolerance),
            Err(SignatureError::TimestampTooOld)
        );
        assert_eq!(
            check_timestamp(i64::MAX, i64::MIN, tolerance),
            Err(SignatureError::TimestampTooNew)
        );
        assert_eq!(check_timestamp(0, 0, Duration::MAX), Ok(()));
    }

    #[test]
    fn timestamps_must_be_decimal_seconds() {
        assert_eq!(parse_timestamp("t", " 1614265330 "), Ok(1614265330));
        assert!(parse_timestamp("t", "1614265330.5").is_err());
        assert!(parse_timestamp("t", "").is_err());
        assert!(parse_timestamp("t", "99999999999999999999999").is_err());
    }
}
