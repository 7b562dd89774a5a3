//! The ideal time of a run: how long it would take if the plumbing cost nothing.
//!
//! Honest means it charges the run only for what the workload itself forces:
//! * each worker handles its items one after another, so the busiest worker's share bounds the
//!   run (for partitioned work that share comes from the actual key distribution: a hot key makes
//!   the ideal the sequential time);
//! * the CPU-bound part of every item (all of it for `spin`) must fit on the machine's cores.
//!
//! `ideal = max(busiest worker's items × delay, all items × cpu-per-item ÷ cores)`. That bound is
//! reachable (a preemptive schedule meets it), so overhead above it is the plumbing's. Measuring
//! wall time is not here; this is arithmetic on the plan.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a run's ideal is computed from.
#[derive(Clone, Debug)]
pub struct IdealInput<'a> {
    /// Items each worker must handle (for balanced work, the even split).
    pub per_worker: &'a [u64],
    /// Cost of one item.
    pub delay: Duration,
    /// The part of `delay` that holds a core (0 for sleep, `delay` for spin).
    pub cpu_per_item: Duration,
    /// Cores the machine has.
    pub cores: usize,
    /// When the last item is due, for a paced run (`None`: every item is due at the start).
    pub last_due: Option<Duration>,
    /// Keyed state's partition count (`None` for unkeyed work): with fewer partitions than
    /// workers, some workers can never get an item.
    pub partitions: Option<u32>,
}

/// What bounds the ideal time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// Items spread evenly over the workers: more workers would go faster.
    Workers,
    /// The key distribution puts more than an even share on the busiest worker.
    KeyDistribution,
    /// Fewer partitions than workers: the extra workers own nothing.
    Partitions,
    /// A paced run cannot end before its last item is due (plus that item's work).
    Arrivals,
    /// The CPU part of the work needs more cores than the machine has.
    Cores,
}

impl Limit {
    pub fn describe(&self) -> &'static str {
        match self {
            Limit::Workers => "the worker count",
            Limit::KeyDistribution => "the key distribution, not the engine",
            Limit::Partitions => "the partition count: workers beyond it own no partition",
            Limit::Arrivals => "the send rate: the last item is not due any earlier",
            Limit::Cores => "the machine's cores",
        }
    }
}

/// The ideal time of a run and what bounds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ideal {
    pub time: Duration,
    pub limit: Limit,
    /// The busiest worker's items × delay: the ideal with a core per worker.
    pub busiest: Duration,
    /// The ideal if keys were spread perfectly evenly (equals `time` for balanced work).
    pub even_spread: Duration,
}

/// How much more than an even share the busiest worker may hold before the key distribution is
/// named as the limit (random keys are never split exactly evenly; 1 % is noise, not a hot key).
pub const KEY_SKEW_TOLERANCE: f64 = 1.01;

/// Computes the ideal time; see the module docs for the formula.
pub fn ideal(input: &IdealInput) -> Ideal {
    let workers = input.per_worker.len().max(1) as u64;
    let slots = input
        .partitions
        .map_or(workers, |p| workers.min(u64::from(p).max(1)));
    let total: u64 = input.per_worker.iter().sum();
    let busiest_items = input.per_worker.iter().copied().max().unwrap_or(0);
    let even_items = total.div_ceil(workers);
    let slot_items = total.div_ceil(slots);
    let busiest = mul(input.delay, busiest_items);
    let even = batch_ideal(total, workers, input.delay);
    let cpu = mul(input.cpu_per_item, total) / input.cores.max(1) as u32;
    let arrivals = input
        .last_due
        .map_or(Duration::ZERO, |due| due + input.delay);
    let (time, limit) = if arrivals > busiest.max(cpu) {
        (arrivals, Limit::Arrivals)
    } else if cpu > busiest {
        (cpu, Limit::Cores)
    } else if busiest_items as f64 > slot_items as f64 * KEY_SKEW_TOLERANCE {
        (busiest, Limit::KeyDistribution)
    } else if slots < workers && busiest_items > even_items {
        (busiest, Limit::Partitions)
    } else {
        (busiest, Limit::Workers)
    };
    Ideal {
        time,
        limit,
        busiest,
        even_spread: even.max(cpu),
    }
}

/// The ideal of a load-balanced batch: `items` of `delay` each over `slots` that take one at a
/// time, every slot busy from the first item to the last: ⌈items ÷ slots⌉ × delay. The one
/// place this is reckoned (the even split here, a pipeline's tasks over its worker threads).
pub fn batch_ideal(items: u64, slots: u64, delay: Duration) -> Duration {
    mul(delay, items.div_ceil(slots.max(1)))
}

fn mul(d: Duration, n: u64) -> Duration {
    Duration::from_nanos((d.as_nanos() * u128::from(n)).min(u128::from(u64::MAX)) as u64)
}

