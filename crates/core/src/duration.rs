//! Durations as users type them on the command line and in presets: `10ms`, `500us`, `0.5s`, `0`.
//!
//! Parsing only; what a duration means (a work delay, an interval) is up to the caller.

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
}

/// Parses `<number><unit>` where the number may have a fraction and `_` separators and the unit is
/// one of ns, us, µs, ms, s, m, h. A bare `0` is accepted; any other bare number is refused
/// because its unit would be a guess.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let text = input.trim().replace('_', "");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(DurationError::Malformed(input.to_string()));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::Malformed(input.to_string()))?;
    let nanos_per_unit = match unit.trim() {
        "" if value == 0.0 => 0.0,
        "" => return Err(DurationError::Malformed(input.to_string())),
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return Err(DurationError::UnknownUnit(input.to_string())),
    };
    let nanos = (value * nanos_per_unit).round();
    if !nanos.is_finite() || nanos >= u64::MAX as f64 {
        return Err(DurationError::OutOfRange(input.to_string()));
    }
    Ok(Duration::from_nanos(nanos as u64))
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
    }

    proptest! {
        #[test]
        fn human_form_round_trips(ns in 0u64..10_000_000_000_000) {
            let d = Duration::from_nanos(ns);
            prop_assert_eq!(parse_duration(&Human(d).to_string()), Ok(d));
        }
    }
}
