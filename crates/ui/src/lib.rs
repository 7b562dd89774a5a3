//! plumbline-ui: the live page of a running command (`--ui`) and its `/metrics`.
//!
//! ```text
//!   run (hot path) ──atomics, batches──▶ Live ◀──tick()── Ticker (1/s)
//!                                          │ snapshot()
//!                                          ▼
//!                              UiServer (own thread, tokio + axum)
//!                 GET /  /events (SSE)  /snapshot.json  /metrics (Prometheus)
//! ```
//!
//! This crate sits on the watcher side of a run: it only reads [`Live`] through
//! [`Live::snapshot`] (once per request, or once a second per `/events` client) and never
//! touches the run's hot path. It does not tick (the command's `Ticker` does), keep history
//! beyond what `Live` keeps, write reports, or fetch anything: the page's CSS and JS are embedded
//! and work offline. It does not authenticate either: bind 127.0.0.1 unless the network is
//! trusted.
//!
//! Routes: `GET /` the page; `GET /events` Server-Sent Events, one event named `snapshot` whose
//! `data:` is the [`LiveSnapshot`] as one line of JSON (the latest [`RECENT`] ticks), sent on
//! connect and then every second; `GET /snapshot.json` the same JSON once; `GET /metrics` the
//! Prometheus text exposition ([`prometheus`]). Anything else is 404.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::future::IntoFuture;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use plumbline_measure::{Live, LiveSnapshot};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// The page: HTML with its CSS and JS inline, so one request draws it and nothing is fetched.
const PAGE: &str = include_str!("../assets/page.html");

/// Ticks sent to watchers: two minutes at one a second, enough for the page's charts.
pub const RECENT: usize = 120;

/// How often `/events` sends a snapshot; `Live` ticks once a second, faster would repeat it.
const PERIOD: Duration = Duration::from_secs(1);

/// How long connections get to close by themselves once the server stops, before the runtime
/// is dropped under them (a client that stopped reading must not hold up the command's exit).
const GRACE: Duration = Duration::from_millis(500);

const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the live page cannot be served. Each message names the address as it was given.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("cannot serve the live page on {addr:?}: not a host:port address ({reason}); try 127.0.0.1:4000 or 0.0.0.0:4000")]
    BadAddress { addr: String, reason: String },
    #[error("cannot serve the live page on {addr}: address already in use (is another plumbline --ui running? pick another port or 127.0.0.1:0)")]
    InUse { addr: String },
    #[error("cannot serve the live page on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot start the live page server for {addr}: {source}")]
    Start { addr: String, source: io::Error },
}

/// A running live-page server; dropping it stops the server (joins its thread).
pub struct UiServer {
    addr: SocketAddr,
    /// Set to `true` (or dropped) to stop: ends the accept loop and every `/events` stream.
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl UiServer {
    /// The address actually bound (the real port when `:0` was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl fmt::Debug for UiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        // No receiver left only means the server already ended; joining is still right.
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds `addr` (e.g. "127.0.0.1:0", "0.0.0.0:4000") synchronously, so that a port in use is
/// reported here rather than from a background thread, then serves on its own thread (a
/// current-thread tokio runtime running axum). Never blocks the caller after binding.
pub fn serve(addr: &str, live: Arc<Live>) -> Result<UiServer, UiError> {
    let bad = |reason: String| UiError::BadAddress {
        addr: addr.to_owned(),
        reason,
    };
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(bad("it resolves to no address".into()));
    }
    let listener = TcpListener::bind(&addrs[..]).map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            UiError::InUse {
                addr: addr.to_owned(),
            }
        } else {
            UiError::Bind {
                addr: addr.to_owned(),
                source,
            }
        }
    })?;
    let start = |source| UiError::Start {
        addr: addr.to_owned(),
        source,
    };
    // Everything that can fail happens here, on the caller's thread, so the error is returned
    // rather than lost in the server thread.
    listener.set_nonblocking(true).map_err(start)?;
    let local = listener.local_addr().map_err(start)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(start)?;
    let listener = {
        let _in_runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(start)?
    };
    let (stop, stopped) = watch::channel(false);
    let app = Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/snapshot.json", get(snapshot_json))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            live,
            stop: stopped.clone(),
        });
    let thread = std::thread::Builder::new()
        .name("live-ui".into())
        .spawn(move || runtime.block_on(run(listener, app, stopped)))
        .map_err(start)?;
    Ok(UiServer {
        addr: local,
        stop,
        thread: Some(thread),
    })
}

