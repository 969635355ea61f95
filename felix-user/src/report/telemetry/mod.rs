//! felix's own HTTP endpoints: Prometheus metrics (`/metrics`) and health (`/liveness`,
//! `/readiness`), each on its own configurable address (Calico's defaults: metrics on 9091,
//! health on 9099). Everything served is read when asked (the agent's last report, and the
//! node's pinned maps in BPF mode) except the maps' fill, which a walk every 10 s keeps.

pub mod health;
pub mod metrics;

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::{net::TcpListener, sync::watch};
use tracing::{debug, error, info, warn};

use crate::{dataplane::pins::NodePaths, report::status::Report};

pub use health::Heartbeat;

/// What the endpoints read.
#[derive(Clone)]
pub struct Sources {
    /// The node whose pinned maps `/metrics` reads; `None` in iptables mode (no maps).
    pub maps: Option<Arc<NodePaths>>,
    pub report: watch::Receiver<Report>,
    pub heartbeat: Heartbeat,
    /// The maps' fill as last walked (BPF mode), kept current by [`serve`].
    pub fill: metrics::FillCache,
}

/// Errors starting a listener.
#[derive(Debug, thiserror::Error)]
#[error("listen on {address} for {what}: {source}")]
pub struct ListenError {
    pub address: SocketAddr,
    pub what: &'static str,
    #[source]
    pub source: std::io::Error,
}

async fn metrics_page(State(sources): State<Sources>) -> impl IntoResponse {
    let report = sources.report.borrow().clone();
    let paths = sources.maps.clone();
    let fill = sources.fill.clone();
    // Reading maps is blocking syscalls: off the async threads.
    let text =
        tokio::task::spawn_blocking(move || metrics::render(paths.as_deref(), &fill, &report))
            .await;
    match text {
        Ok(Ok(body)) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn liveness(State(sources): State<Sources>) -> impl IntoResponse {
    health::respond(health::liveness(&sources.heartbeat))
}

async fn readiness(State(sources): State<Sources>) -> impl IntoResponse {
    health::respond(health::readiness(&sources.report.borrow()))
}

fn router(sources: Sources, with_metrics: bool) -> Router {
    let router = Router::new()
        .route("/liveness", get(liveness))
        .route("/readiness", get(readiness));
    let router = if with_metrics {
        router.route("/metrics", get(metrics_page))
    } else {
        router
    };
    router.with_state(sources)
}

/// Binds the metrics and health addresses (either may be `None`: off) and serves them until
/// the returned tasks are aborted. Binding happens here so that a taken port fails felix's
/// start with a clear message.
pub async fn serve(
    metrics: Option<SocketAddr>,
    health: Option<SocketAddr>,
    sources: Sources,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ListenError> {
    let mut tasks = Vec::new();
    for (address, what, with_metrics) in [(metrics, "metrics", true), (health, "health", false)] {
        let Some(address) = address else { continue };
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ListenError {
                address,
                what,
                source,
            })?;
        info!(%address, what, "serving");
        let app = router(sources.clone(), with_metrics);
        tasks.push(tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                error!(%error, what, "HTTP server stopped");
            }
        }));
        if with_metrics && let Some(paths) = sources.maps.clone() {
            tasks.push(tokio::spawn(walk_fill(paths, sources.fill.clone())));
        }
    }
    Ok(tasks)
}

/// Walks the maps for [`metrics::FillCache`] every [`metrics::FILL_WALK_INTERVAL`], off the
/// request path; a failed walk keeps the previous figures.
async fn walk_fill(paths: Arc<NodePaths>, fill: metrics::FillCache) {
    let mut tick = tokio::time::interval(metrics::FILL_WALK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (paths, fill) = (paths.clone(), fill.clone());
        match tokio::task::spawn_blocking(move || fill.walk(&paths)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(%error, "map fill walk failed; keeping the last figures"),
            Err(error) => warn!(%error, "map fill walk stopped"),
        }
    }
}
