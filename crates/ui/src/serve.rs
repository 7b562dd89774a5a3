//! The one connection loop of every server here (the live page, a cluster's `/metrics`): accepts
//! on a tokio listener and serves each connection with hyper's HTTP/1, under limits that
//! axum::serve does not set, until told to stop.
//!
//! A connection over the cap is closed at once (so idle peers cannot queue up behind the slots),
//! a request's headers are due within the header timeout (so a silent or trickling peer cannot
//! hold a slot), and each request carries its peer's address for the routes
//! ([`axum::extract::ConnectInfo`]). Routing, answers and authentication are the router's; this
//! loop knows nothing of paths.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::until_stopped;

/// How long connections get to close by themselves once the server stops, before the runtime
/// is dropped under them (a client that stopped reading must not hold up the command's exit).
const GRACE: Duration = Duration::from_millis(500);

/// What one server allows its peers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Connections served at once; more are closed as they come.
    pub connections: usize,
    /// How long a request's headers may take to arrive, counted from the connection or, on a
    /// kept-alive one, from the previous response.
    pub header_timeout: Duration,
}

/// Serves until the stop signal, then lets connections finish for [`GRACE`] at most (each is
/// asked to close once its response is out); the caller's runtime drops whatever is left.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let mut connections = JoinSet::new();
    let mut stop = stopped.clone();
    loop {
        let accepted = tokio::select! {
            () = until_stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // Out of file descriptors, say: wait for some to close rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (app, stopped) = (app.clone(), stopped.clone());
        connections.spawn(async move {
            connection(stream, peer, app, limits, stopped).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// One connection: its requests, answered by `app`, until the peer closes it, a header
/// timeout passes, or the server stops (then it closes after the response in hand).
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let app = app.layer(Extension(ConnectInfo(peer)));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    // An error is the peer's doing (it went away, sent garbage, took too long): nothing to
    // answer and nobody to tell, so the connection just ends.
    tokio::select! {
        _ = conn.as_mut() => {}
        () = until_stopped(&mut stopped) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
