//! How figures read in the sentences this crate writes (verdicts, why a search stopped): three
//! significant figures, no exponent. Formatting only; nothing here judges a figure.

use std::fmt;

/// A number to three significant figures with trailing zeros dropped: 312, 20, 0.5, 1.23, 12345.
pub(crate) struct Num(pub f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if !x.is_finite() || x == 0.0 || x.abs() >= 100.0 {
            return write!(f, "{x:.0}");
        }
        let decimals = (2 - x.abs().log10().floor() as i32).clamp(0, 9) as usize;
        let s = format!("{x:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            &s
        };
        f.write_str(s)
    }
}

/// A duration in seconds, in ms below one second: "250 ms", "1.5 s".
pub(crate) struct Secs(pub f64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.abs() < 1.0 {
            write!(f, "{} ms", Num(self.0 * 1e3))
        } else {
            write!(f, "{} s", Num(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_to_three_significant_figures() {
        let cases = [
            (312.4, "312"),
            (20.0, "20"),
            (0.5, "0.5"),
            (1.234, "1.23"),
            (12_345.6, "12346"),
            (0.012_34, "0.0123"),
            (-4.56, "-4.56"),
            (99.96, "100"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
        ];
        for (x, want) in cases {
            assert_eq!(Num(x).to_string(), want, "{x}");
        }
    }

    #[test]
    fn durations_below_a_second_read_in_milliseconds() {
        assert_eq!(Secs(0.25).to_string(), "250 ms");
        assert_eq!(Secs(0.0123).to_string(), "12.3 ms");
        assert_eq!(Secs(1.5).to_string(), "1.5 s");
    }
}
