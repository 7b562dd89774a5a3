//! A worker process that is a member of a broker's consumer group (`worker --in URL`).
//!
//! ```text
//!  broker ─poll (≤ batch)─▶ Processor (work, keyed state) ─▶ sink (--out) ─flush─▶ ack ─▶ broker
//! ```
//!
//! Nothing is acknowledged before its result reached the sink (flushed; for a broker sink,
//! acknowledged by that broker), so a worker killed at any point, or one whose sink failed
//! (it stops with an error and acks nothing more), leaves its unfinished messages to the group (at-least-once backends redeliver them;
//! at-most-once ones lose them, and the sink's sequence numbers count the loss). There is no
//! initializer: the broker assigns the work. Keyed state is correct across members only when
//! the broker keeps a key with one member (Kafka: partition = key mod partitions).
//!
//! Watchers (`--ui`) see this member alone through [`NodeConfig::live`]: items taken and done
//! (so in flight is what it holds unacked), items per partition, and the latency from each
//! item's intended send time to its result's flush.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use plumbline_core::header;
use plumbline_core::Shutdown;
use plumbline_measure::{LatencyFeed, Live, WorkerFigures};
use plumbline_transport::broker::{
    connect_consumer, identify, ClientOptions, ConsumerStats, MAX_REASONS,
};
use plumbline_transport::config::TransportConfig;

use super::wire::WorkerStats;
use super::{partition_label, NodeConfig, NodeError, Processed, Processor};
use crate::app::App;

/// How long one poll waits before the stop flag is looked at again.
const POLL: Duration = Duration::from_millis(100);

/// Messages taken per poll: as many as the work can finish in a tenth of the redelivery time
/// (so none is handed to another member while it waits here), at most 256.
fn batch(delay: Duration, redeliver_after: Duration) -> usize {
    if delay.is_zero() {
        return 256;
    }
    ((redeliver_after.as_secs_f64() / 10.0 / delay.as_secs_f64()) as usize).clamp(1, 256)
}

pub(super) fn run(
    config: &NodeConfig,
    source: &TransportConfig,
    options: &ClientOptions,
    idle_timeout: Option<Duration>,
    stop: &Shutdown,
) -> Result<WorkerStats, NodeError> {
    let what = format!("--in {source}");
    let broker = |error| NodeError::Broker {
        what: what.clone(),
        source: error,
    };
    let max = batch(config.delay, options.redeliver_after);
    // A broker may count the redelivery time from when a message reaches this member's buffer
    // (JetStream does), so the member holds no more than it polls at once.
    let options = ClientOptions {
        prefetch: options.prefetch.min(max),
        ..options.clone()
    };
    let mut consumer = connect_consumer(source, &options).map_err(broker)?;
    let mut processor = Processor::new(config)?;
    tracing::info!(
        "[{}] consuming {source} ({}) in group '{}'",
        config.name,
        source.guarantee(),
        options.group
    );
    if let Some(addr) = consumer.bound() {
        tracing::info!("[{}] producers connect to {addr}", config.name);
    }
    // Which Kafka broker this is, and its known limitation, before any loss it may cause.
    match identify(source, &options) {
        Ok(Some(broker)) => {
            // Its known limitation is a warning line of that text, kept verbatim.
            for line in broker.text().lines() {
                match line.starts_with("warning: ") {
                    true => tracing::warn!("[{}] {line}", config.name),
                    false => tracing::info!("[{}] {line}", config.name),
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "[{}] cannot tell which broker {source} is: {e}",
            config.name
        ),
    }
    // When the latest message arrived; the idle timeout starts with the first one, so workers
    // may be started before the producer.
    let mut last: Option<Instant> = None;
    let mut assigned = None;
    let mut watch = Watch::new(config);
    let mut peers = PeerNotes::default();
    while !stop.requested() {
        let batch = consumer.poll(max, POLL).map_err(broker)?;
        watch.taken(batch.len());
        let stats = consumer.stats();
        peers.tell(&config.name, &stats, options.max_connections);
        let now = stats.assigned;
        if now != assigned {
            if let Some(partitions) = &now {
                let list: Vec<String> = partitions.iter().map(ToString::to_string).collect();
                tracing::info!("[{}] assigned partitions [{}]", config.name, list.join(","));
            }
            assigned = now;
        }
        if batch.is_empty() {
            processor.flush();
            if idle_timeout.is_some_and(|t| last.is_some_and(|l| l.elapsed() >= t)) {
                break;
            }
            continue;
        }
        last = Some(Instant::now());
        for delivery in &batch {
            if let Some(item) = processor.process(&delivery.payload) {
                watch.processed(item);
            }
        }
        // Acknowledged only once every result reached the sink: after a sink failure the
        // batch stays unacknowledged, so the broker hands it to another member.
        if let Err(lost) = processor.deliver() {
            watch.finish();
            return Err(NodeError::SinkFailed {
                out: config.out.clone().unwrap_or_default(),
                why: lost.0,
                delivered: processor.stats().results,
                unacked: batch.len(),
            });
        }
        consumer.ack(&batch).map_err(broker)?;
        watch.done(batch.len());
    }
    // Leaving the group: what the broker gave this member beyond its last batch goes back.
    if stop.requested() {
        match consumer.release() {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "[{}] handed {n} unstarted message(s) back to the group",
                config.name
            ),
            Err(e) => tracing::warn!(
                "[{}] could not hand unstarted messages back ({e}); the broker redelivers them \
                 after its redelivery time",
                config.name
            ),
        }
    }
    processor.finish();
    watch.finish();
    let stats = processor.stats();
    let consumed = consumer.stats();
    tracing::info!(
        "[{}] done: {} items ({} redelivered to it), {} results",
        config.name,
        stats.items,
        consumed.redelivered,
        stats.results
    );
    if consumed.bad_peers + consumed.refused > 0 {
        tracing::warn!(
            "[{}] producer connections: {} closed for a bad frame ({} of them stalled), {} refused",
            config.name,
            consumed.bad_peers,
            consumed.stalled,
            consumed.refused
        );
    }
    Ok(stats)
}

/// What this member has said so far of its producers' bad connections (`tcp://`), so each
/// named one is logged once, and the cap's first refusal once.
#[derive(Default)]
struct PeerNotes {
    named: usize,
    refused: bool,
}

impl PeerNotes {
    fn tell(&mut self, name: &str, stats: &ConsumerStats, max_connections: usize) {
        for reason in stats.bad_reasons.iter().skip(self.named) {
            tracing::warn!("[{name}] closed {reason}");
        }
        if stats.bad_reasons.len() == MAX_REASONS && self.named < MAX_REASONS {
            tracing::warn!("[{name}] further bad producer connections are counted, not named");
        }
        self.named = stats.bad_reasons.len();
        if stats.refused > 0 && !self.refused {
            self.refused = true;
            tracing::warn!(
                "[{name}] refused a producer connection: {max_connections} are open \
                 (--max-connections); further refusals are counted"
            );
        }
    }
}

/// What this member shows its watchers, from what the processor already read of each item.
/// Latencies end when a batch's results are flushed and acked, so the clock is read once per
/// batch, not per item.
struct Watch<'a> {
    live: &'a Live,
    /// This member's `--name`: its `worker` label.
    name: &'a str,
    app: App,
    per_partition: Vec<u64>,
    /// Intended send times of the batch in hand (reused, so no allocation per batch).
    intended: Vec<u64>,
    items_out: u64,
    latency: LatencyFeed,
}

