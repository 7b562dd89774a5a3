//! The lag trend of a trial: the least-squares slope of (time, lag) samples, as Theodolite judges
//! a trial by. Pure arithmetic on samples the engine took; taking them is not here.

/// The least-squares slope of `(t seconds, value)` samples, in value units per second.
///
/// `None` when no trend exists: fewer than 2 samples, every sample at the same time, or a
/// non-finite input (a NaN must not read as a flat trend).
pub fn slope(samples: &[(f64, f64)]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_v = samples.iter().map(|s| s.1).sum::<f64>() / n;
    // Centred sums: run clocks give t in the thousands of seconds, where Σt² − n·t̄² cancels.
    let (sxx, sxy) = samples.iter().fold((0.0, 0.0), |(sxx, sxy), &(t, v)| {
        let dt = t - mean_t;
        (sxx + dt * dt, sxy + dt * (v - mean_v))
    });
    let slope = sxy / sxx;
    (sxx > 0.0 && slope.is_finite()).then_some(slope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_straight_line_gives_its_slope() {
        let line: Vec<_> = (0..10)
            .map(|i| (f64::from(i), 3.0 * f64::from(i) + 7.0))
            .collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_steady_lag_has_no_trend_and_a_draining_one_a_negative_trend() {
        let flat = [(0.0, 40.0), (1.0, 40.0), (2.0, 40.0)];
        assert_eq!(slope(&flat), Some(0.0));
        let draining = [(0.0, 90.0), (1.0, 60.0), (2.0, 30.0)];
        assert!((slope(&draining).unwrap() + 30.0).abs() < 1e-12);
    }

    #[test]
    fn noise_around_a_trend_averages_out() {
        // Lag growing 5/s with ±20 alternating noise.
        let noisy: Vec<_> = (0..100)
            .map(|i| {
                let t = f64::from(i) * 0.1;
                (t, 5.0 * t + if i % 2 == 0 { 20.0 } else { -20.0 })
            })
            .collect();
        assert!((slope(&noisy).unwrap() - 5.0).abs() < 0.5);
    }

    #[test]
    fn too_few_samples_or_no_time_spread_or_nan_give_no_trend() {
        assert_eq!(slope(&[]), None);
        assert_eq!(slope(&[(1.0, 5.0)]), None);
        assert_eq!(slope(&[(2.0, 5.0), (2.0, 9.0), (2.0, 1.0)]), None);
        assert_eq!(slope(&[(0.0, 5.0), (1.0, f64::NAN)]), None);
        assert_eq!(slope(&[(0.0, 5.0), (f64::INFINITY, 1.0)]), None);
    }

    #[test]
    fn late_clock_offsets_do_not_cost_precision() {
        let line: Vec<_> = (0..50)
            .map(|i| {
                (
                    86_400.0 + f64::from(i) * 0.2,
                    1e6 + 2.0 * f64::from(i) * 0.2,
                )
            })
            .collect();
        assert!((slope(&line).unwrap() - 2.0).abs() < 1e-6);
    }

    proptest! {
        #[test]
        fn the_slope_of_any_line_is_recovered(
            a in -1e4f64..1e4, b in -1e6f64..1e6, t0 in 0f64..1e5, n in 2usize..200,
        ) {
            let line: Vec<_> = (0..n).map(|i| {
                let t = t0 + i as f64 * 0.25;
                (t, a * t + b)
            }).collect();
            let s = slope(&line).unwrap();
            // Rounding in the values, spread over the time span, bounds the error.
            let span = (n - 1) as f64 * 0.25;
            let value_error = f64::EPSILON * (a.abs() * (t0 + span) + b.abs());
            prop_assert!((s - a).abs() <= 16.0 * value_error / span,
                "slope {s} for a line of slope {a}");
        }
    }
}
