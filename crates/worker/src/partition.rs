//! Partitions and their owners: which worker holds the state of which partition.
//!
//! A message's partition is `key % partitions`; partition `p` is owned by worker `p % workers`
//! (round robin, so 60 partitions split evenly over 1–6, 10, 12, … workers). Routing is the
//! cluster's job; this is the pure map, also used to derive a run's ideal time from its keys.

/// Maps partitions to owning workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMap {
    partitions: u32,
    workers: usize,
}

impl PartitionMap {
    /// Round-robin ownership. Both counts must be at least 1 (the plan validates them).
    pub fn round_robin(partitions: u32, workers: usize) -> Self {
        assert!(partitions > 0 && workers > 0, "validated by the plan");
        Self {
            partitions,
            workers,
        }
    }

    pub fn partition_of(&self, key: u32) -> u32 {
        key % self.partitions
    }

    pub fn owner(&self, partition: u32) -> usize {
        partition as usize % self.workers
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn owner_of_key(&self, key: u32) -> usize {
        self.owner(self.partition_of(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_partitions_split_evenly_over_common_cluster_sizes() {
        for workers in [1, 2, 3, 4, 5, 6, 10, 12] {
            let map = PartitionMap::round_robin(60, workers);
            let mut owned = vec![0; workers];
            (0..60).for_each(|p| owned[map.owner(p)] += 1);
            assert!(
                owned.iter().all(|&n| n == 60 / workers),
                "{workers}: {owned:?}"
            );
        }
    }

    #[test]
    fn letters_split_in_halves_over_two_workers() {
        let map = PartitionMap::round_robin(26, 2);
        let mut load = [0; 2];
        (0..52).for_each(|i| load[map.owner_of_key(i % 26)] += 1);
        assert_eq!(load, [26, 26]);
        assert_eq!(
            map.owner_of_key(0),
            map.owner_of_key(26),
            "a key keeps its owner"
        );
    }
}
