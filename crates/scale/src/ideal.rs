//! The ideal capacity: the highest rate a zero-overhead system could sustain, the start of a
//! capacity search and the line its results are compared with.
//!
//! The same bounds as the batch ideal time (`plumbline_measure::ideal`), as rates: each worker
//! slot handles its items one after another, so the busiest slot's share of the items bounds
//! the rate (for partitioned work that share comes from the key distribution), and the CPU part
//! of every item must fit on the machine's cores. The limit is named with the measure crate's
//! [`Limit`], so a capacity table and a batch table blame the same things by the same names.
//! Measuring a rate is not here; this is arithmetic on the plan.

use plumbline_measure::ideal::KEY_SKEW_TOLERANCE;
pub use plumbline_measure::Limit;
use serde::{Deserialize, Serialize};

/// The cost of one item.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemCost {
    /// Seconds a worker slot spends on the item.
    pub per_item_s: f64,
    /// The part of it that holds a core (0 for sleep work, all of it for spin).
    pub cpu_per_item_s: f64,
}

impl ItemCost {
    pub fn sleep(per_item_s: f64) -> ItemCost {
        ItemCost {
            per_item_s,
            cpu_per_item_s: 0.0,
        }
    }

    pub fn spin(per_item_s: f64) -> ItemCost {
        ItemCost {
            per_item_s,
            cpu_per_item_s: per_item_s,
        }
    }
}

/// The ideal capacity and what bounds it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdealCapacity {
    /// Items/s.
    pub rate: f64,
    pub limit: Limit,
    /// The rate if keys were spread perfectly evenly over the workers (equals `rate` for
    /// balanced work).
    pub even_spread_rate: f64,
}

/// A plan with no ideal capacity, naming the figure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdealError {
    #[error("ideal capacity: the per-item time {0} s must be positive and finite (free work has no capacity)")]
    PerItem(f64),
    #[error("ideal capacity: the CPU time per item {cpu} s must be between 0 and the per-item time {per_item} s")]
    Cpu { cpu: f64, per_item: f64 },
    #[error("ideal capacity: {what} must be at least 1")]
    Zero { what: &'static str },
    #[error("ideal capacity: {shares} key shares for {owners} partition owners (one each)")]
    Owners { shares: usize, owners: usize },
    #[error("ideal capacity: partition {partition} is owned by worker {owner}, but there are {workers} workers")]
    Owner {
        partition: usize,
        owner: usize,
        workers: usize,
    },
    #[error("ideal capacity: key shares must be probabilities summing to 1 (partition {partition}: {share}; sum {sum})")]
    Shares {
        partition: usize,
        share: f64,
        sum: f64,
    },
}

/// How far the shares' sum may stray from 1 (shares from counts carry rounding).
const SHARE_SUM_TOLERANCE: f64 = 1e-6;

/// Balanced work (any free slot takes the next item): `slots ÷ per-item time`, or the cores'
/// `cores ÷ CPU time per item` if that is lower.
pub fn balanced(slots: usize, cost: ItemCost, cores: usize) -> Result<IdealCapacity, IdealError> {
    check(cost, cores)?;
    if slots == 0 {
        return Err(IdealError::Zero { what: "slots" });
    }
    let slot_rate = slots as f64 / cost.per_item_s;
    let (rate, limit) = bounded_by_cores(slot_rate, Limit::Workers, cost, cores);
    Ok(IdealCapacity {
        rate,
        limit,
        even_spread_rate: rate,
    })
}

/// Spin (CPU) work on `workers` threads: `min(workers, cores) ÷ CPU time per item`.
pub fn spin(
    workers: usize,
    cores: usize,
    cpu_per_item_s: f64,
) -> Result<IdealCapacity, IdealError> {
    balanced(workers, ItemCost::spin(cpu_per_item_s), cores)
}

