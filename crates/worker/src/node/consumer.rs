//! A worker process that is a member of a broker's consumer group (`worker --in URL`).
//!
//! ```text
//!  broker ─poll (≤ batch)─▶ Processor (work, keyed state) ─▶ sink (--out) ─flush─▶ ack ─▶ broker
//! ```
//!
//! Nothing is acknowledged before its result is flushed to the sink, so a worker killed at any
//! point leaves its unfinished messages to the group (at-least-once backends redeliver them;
//! at-most-once ones lose them, and the sink's sequence numbers count the loss). There is no
//! initializer: the broker assigns the work. Keyed state is correct across members only when
//! the broker keeps a key with one member (Kafka: partition = key mod partitions).

use std::time::{Duration, Instant};

use plumbline_core::Shutdown;
use plumbline_transport::broker::{connect_consumer, ClientOptions};
use plumbline_transport::config::TransportConfig;

use super::wire::WorkerStats;
use super::{NodeConfig, NodeError, Processor};

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
    eprintln!(
        "[{}] consuming {source} ({}) in group '{}'",
        config.name,
        source.guarantee(),
        options.group
    );
    // When the latest message arrived; the idle timeout starts with the first one, so workers
    // may be started before the producer.
    let mut last: Option<Instant> = None;
    let mut assigned = None;
    while !stop.requested() {
        let batch = consumer.poll(max, POLL).map_err(broker)?;
        let now = consumer.stats().assigned;
        if now != assigned {
            if let Some(partitions) = &now {
                let list: Vec<String> = partitions.iter().map(ToString::to_string).collect();
                eprintln!("[{}] assigned partitions [{}]", config.name, list.join(","));
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
            processor.process(&delivery.payload);
        }
        processor.flush();
        consumer.ack(&batch).map_err(broker)?;
    }
    processor.finish();
    let stats = processor.stats();
    let consumed = consumer.stats();
    eprintln!(
        "[{}] done: {} items ({} redelivered to it), {} results",
        config.name, stats.items, consumed.redelivered, stats.results
    );
    Ok(stats)
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
