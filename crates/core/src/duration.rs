//! Durations as users type them on the command line and in presets: `10ms`, `500us`, `0.5s`, `0`.
//!
//! Parsing is `humantime`'s (which also reads `1h30m`, `2min`, `1day`), with plumbline's rules on
//! top: `_` separators, a bare number other than 0 refused, at most about 584 years (a `u64` of
//! nanoseconds), and errors that quote the input. What a duration means (a work delay, an
//! interval) is up to the caller.

use std::fmt;
use std::time::Duration;

/// Why a duration string was refused; the message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "'{0}' is not a duration: expected a number with a unit, e.g. 10ms, 500us, 0.5s, or 0"
    )]
    Malformed(String),
    #[error("'{0}' has an unknown unit: use ns, us (or µs), ms, s, m or h")]
    UnknownUnit(String),
    #[error("'{0}' is out of range: durations must be between 0 and about 584 years")]
    OutOfRange(String),
    #[error("'{0}' is finer than a nanosecond")]
    TooFine(String),
}

/// Parses `<number><unit>` (and sums of them, `1h30m`) where the number may have a fraction and
/// `_` separators and the unit is one of ns, us, µs, ms, s, m, h (or humantime's longer names).
/// A bare `0` is accepted; any other bare number is refused because its unit would be a guess.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    use humantime::DurationError as E;
    let text = input.trim().replace('_', "");
    if text.parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    let duration = humantime::parse_duration(&text).map_err(|e| match e {
        E::UnknownUnit { unit, .. } if unit.is_empty() => {
            DurationError::Malformed(input.to_string())
        }
        E::UnknownUnit { .. } => DurationError::UnknownUnit(input.to_string()),
        // humantime refuses what a nanosecond cannot hold as an overflow too.
        E::NumberOverflow if text.contains('.') => DurationError::TooFine(input.to_string()),
        E::NumberOverflow => DurationError::OutOfRange(input.to_string()),
        _ => DurationError::Malformed(input.to_string()),
    })?;
    if duration.as_nanos() >= u128::from(u64::MAX) {
        return Err(DurationError::OutOfRange(input.to_string()));
    }
    Ok(duration)
}

/// Shows a duration the way [`parse_duration`] reads it back, in the largest exact unit.
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let (div, unit) = match ns {
            0 => return f.write_str("0"),
            n if n % 1_000_000_000 == 0 => (1_000_000_000, "s"),
            n if n % 1_000_000 == 0 => (1_000_000, "ms"),
            n if n % 1_000 == 0 => (1_000, "us"),
            _ => (1, "ns"),
        };
        write!(f, "{}{}", ns / div, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_forms_users_type() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("500µs"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("100_000ns"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 0.0 "), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_guesses_and_names_the_input() {
        let err = parse_duration("10").unwrap_err();
        assert!(err.to_string().contains("'10'"), "{err}");
        assert!(matches!(
            parse_duration("10 parsecs"),
            Err(DurationError::UnknownUnit(_))
        ));
        assert!(matches!(
            parse_duration("ms"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("-1ms"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("99999999999h"),
            Err(DurationError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_duration("1.5ns"),
            Err(DurationError::TooFine(_))
        ));
        assert!(matches!(
            parse_duration("1..s"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration(""),
            Err(DurationError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn human_form_round_trips(ns in 0u64..10_000_000_000_000) {
            let d = Duration::from_nanos(ns);
            prop_assert_eq!(parse_duration(&Human(d).to_string()), Ok(d));
        }
    }
}
