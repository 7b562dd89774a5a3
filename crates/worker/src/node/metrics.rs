//! The initializer's view of the cluster, served as Prometheus text over HTTP (`GET /metrics`).
//!
//! Items in and per partition are counted where they are routed (the initializer sees every
//! item); items out, rejections and the step-latency histogram come from each worker's stats
//! (joiners report once a second). The HTTP side is the minimum a scraper needs: one request per
//! connection, `/metrics` or 404 (401 for a remote scraper without the cluster's token). The
//! same figures go to [`Live`] for `--ui`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use plumbline_measure::{Live, Recorder};

use super::partition_label;
use super::wire::WorkerStats;
use crate::App;

/// Upper bounds (seconds) of the step-latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

pub(super) struct Metrics {
    app: App,
    pub items_in: AtomicU64,
    pub source_errors: AtomicU64,
    /// Of the source errors, connections closed because a frame stalled.
    pub source_slow: AtomicU64,
    /// Source connections refused over `--max-connections`.
    pub source_refused: AtomicU64,
    partitions: Vec<AtomicU64>,
    workers: Mutex<BTreeMap<String, WorkerStats>>,
    /// Worker names in cluster order (joiners of a running cluster at the end), for
    /// per-worker counts in [`Live`].
    order: Mutex<Vec<String>>,
    live: Arc<Live>,
}

impl Metrics {
    pub fn new(app: App, partitions: u32, names: &[String], live: Arc<Live>) -> Self {
        Self {
            app,
            order: Mutex::new(names.to_vec()),
            live,
            items_in: AtomicU64::new(0),
            source_errors: AtomicU64::new(0),
            source_slow: AtomicU64::new(0),
            source_refused: AtomicU64::new(0),
            partitions: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            workers: Mutex::new(
                names
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            WorkerStats {
                                name: n.clone(),
                                ..WorkerStats::default()
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// Adds one source read's per-partition counts (and zeroes them for the next read).
    pub fn routed(&self, counts: &mut [u64]) {
        let mut total = 0;
        for (shared, count) in self.partitions.iter().zip(counts.iter_mut()) {
            if *count > 0 {
                shared.fetch_add(*count, Ordering::Relaxed);
                total += std::mem::take(count);
            }
        }
        self.items_in.fetch_add(total, Ordering::Relaxed);
        self.live.items_in.fetch_add(total, Ordering::Relaxed);
    }

    /// A worker joined the running cluster: it is counted from now on.
    pub fn add_worker(&self, name: &str) {
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        if !order.iter().any(|n| n == name) {
            order.push(name.to_string());
        }
        drop(order);
        self.update(WorkerStats {
            name: name.to_string(),
            ..WorkerStats::default()
        });
    }

    pub fn update(&self, stats: WorkerStats) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.insert(stats.name.clone(), stats);
        let per_worker: Vec<u64> = self
            .order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|name| workers.get(name).map_or(0, |w| w.items))
            .collect();
        drop(workers);
        self.live
            .items_out
            .store(per_worker.iter().sum(), Ordering::Relaxed);
        self.live.set_per_worker(&per_worker);
        self.live.set_per_partition(
            self.partitions
                .iter()
                .enumerate()
                .map(|(p, n)| {
                    (
                        partition_label(self.app, p as u32),
                        n.load(Ordering::Relaxed),
                    )
                })
                .collect(),
        );
    }

    /// Every worker's latest stats, in cluster order.
    pub fn workers(&self) -> Vec<WorkerStats> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        self.order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|name| workers.get(name).cloned())
            .collect()
    }