impl<'a> Watch<'a> {
    fn new(config: &'a NodeConfig) -> Self {
        let watch = Self {
            live: &config.live,
            name: &config.name,
            app: config.app,
            per_partition: vec![0; config.partitions.max(1) as usize],
            intended: Vec::new(),
            items_out: 0,
            latency: LatencyFeed::default(),
        };
        watch.publish_counts();
        watch
    }

    /// Messages the broker handed over: held until [`Watch::done`].
    fn taken(&self, n: usize) {
        self.live.items_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn processed(&mut self, item: Processed) {
        let partitions = self.per_partition.len() as u32;
        self.per_partition[(item.key % partitions) as usize] += 1;
        self.intended.extend(item.intended_unix_ns);
    }

    /// The batch in hand (`n` messages) was flushed and acked.
    fn done(&mut self, n: usize) {
        let now = header::unix_now_ns();
        for intended in self.intended.drain(..) {
            self.latency.record_ns(now.saturating_sub(intended));
        }
        self.items_out += n as u64;
        self.live.items_out.store(self.items_out, Ordering::Relaxed);
        if self.latency.publish_if_due(self.live) {
            self.publish_counts();
        }
    }

    fn finish(mut self) {
        self.latency.publish(self.live);
        self.publish_counts();
    }

    fn publish_counts(&self) {
        self.live.set_workers(vec![WorkerFigures {
            name: self.name.to_string(),
            items: self.items_out,
            ..WorkerFigures::default()
        }]);
        self.live.set_per_partition(
            self.per_partition
                .iter()
                .enumerate()
                .map(|(p, &n)| (partition_label(self.app, p as u32), n))
                .collect(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::batch;
    use std::time::Duration;

    #[test]
    fn a_batch_is_finished_well_before_redelivery() {
        let five = Duration::from_secs(5);
        assert_eq!(batch(Duration::from_millis(10), five), 50);
        assert_eq!(batch(Duration::from_secs(1), five), 1);
        assert_eq!(batch(Duration::ZERO, five), 256);
    }
}
