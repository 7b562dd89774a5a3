//! A cluster initializer's `--metrics`: `GET /metrics` alone (the same exposition and handler as
//! the live page's), behind the cluster's token. Anything else is 404.
//!
//! Where the cluster has a token, a scraper that is not on this host must present it as
//! `Authorization: Bearer TOKEN` (Prometheus: `authorization: { credentials_file: PATH }`),
//! compared in constant time; others are answered 401 and logged with their address. At most
//! [`LIMITS`] connections at once, each with its request due within two seconds. This module
//! binds nothing: the initializer binds the listener once protected mode allowed it.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use plumbline_core::secret::admits;
use plumbline_measure::Live;
use tokio::sync::watch;

use crate::serve::Limits;
use crate::{start, UiError, UiServer};

/// A few scrapers at once; a request is due within 2 s of its connection.
const LIMITS: Limits = Limits {
    connections: 8,
    header_timeout: Duration::from_secs(2),
};

/// Serves `GET /metrics`, the exposition of `live`, on `listener` (already bound) until the
/// returned server is dropped. `token`: what a scraper beyond loopback must present.
pub fn serve_metrics(
    listener: TcpListener,
    live: Arc<Live>,
    token: Option<String>,
) -> Result<UiServer, UiError> {
    let app = Router::new()
        .route("/metrics", get(crate::metrics))
        .route_layer(middleware::from_fn_with_state(Arc::new(token), guard))
        .with_state(live);
    start(listener, app, LIMITS, "metrics", watch::channel(false))
}

/// Lets a request through when it comes from this host or carries the token.
async fn guard(
    State(token): State<Arc<Option<String>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let local = peer.ip().to_canonical().is_loopback();
    if local || admits(token.as_deref(), bearer(request.headers())) {
        return next.run(request).await;
    }
    tracing::warn!("refused a metrics scrape from {peer}: wrong or missing bearer token");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
    )
        .into_response()
}

/// The token of a request's `Authorization: Bearer TOKEN` header, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    value.parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_bearer_token_is_read_from_its_header() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer s3cret")])),
            Some("s3cret")
        );
    }

    #[test]
    fn no_header_or_another_scheme_is_no_token() {
        assert_eq!(bearer(&headers(&[("host", "x")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Basic dTpw")])), None);
    }
}
