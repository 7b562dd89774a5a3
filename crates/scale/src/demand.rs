//! The demand metric: the fewest workers that sustain a load, read off the capacities the
//! search found for each worker count (monotone systems: the fewest whose capacity reaches the
//! load; a count that passed nothing never does). Searching is [`crate::search`]'s.

/// The fewest workers whose capacity is at least `load` (`None` capacities never are).
pub fn fewest_workers(load: f64, capacities: &[(usize, Option<f64>)]) -> Option<usize> {
    capacities
        .iter()
        .filter(|(_, c)| c.is_some_and(|c| c >= load))
        .map(|(workers, _)| *workers)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fewest_workers_are_read_off_the_capacities() {
        let capacities = [
            (1, Some(98.0)),
            (2, Some(196.0)),
            (4, None),
            (8, Some(780.0)),
        ];
        assert_eq!(fewest_workers(50.0, &capacities), Some(1));
        assert_eq!(fewest_workers(196.0, &capacities), Some(2));
        // 4 workers failed every rate: 8 is the answer, not 4.
        assert_eq!(fewest_workers(300.0, &capacities), Some(8));
        assert_eq!(fewest_workers(800.0, &capacities), None);
        assert_eq!(fewest_workers(10.0, &[]), None);
    }
}
