//! What every command that talks to a broker shares: turning the broker flags (and a
//! listening consumer's connection limits) into the transport's [`ClientOptions`], naming the Kafka broker reached, and one report of what the
//! producers saw (counts, broker ack latency, the backend's guarantee). Connecting and moving
//! messages are the transport's.

use std::time::Duration;

use plumbline_measure::report::secs;
use plumbline_measure::{LatencySummary, Recorder};
use plumbline_transport::broker::{self, BrokerIdentity, ClientOptions, ProducerStats};
use plumbline_transport::config::TransportConfig;
use serde::Serialize;

use crate::args::{BrokerArgs, IntakeArgs};

/// The transport options of `args`, for a client of `role` (named in consumer names).
pub fn options(
    args: &BrokerArgs,
    role: &str,
    max_payload: usize,
    connect_timeout: Duration,
) -> ClientOptions {
    ClientOptions {
        connect_timeout,
        max_payload,
        group: args.group.clone(),
        consumer: format!("{role}-{}", std::process::id()),
        redeliver_after: args.redeliver_after,
        prefetch: args.prefetch as usize,
        create: !args.no_create,
        partitions: args.topic_partitions,
        password: args.login.password.clone(),
        tls_ca: args.login.tls_ca.clone(),
        // A listening consumer's limits come from `listening`.
        ..ClientOptions::default()
    }
}

/// `options` of a consumer of `config`: a listening one (`tcp://`) gets its connection cap
/// and frame limits from the listener flags, as `receive --listen` applies them; the others,
/// which connect out to a broker, are left as they are.
pub fn listening(
    options: ClientOptions,
    config: &TransportConfig,
    intake: &IntakeArgs,
    max_frame: u64,
) -> anyhow::Result<ClientOptions> {
    if !matches!(config, TransportConfig::Tcp { .. }) {
        return Ok(options);
    }
    Ok(ClientOptions {
        max_connections: intake.max_connections,
        intake: Some(crate::receive::intake_limits(intake, max_frame)?),
        ..options
    })
}

/// The Kafka broker `config` reaches, for the report; `None` for the other backends, and
/// (after a warning saying why) for a broker whose metadata did not come.
pub fn identify(config: &TransportConfig, options: &ClientOptions) -> Option<BrokerIdentity> {
    broker::identify(config, options).unwrap_or_else(|e| {
        tracing::warn!("cannot tell which broker {config} is: {e}");
        None
    })
}

/// How long producers may wait for the broker's last acks at the end of a run.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Producers' counts summed and their ack latencies merged, for the run report.
#[derive(Clone, Debug, Serialize)]
pub struct ProducerReport {
    /// As shown: without its password.
    pub url: String,
    /// Whether the backend acknowledges what it takes (all but tcp and NATS core).
    pub acks: bool,
    pub guarantee: String,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub unrouted: u64,
    /// Send call → broker ack, all producers merged; absent for backends without acks.
    pub ack_latency_s: Option<LatencySummary>,
    /// Kafka: the broker as its metadata names it, and its known limitation.
    pub kafka_broker: Option<BrokerIdentity>,
}

impl ProducerReport {
    pub fn new(
        config: &TransportConfig,
        stats: &[ProducerStats],
        kafka_broker: Option<BrokerIdentity>,
    ) -> Self {
        let mut merged: Option<Recorder> = None;
        for latency in stats.iter().filter_map(|s| s.ack_latency_s.as_ref()) {
            if let Ok(recorder) = latency.recorder() {
                merged.get_or_insert_with(Recorder::new).merge(&recorder);
            }
        }
        Self {
            url: config.to_string(),
            acks: config.has_acks(),
            guarantee: config.guarantee().to_string(),
            sent: stats.iter().map(|s| s.sent).sum(),
            acked: stats.iter().map(|s| s.acked).sum(),
            failed: stats.iter().map(|s| s.failed).sum(),
            unrouted: stats.iter().map(|s| s.unrouted).sum(),
            ack_latency_s: merged.map(|r| r.summary()),
            kafka_broker,
        }
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "broker {} ({}): {} sent, {} acknowledged, {} refused or unacknowledged\n",
            self.url, self.guarantee, self.sent, self.acked, self.failed
        );
        if let Some(broker) = &self.kafka_broker {
            for line in broker.text().lines() {
                out += &format!("  {line}\n");
            }
        }
        if self.unrouted > 0 {
            out += &format!(
                "  {} published while no subscriber listened: nobody received them\n",
                self.unrouted
            );
        }
        match &self.ack_latency_s {
            Some(l) => {
                out += &format!(
                    "  broker ack latency: p50 {} p99 {} p99.9 {} max {}\n",
                    secs(l.p50),
                    secs(l.p99),
                    secs(l.p999),
                    secs(l.max)
                )
            }
            None if !self.acks => {
                out += "  this backend sends no acks: delivery is only checked by the receiver\n"
            }
            None if self.sent > 0 => {
                out += "  the broker acknowledged none of them: see its refusal below\n"
            }
            None => {}
        }
        out
    }
}