/// The even split of `items` over `workers` as the busiest-first item counts.
pub fn even_split(items: u64, workers: usize) -> Vec<u64> {
    let w = workers.max(1) as u64;
    (0..w)
        .map(|i| items / w + u64::from(i < items % w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS10: Duration = Duration::from_millis(10);

    #[test]
    fn uniform_sleep_work_divides_by_workers() {
        for (workers, secs) in [(1, 10.0), (2, 5.0), (10, 1.0)] {
            let split = even_split(1000, workers);
            let ideal = ideal(&IdealInput {
                per_worker: &split,
                delay: MS10,
                cpu_per_item: Duration::ZERO,
                cores: 2,
                partitions: None,
                last_due: None,
            });
            assert_eq!(ideal.time.as_secs_f64(), secs);
            assert_eq!(ideal.limit, Limit::Workers);
        }
    }

    #[test]
    fn uneven_items_round_up_to_the_busiest_worker() {
        let split = even_split(1001, 2);
        assert_eq!(split, vec![501, 500]);
        let i = ideal(&IdealInput {
            per_worker: &split,
            delay: MS10,
            cpu_per_item: Duration::ZERO,
            cores: 2,
            partitions: None,
            last_due: None,
        });
        assert_eq!(i.time, Duration::from_millis(5010));
    }

    #[test]
    fn a_hot_key_makes_the_ideal_sequential() {
        // alphabet-hot: all 52 votes on the worker owning 'a'.
        let i = ideal(&IdealInput {
            per_worker: &[52, 0],
            delay: Duration::from_millis(500),
            cpu_per_item: Duration::ZERO,
            cores: 2,
            partitions: None,
            last_due: None,
        });
        assert_eq!(i.time, Duration::from_secs(26));
        assert_eq!(i.limit, Limit::KeyDistribution);
        assert_eq!(i.even_spread, Duration::from_secs(13));
    }

    #[test]
    fn a_near_even_random_split_is_not_blamed_on_the_keys() {
        let i = ideal(&IdealInput {
            per_worker: &[100_085, 99_915],
            delay: MS10,
            cpu_per_item: Duration::ZERO,
            cores: 2,
            partitions: None,
            last_due: None,
        });
        assert_eq!(i.limit, Limit::Workers);
        assert_eq!(i.time, Duration::from_micros(1_000_850_000));
    }

    #[test]
    fn spin_work_is_bounded_by_cores() {
        // 1000 × 10 ms spin on 10 workers but 2 cores: 5 s, not 1 s.
        let split = even_split(1000, 10);
        let i = ideal(&IdealInput {
            per_worker: &split,
            delay: MS10,
            cpu_per_item: MS10,
            cores: 2,
            partitions: None,
            last_due: None,
        });
        assert_eq!(i.time, Duration::from_secs(5));
        assert_eq!(i.limit, Limit::Cores);
        // With as many cores as workers, the workers bound it again.
        let i = ideal(&IdealInput {
            per_worker: &split,
            delay: MS10,
            cpu_per_item: MS10,
            cores: 10,
            partitions: None,
            last_due: None,
        });
        assert_eq!((i.time, i.limit), (Duration::from_secs(1), Limit::Workers));
    }

    #[test]
    fn more_workers_than_partitions_blames_the_partitions_not_the_keys() {
        // 60 uniform partitions on 120 workers: 60 workers hold 10 items each, 60 hold none.
        let mut per_worker = vec![10; 60];
        per_worker.extend(vec![0; 60]);
        let i = ideal(&IdealInput {
            per_worker: &per_worker,
            delay: MS10,
            cpu_per_item: Duration::ZERO,
            cores: 2,
            partitions: Some(60),
            last_due: None,
        });
        assert_eq!(i.limit, Limit::Partitions);
        assert_eq!(i.time, Duration::from_millis(100));
    }

    #[test]
    fn a_paced_run_cannot_beat_its_last_arrival() {
        // 100 items at 50/s: the last is due at 1.98 s and costs 10 ms more.
        let split = even_split(100, 10);
        let i = ideal(&IdealInput {
            per_worker: &split,
            delay: MS10,
            cpu_per_item: Duration::ZERO,
            cores: 2,
            partitions: None,
            last_due: Some(Duration::from_millis(1980)),
        });
        assert_eq!(
            (i.time, i.limit),
            (Duration::from_millis(1990), Limit::Arrivals)
        );
    }

    #[test]
    fn a_balanced_batch_takes_whole_rounds_of_its_slots() {
        assert_eq!(batch_ideal(100, 20, MS10), Duration::from_millis(50));
        assert_eq!(batch_ideal(101, 20, MS10), Duration::from_millis(60));
        assert_eq!(batch_ideal(0, 4, MS10), Duration::ZERO);
        // No slots is one slot, not a division by zero.
        assert_eq!(batch_ideal(3, 0, MS10), Duration::from_millis(30));
    }

    #[test]
    fn zero_delay_has_zero_ideal() {
        let i = ideal(&IdealInput {
            per_worker: &[5, 5],
            delay: Duration::ZERO,
            cpu_per_item: Duration::ZERO,
            cores: 2,
            partitions: None,
            last_due: None,
        });
        assert_eq!(i.time, Duration::ZERO);
    }
}