    /// Items every worker reports processed (applied or rejected).
    pub fn items_processed(&self) -> u64 {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|w| w.items)
            .sum()
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let per: Vec<String> = workers
            .values()
            .map(|w| format!("{} {} items", w.name, w.items))
            .collect();
        format!(
            "{} items in; {}; {} source errors ({} stalled frames); {} sources refused",
            self.items_in.load(Ordering::Relaxed),
            per.join(", "),
            self.source_errors.load(Ordering::Relaxed),
            self.source_slow.load(Ordering::Relaxed),
            self.source_refused.load(Ordering::Relaxed)
        )
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = format!(
            "# HELP plumbline_items_in_total Items accepted from sources.\n\
             # TYPE plumbline_items_in_total counter\nplumbline_items_in_total {}\n",
            self.items_in.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            text,
            "# HELP plumbline_source_errors_total Source connections closed for bad input.\n\
             # TYPE plumbline_source_errors_total counter\nplumbline_source_errors_total {}",
            self.source_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            text,
            "# HELP plumbline_source_slow_total Source connections closed for a stalled frame \
             (--read-timeout, --min-rate).\n\
             # TYPE plumbline_source_slow_total counter\nplumbline_source_slow_total {}\n\
             # HELP plumbline_source_refused_total Source connections refused over \
             --max-connections.\n\
             # TYPE plumbline_source_refused_total counter\nplumbline_source_refused_total {}",
            self.source_slow.load(Ordering::Relaxed),
            self.source_refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            text,
            "# HELP plumbline_partition_items_total Items routed to each partition.\n\
             # TYPE plumbline_partition_items_total counter"
        );
        for (p, count) in self.partitions.iter().enumerate() {
            let _ = writeln!(
                text,
                "plumbline_partition_items_total{{partition=\"{}\"}} {}",
                partition_label(self.app, p as u32),
                count.load(Ordering::Relaxed)
            );
        }
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        type Field = fn(&WorkerStats) -> u64;
        let fields: [(&str, &str, Field); 4] = [
            (
                "plumbline_worker_items_total",
                "Items each worker processed.",
                |w| w.items,
            ),
            (
                "plumbline_worker_results_total",
                "Results each worker delivered to the sink.",
                |w| w.results,
            ),
            (
                "plumbline_worker_rejected_total",
                "Items each worker could not apply.",
                |w| w.rejected,
            ),
            (
                "plumbline_worker_undelivered_total",
                "Results each worker could not deliver.",
                |w| w.undelivered,
            ),
        ];
        for (metric, help, value) in fields {
            let _ = writeln!(text, "# HELP {metric} {help}\n# TYPE {metric} counter");
            for w in workers.values() {
                let _ = writeln!(text, "{metric}{{worker=\"{}\"}} {}", w.name, value(w));
            }
        }
        let mut step = Recorder::new();
        for w in workers.values() {
            if let Some(Ok(r)) = w.step.as_ref().map(|s| s.recorder()) {
                step.merge(&r);
            }
        }
        let _ = writeln!(
            text,
            "# HELP plumbline_step_seconds What one item's work cost, all workers.\n\
             # TYPE plumbline_step_seconds histogram"
        );
        for le in BUCKETS {
            let _ = writeln!(
                text,
                "plumbline_step_seconds_bucket{{le=\"{le}\"}} {}",
                step.count_at_or_below_ns((le * 1e9) as u64)
            );
        }
        let _ = writeln!(
            text,
            "plumbline_step_seconds_bucket{{le=\"+Inf\"}} {count}\nplumbline_step_seconds_sum {}\n\
             plumbline_step_seconds_count {count}",
            step.sum_ns() / 1e9,
            count = step.count()
        );
        text
    }
}

/// Serves `GET /metrics` on `listener` (a few scrapers at once). Where the cluster has a
/// token, a scraper that is not on this host must present it as `Authorization: Bearer`
/// (Prometheus: `authorization: { credentials_file: PATH }`); others are answered 401 and
/// logged with their address.
pub(super) fn serve(listener: TcpListener, metrics: Arc<Metrics>, token: Option<String>) {
    super::serve_each(listener, 8, move |mut stream| {
        // Up to the end of the headers (the token is among them), however the request was
        // split into segments; each read times out, so a silent peer cannot hold a slot.
        let mut request = [0u8; 2048];
        let mut n = 0;
        while n < request.len() && !request[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut request[n..]) {
                Ok(0) | Err(_) => break,
                Ok(read) => n += read,
            }
        }
        let line = String::from_utf8_lossy(&request[..n]);
        let peer = stream.peer_addr().ok();
        let local = peer.is_some_and(|p| p.ip().is_loopback());
        let response = if !line.starts_with("GET /metrics ") {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
        } else if !local && !super::protect::admits(token.as_deref(), bearer(&line)) {
            let peer = peer.map_or("?".into(), |p| p.to_string());
            tracing::warn!("refused a metrics scrape from {peer}: wrong or missing bearer token");
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
                .into()
        } else {
            let body = metrics.render();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let _ = stream.write_all(response.as_bytes());
    });
}

/// The token of a request's `Authorization: Bearer TOKEN` header, if it has one.
fn bearer(request: &str) -> Option<&str> {
    request
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.trim().strip_prefix("Bearer "))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn a_bearer_token_is_read_from_its_header_whatever_the_case() {
        let request = "GET /metrics HTTP/1.1\r\nHost: x\r\nauthorization: Bearer s3cret\r\n\r\n";
        assert_eq!(bearer(request), Some("s3cret"));
    }

    #[test]
    fn no_header_or_another_scheme_is_no_token() {
        assert_eq!(bearer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), None);
        let basic = "GET /metrics HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n";
        assert_eq!(bearer(basic), None);
        // A header in the body is not a header.
        let body = "POST /metrics HTTP/1.1\r\n\r\nAuthorization: Bearer s3cret";
        assert_eq!(bearer(body), None);
    }
}