/// Serves until the stop signal, then lets connections finish for [`GRACE`] at most. The
/// runtime is dropped right after, which drops whatever connection is left.
async fn run(listener: tokio::net::TcpListener, app: Router, stopped: watch::Receiver<bool>) {
    let mut for_server = stopped.clone();
    let mut for_deadline = stopped;
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { until_stopped(&mut for_server).await })
        .into_future();
    let deadline = async move {
        until_stopped(&mut for_deadline).await;
        tokio::time::sleep(GRACE).await;
    };
    tokio::select! {
        // An accept error is retried inside axum; an error here has nowhere useful to go
        // (the run goes on without its page), so it only ends the server.
        _ = server => {}
        () = deadline => {}
    }
}

/// Resolves once the server is asked to stop, or once its handle is gone.
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

#[derive(Clone)]
struct AppState {
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn snapshot_json(State(state): State<AppState>) -> Response {
    match serde_json::to_string(&state.live.snapshot(RECENT)) {
        Ok(json) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            json,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        prometheus(&state.live.snapshot(1)),
    )
        .into_response()
}

/// `event: snapshot` + `data: <LiveSnapshot JSON>` at once, then every second, until the
/// client goes away (the body is dropped) or the server stops (the stream ends, so graceful
/// shutdown does not wait on an endless response).
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut every = tokio::time::interval(PERIOD);
    // A slow client gets the latest figures, not a burst of stale ones.
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stream =
        futures_util::stream::unfold((state, every), |(mut state, mut every)| async move {
            tokio::select! {
                biased;
                () = until_stopped(&mut state.stop) => None,
                // The first tick of an interval is immediate: the snapshot on connect.
                _ = every.tick() => {
                    let event = snapshot_event(&state.live.snapshot(RECENT));
                    Some((Ok(event), (state, every)))
                }
            }
        });
    Sse::new(stream)
}

fn snapshot_event(snapshot: &LiveSnapshot) -> Event {
    // serde_json writes non-finite floats as null, so this only fails on a bug; the page still
    // gets an event it can show rather than a dead stream.
    let data = serde_json::to_string(snapshot).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("cannot encode the snapshot: {e}") }).to_string()
    });
    Event::default().event("snapshot").data(data)
}

