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
//! [`Live::snapshot`] (once per request, or once a second per `/events` client) and
//! [`exposition::prometheus`] (once per scrape), and never touches the run's hot path. It does
//! not tick (the command's `Ticker` does), keep history beyond what `Live` keeps, write reports,
//! or fetch anything: the page's CSS and JS are embedded and work offline. The page does not
//! authenticate: bind 127.0.0.1 unless the network is trusted.
//!
//! Routes: `GET /` the page; `GET /events` Server-Sent Events, one event named `snapshot` whose
//! `data:` is the [`LiveSnapshot`] as one line of JSON (the latest [`RECENT`] ticks), sent on
//! connect and then every second; `GET /snapshot.json` the same JSON once; `GET /metrics` the
//! Prometheus text exposition (plumbline's one writer, [`exposition::prometheus`]). Anything
//! else is 404. [`serve_metrics`] serves `/metrics` alone, behind a bearer token, for a cluster
//! initializer's `--metrics`; both go through the one connection loop of `serve`.

mod metrics;
mod serve;

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use plumbline_measure::{exposition, Live, LiveSnapshot};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

pub use metrics::serve_metrics;
use serve::Limits;

/// The page: HTML with its CSS and JS inline, so one request draws it and nothing is fetched.
const PAGE: &str = include_str!("../assets/page.html");

/// Ticks sent to watchers: two minutes at one a second, enough for the page's charts.
pub const RECENT: usize = 120;

/// How often `/events` sends a snapshot; `Live` ticks once a second, faster would repeat it.
const PERIOD: Duration = Duration::from_secs(1);

/// A browser opens a few connections per tab; a request's headers are due within 10 s.
const PAGE_LIMITS: Limits = Limits {
    connections: 64,
    header_timeout: Duration::from_secs(10),
};

/// Why the live page cannot be served. Each message names the address as it was given.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("cannot serve the live page on {addr:?}: not a host:port address ({reason}); try 127.0.0.1:4000 or 0.0.0.0:4000")]
    BadAddress { addr: String, reason: String },
    #[error("cannot serve the live page on {addr}: address already in use (is another plumbline --ui running? pick another port or 127.0.0.1:0)")]
    InUse { addr: String },
    #[error("cannot serve the live page on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot start the {what} server for {addr}: {source}")]
    Start {
        what: &'static str,
        addr: String,
        source: io::Error,
    },
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
    start(listener, app, PAGE_LIMITS, "live page", (stop, stopped))
}

/// Serves `app` on `listener` on its own thread (a current-thread tokio runtime), through the
/// connection loop of `serve` with these limits, until the returned server is dropped.
/// Everything that can fail happens here, on the caller's thread, so the error is returned
/// rather than lost in the server thread.
fn start(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    what: &'static str,
    (stop, stopped): (watch::Sender<bool>, watch::Receiver<bool>),
) -> Result<UiServer, UiError> {
    let shown = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let fail = |source| UiError::Start {
        what,
        addr: shown.clone(),
        source,
    };
    listener.set_nonblocking(true).map_err(fail)?;
    let local = listener.local_addr().map_err(fail)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(fail)?;
    let listener = {
        let _in_runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(fail)?
    };
    let thread = std::thread::Builder::new()
        .name(what.replace(' ', "-"))
        .spawn(move || runtime.block_on(serve::run(listener, app, limits, stopped)))
        .map_err(fail)?;
    Ok(UiServer {
        addr: local,
        stop,
        thread: Some(thread),
    })
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

impl FromRef<AppState> for Arc<Live> {
    fn from_ref(state: &AppState) -> Self {
        state.live.clone()
    }
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

/// `GET /metrics`, wherever it is served: the one exposition of what `live` holds.
async fn metrics(State(live): State<Arc<Live>>) -> Response {
    (
        [(header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
        exposition::prometheus(&live),
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