/// Partitioned work: `shares[p]` is the probability an item's key falls in partition `p`,
/// owned by worker `owners[p]` of `workers`. The busiest worker's share bounds the rate at
/// `1 ÷ (share × per-item time)`.
pub fn partitioned(
    shares: &[f64],
    owners: &[usize],
    workers: usize,
    cost: ItemCost,
    cores: usize,
) -> Result<IdealCapacity, IdealError> {
    check(cost, cores)?;
    if workers == 0 {
        return Err(IdealError::Zero { what: "workers" });
    }
    if shares.len() != owners.len() || shares.is_empty() {
        return Err(IdealError::Owners {
            shares: shares.len(),
            owners: owners.len(),
        });
    }
    let sum: f64 = shares.iter().sum();
    let bad_share = shares
        .iter()
        .position(|s| !(0.0..=1.0).contains(s))
        .or(((sum - 1.0).abs() > SHARE_SUM_TOLERANCE).then_some(0));
    if let Some(partition) = bad_share {
        return Err(IdealError::Shares {
            partition,
            share: shares[partition],
            sum,
        });
    }
    let mut per_worker = vec![0.0; workers];
    let mut owns = vec![false; workers];
    for (partition, (&share, &owner)) in shares.iter().zip(owners).enumerate() {
        if owner >= workers {
            return Err(IdealError::Owner {
                partition,
                owner,
                workers,
            });
        }
        per_worker[owner] += share;
        owns[owner] = true;
    }
    let busiest = per_worker.iter().copied().fold(0.0, f64::max);
    let owning = owns.iter().filter(|&&o| o).count();
    let skew_limit = if busiest > KEY_SKEW_TOLERANCE / owning as f64 {
        Limit::KeyDistribution
    } else if owning < workers {
        Limit::Partitions
    } else {
        Limit::Workers
    };
    let (rate, limit) =
        bounded_by_cores(1.0 / (busiest * cost.per_item_s), skew_limit, cost, cores);
    let (even_spread_rate, _) = bounded_by_cores(
        workers as f64 / cost.per_item_s,
        Limit::Workers,
        cost,
        cores,
    );
    Ok(IdealCapacity {
        rate,
        limit,
        even_spread_rate,
    })
}

/// Key shares from item counts per partition (`None` when there are no items).
pub fn shares_of(counts: &[u64]) -> Option<Vec<f64>> {
    let total: u64 = counts.iter().sum();
    (total > 0).then(|| counts.iter().map(|&c| c as f64 / total as f64).collect())
}

fn check(cost: ItemCost, cores: usize) -> Result<(), IdealError> {
    if !(cost.per_item_s.is_finite() && cost.per_item_s > 0.0) {
        return Err(IdealError::PerItem(cost.per_item_s));
    }
    if !(0.0..=cost.per_item_s).contains(&cost.cpu_per_item_s) {
        return Err(IdealError::Cpu {
            cpu: cost.cpu_per_item_s,
            per_item: cost.per_item_s,
        });
    }
    if cores == 0 {
        return Err(IdealError::Zero { what: "cores" });
    }
    Ok(())
}