/// A sample value: counts stay exact integers, measurements are floats.
enum Num {
    Int(u64),
    Float(f64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Num::Int(n) => write!(f, "{n}"),
            // The exposition spells these the Go way; Rust's `inf` would not parse.
            Num::Float(x) if x.is_nan() => f.write_str("NaN"),
            Num::Float(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Num::Float(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Builds the text exposition family by family, so HELP and TYPE come once, before the samples.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        self
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: Num) -> &mut Self {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{label}=\"{}\"", escape_label(text));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
        self
    }
}

/// Label values escape backslash, double quote and line feed; nothing else.
fn escape_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The Prometheus text exposition (version 0.0.4) of a snapshot.
///
/// Counters restart from zero when a new run begins (a bench's runs), which Prometheus reads
/// as a counter reset. Latency has no sum to make a valid `summary`, so its quantiles are a
/// gauge with a `quantile` label and the sample count a separate counter. Families with no
/// value yet (no target, no latency, no partitions) are left out rather than reported as 0.
pub fn prometheus(s: &LiveSnapshot) -> String {
    let mut out = Exposition(String::with_capacity(2048));
    out.family(
        "plumbline_run_info",
        "gauge",
        "The run being watched, named by its label; always 1.",
    )
    .sample(
        "plumbline_run_info",
        &[("label", &s.run.label)],
        Num::Int(1),
    );
    out.family(
        "plumbline_elapsed_seconds",
        "gauge",
        "Seconds since the command started.",
    )
    .sample("plumbline_elapsed_seconds", &[], Num::Float(s.elapsed_s));
    if let Some(total) = s.run.total {
        out.family(
            "plumbline_items_planned",
            "gauge",
            "Items the current run will take, when it is finite.",
        )
        .sample("plumbline_items_planned", &[], Num::Int(total));
    }
    if let Some(target) = s.run.target_per_s.filter(|t| t.is_finite()) {
        out.family(
            "plumbline_target_rate_per_second",
            "gauge",
            "Items per second the load is paced at (absent when unpaced).",
        )
        .sample("plumbline_target_rate_per_second", &[], Num::Float(target));
    }
    let counters: [(&str, &str, u64); 3] = [
        (
            "plumbline_items_in_total",
            "Items put in (sent, generated, routed) since the current run began.",
            s.items_in,
        ),
        (
            "plumbline_items_out_total",
            "Items out (delivered, received, acknowledged) since the current run began.",
            s.items_out,
        ),
        (
            "plumbline_late_sends_total",
            "Sends that started later than their deadline allowed, since the current run began.",
            s.late,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help)
            .sample(name, &[], Num::Int(value));
    }
    out.family(
        "plumbline_in_flight",
        "gauge",
        "Items in but not yet out (0 when nothing counts items in).",
    )
    .sample("plumbline_in_flight", &[], Num::Int(s.in_flight));
    let latest = s.recent.last();
    out.family(
        "plumbline_rate_in_per_second",
        "gauge",
        "Items in per second over the latest one-second tick (0 before the first tick).",
    )
    .sample(
        "plumbline_rate_in_per_second",
        &[],
        Num::Float(latest.map_or(0.0, |t| t.in_per_s)),
    );
    out.family(
        "plumbline_rate_out_per_second",
        "gauge",
        "Items out per second over the latest one-second tick (0 before the first tick).",
    )
    .sample(
        "plumbline_rate_out_per_second",
        &[],
        Num::Float(latest.map_or(0.0, |t| t.out_per_s)),
    );
    if s.latency_count > 0 {
        out.family(
            "plumbline_latency_seconds",
            "gauge",
            "Latency quantiles since the current run began, seconds.",
        )
        .sample(
            "plumbline_latency_seconds",
            &[("quantile", "0.5")],
            Num::Float(s.p50_s),
        )
        .sample(
            "plumbline_latency_seconds",
            &[("quantile", "0.99")],
            Num::Float(s.p99_s),
        );
    }
    out.family(
        "plumbline_latency_samples_total",
        "counter",
        "Latencies recorded since the current run began.",
    )
    .sample(
        "plumbline_latency_samples_total",
        &[],
        Num::Int(s.latency_count),
    );
    if !s.per_worker.is_empty() {
        out.family(
            "plumbline_worker_items_total",
            "counter",
            "Items handled by each worker since the current run began.",
        );
        for (worker, &items) in s.per_worker.iter().enumerate() {
            let worker = worker.to_string();
            out.sample(
                "plumbline_worker_items_total",
                &[("worker", &worker)],
                Num::Int(items),
            );
        }
    }
    let partitions = merge_partitions(&s.per_partition);
    if !partitions.is_empty() {
        out.family(
            "plumbline_partition_items_total",
            "counter",
            "Items per partition since the current run began.",
        );
        for (partition, items) in partitions {
            out.sample(
                "plumbline_partition_items_total",
                &[("partition", partition)],
                Num::Int(items),
            );
        }
    }
    out.0
}

/// Sums repeated partition labels, first-seen order: the same series twice is invalid.
fn merge_partitions(counts: &[(String, u64)]) -> Vec<(&str, u64)> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(counts.len());
    let mut merged: Vec<(&str, u64)> = Vec::with_capacity(counts.len());
    for (label, items) in counts {
        match index.get(label.as_str()) {
            Some(&i) => merged[i].1 = merged[i].1.saturating_add(*items),
            None => {
                index.insert(label, merged.len());
                merged.push((label, *items));
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_measure::RunInfo;

    fn empty() -> LiveSnapshot {
        Live::new().snapshot(1)
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline_only() {
        assert_eq!(escape_label("a\\b\"c\nd\té"), "a\\\\b\\\"c\\nd\té");
    }

    #[test]
    fn special_floats_are_spelled_the_exposition_way() {
        assert_eq!(Num::Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Num::Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Num::Float(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Num::Float(0.25).to_string(), "0.25");
        assert_eq!(Num::Int(u64::MAX).to_string(), "18446744073709551615");
    }

    #[test]
    fn families_without_a_value_are_left_out() {
        let text = prometheus(&empty());
        for absent in [
            "plumbline_target_rate_per_second",
            "plumbline_items_planned",
            "plumbline_latency_seconds",
            "plumbline_worker_items_total",
            "plumbline_partition_items_total",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        assert!(
            text.contains("\nplumbline_rate_out_per_second 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nplumbline_latency_samples_total 0\n"),
            "{text}"
        );
    }

    #[test]
    fn a_target_and_a_total_appear_when_the_run_has_them() {
        let mut s = empty();
        s.run = RunInfo {
            label: "r".into(),
            workers: 0,
            total: Some(500),
            target_per_s: Some(100.0),
        };
        let text = prometheus(&s);
        assert!(
            text.contains("\nplumbline_target_rate_per_second 100\n"),
            "{text}"
        );
        assert!(text.contains("\nplumbline_items_planned 500\n"), "{text}");
        s.run.target_per_s = Some(f64::NAN);
        assert!(!prometheus(&s).contains("plumbline_target_rate_per_second"));
    }

    #[test]
    fn repeated_partition_labels_make_one_series() {
        let mut s = empty();
        s.per_partition = vec![("p0".into(), 2), ("p1".into(), 1), ("p0".into(), 3)];
        let text = prometheus(&s);
        assert!(text.contains("plumbline_partition_items_total{partition=\"p0\"} 5\nplumbline_partition_items_total{partition=\"p1\"} 1\n"), "{text}");
    }
}