/// The lower of `rate` (bounded by `limit`) and what the cores allow.
fn bounded_by_cores(rate: f64, limit: Limit, cost: ItemCost, cores: usize) -> (f64, Limit) {
    let core_rate = cores as f64 / cost.cpu_per_item_s; // +∞ for sleep work
    if core_rate < rate {
        (core_rate, Limit::Cores)
    } else {
        (rate, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS10: f64 = 0.010;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs()
    }

    #[test]
    fn balanced_sleep_work_scales_with_the_slots() {
        for (slots, want) in [(1, 100.0), (2, 200.0), (8, 800.0)] {
            let ideal = balanced(slots, ItemCost::sleep(MS10), 2).unwrap();
            assert!(close(ideal.rate, want), "{slots} slots: {}", ideal.rate);
            assert_eq!(ideal.limit, Limit::Workers);
            assert_eq!(ideal.even_spread_rate, ideal.rate);
        }
    }

    #[test]
    fn spin_work_stops_at_the_cores() {
        let one = spin(1, 2, MS10).unwrap();
        assert!(close(one.rate, 100.0));
        assert_eq!(one.limit, Limit::Workers);
        for workers in [2, 4, 8] {
            let ideal = spin(workers, 2, MS10).unwrap();
            assert!(
                close(ideal.rate, 200.0),
                "{workers} workers: {}",
                ideal.rate
            );
        }
        assert_eq!(spin(4, 2, MS10).unwrap().limit, Limit::Cores);
    }

    #[test]
    fn hybrid_work_is_bounded_by_whichever_is_lower() {
        // 10 ms items, 4 ms of them on a core: 8 slots could do 800/s, 2 cores only 500/s.
        let cost = ItemCost {
            per_item_s: MS10,
            cpu_per_item_s: 0.004,
        };
        let ideal = balanced(8, cost, 2).unwrap();
        assert!(close(ideal.rate, 500.0));
        assert_eq!(ideal.limit, Limit::Cores);
        assert_eq!(balanced(4, cost, 2).unwrap().limit, Limit::Workers);
    }

    #[test]
    fn a_hot_key_holds_the_capacity_at_one_workers_rate() {
        // alphabet-hot: every vote on the partition worker 0 owns.
        let mut shares = vec![0.0; 4];
        shares[0] = 1.0;
        let ideal = partitioned(&shares, &[0, 1, 0, 1], 2, ItemCost::sleep(MS10), 2).unwrap();
        assert!(close(ideal.rate, 100.0));
        assert_eq!(ideal.limit, Limit::KeyDistribution);
        assert!(close(ideal.even_spread_rate, 200.0));
    }

    #[test]
    fn the_busiest_owner_bounds_a_skewed_distribution() {
        // Worker 1 owns 0.3 + 0.3 = 0.6 of the items: 1 / (0.6 × 10 ms) = 166.7/s.
        let ideal = partitioned(
            &[0.3, 0.3, 0.2, 0.2],
            &[1, 1, 0, 0],
            2,
            ItemCost::sleep(MS10),
            2,
        )
        .unwrap();
        assert!(close(ideal.rate, 1.0 / 0.006));
        assert_eq!(ideal.limit, Limit::KeyDistribution);
    }

    #[test]
    fn an_even_spread_is_blamed_on_the_workers_not_the_keys() {
        // Random keys never split exactly: 0.5 % above even is noise, not a hot key.
        let ideal = partitioned(
            &[0.2525, 0.2475, 0.25, 0.25],
            &[0, 1, 2, 3],
            4,
            ItemCost::sleep(MS10),
            2,
        )
        .unwrap();
        assert_eq!(ideal.limit, Limit::Workers);
        assert!(close(ideal.rate, 1.0 / (0.2525 * MS10)));
        assert!(close(ideal.even_spread_rate, 400.0));
    }

    #[test]
    fn workers_beyond_the_partitions_are_blamed_on_the_partitions() {
        let ideal = partitioned(&[0.5, 0.5], &[0, 1], 4, ItemCost::sleep(MS10), 2).unwrap();
        assert_eq!(ideal.limit, Limit::Partitions);
        assert!(close(ideal.rate, 200.0));
        assert!(close(ideal.even_spread_rate, 400.0));
    }

    #[test]
    fn shares_come_from_counts_per_partition() {
        let shares = shares_of(&[3, 1, 0, 4]).unwrap();
        assert_eq!(shares, [0.375, 0.125, 0.0, 0.5]);
        let ideal = partitioned(&shares, &[0, 1, 0, 1], 2, ItemCost::sleep(MS10), 2).unwrap();
        assert!(close(ideal.rate, 1.0 / (0.625 * MS10)));
        assert_eq!(shares_of(&[0, 0]), None);
        // Many uneven counts still sum to 1 within the tolerance.
        let counts: Vec<u64> = (1..=997).map(|i| i * 7919 % 1013).collect();
        assert!(partitioned(
            &shares_of(&counts).unwrap(),
            &vec![0; 997],
            1,
            ItemCost::sleep(MS10),
            1
        )
        .is_ok());
    }

    #[test]
    fn partitioned_spin_work_is_bounded_by_the_cores() {
        let shares = [0.25; 4];
        let ideal = partitioned(&shares, &[0, 1, 2, 3], 4, ItemCost::spin(MS10), 2).unwrap();
        assert_eq!(ideal.limit, Limit::Cores);
        assert!(close(ideal.rate, 200.0));
        assert!(close(ideal.even_spread_rate, 200.0));
    }

    #[test]
    fn plans_without_an_ideal_are_refused_by_name() {
        let sleep = ItemCost::sleep(MS10);
        let cases: Vec<(Result<IdealCapacity, IdealError>, &str)> = vec![
            (balanced(2, ItemCost::sleep(0.0), 2), "per-item time 0 s"),
            (balanced(0, sleep, 2), "slots must be at least 1"),
            (balanced(2, sleep, 0), "cores must be at least 1"),
            (
                balanced(
                    2,
                    ItemCost {
                        per_item_s: MS10,
                        cpu_per_item_s: 0.02,
                    },
                    2,
                ),
                "CPU time per item 0.02 s",
            ),
            (
                partitioned(&[1.0], &[0, 1], 2, sleep, 2),
                "1 key shares for 2 partition owners",
            ),
            (
                partitioned(&[0.5, 0.5], &[0, 2], 2, sleep, 2),
                "partition 1 is owned by worker 2",
            ),
            (partitioned(&[0.5, 0.4], &[0, 1], 2, sleep, 2), "sum 0.9"),
            (
                partitioned(&[1.5, -0.5], &[0, 1], 2, sleep, 2),
                "partition 0: 1.5",
            ),
            (
                partitioned(&[f64::NAN, 1.0], &[0, 1], 2, sleep, 2),
                "partition 0: NaN",
            ),
            (
                partitioned(&[1.0], &[0], 0, sleep, 2),
                "workers must be at least 1",
            ),
        ];
        for (result, named) in cases {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(named), "{err:?} should name {named:?}");
        }
    }
}
