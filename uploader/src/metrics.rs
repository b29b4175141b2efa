//! Prometheus metrics and the `/healthz` + `/metrics` endpoints.
//!
//! Labels carry providers, error types, stages and statuses only: never URLs, keys or
//! anything else that could hold a secret.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Provider label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    /// Provider.
    pub provider: String,
}

/// Failure labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Provider.
    pub provider: String,
    /// Error type.
    pub error_type: String,
    /// `download` or `upload`.
    pub stage: String,
}

/// Label with one value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// State or status.
    pub state: String,
}

/// Everything the uploader measures.
pub struct Metrics {
    registry: Registry,
    /// Attempts started, by provider.
    pub attempts: Family<ProviderLabel, Counter>,
    /// Images uploaded, by provider.
    pub successes: Family<ProviderLabel, Counter>,
    /// Failed attempts, by provider, error type and stage.
    pub failures: Family<FailureLabels, Counter>,
    /// Write-back results, by status (`uploaded`, `failed`, `superseded`, `stale`...).
    pub write_backs: Family<StateLabel, Counter>,
    /// Images being downloaded or uploaded now.
    pub in_flight: Gauge,
    /// Images in the queue, by state (polled).
    pub queue_depth: Family<StateLabel, Gauge>,
    /// 1 for each provider currently paused.
    pub paused: Family<ProviderLabel, Gauge>,
    /// Download durations.
    pub download_seconds: Histogram,
    /// ImageKit upload durations.
    pub upload_seconds: Histogram,
    /// Images given back unattempted, by reason (`paused`, `outage`, `rate_limited`,
    /// `shutdown`, `service`, `refused`).
    pub released: Family<StateLabel, Counter>,
    /// Outcomes the database refused even on their own (logged; never retried forever).
    pub write_back_refused: Counter,
    last_db_ok: AtomicI64,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A registry being filled: each metric is registered as it is made.
struct Registering(Registry);

impl Registering {
    /// A new metric, registered as `name` with `help`.
    fn add<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M {
        self.add_made(name, help, M::default())
    }

    /// `metric`, registered as `name` with `help` (the registry holds a clone, which
    /// shares its values).
    fn add_made<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }
}

/// Buckets of 10 ms to about 80 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

impl Metrics {
    /// A fresh registry.
    pub fn new() -> Self {
        let mut r = Registering(Registry::with_prefix("venue_image_uploader"));
        Metrics {
            attempts: r.add("attempts", "Attempts started"),
            successes: r.add("successes", "Images uploaded"),
            failures: r.add("failures", "Failed attempts"),
            write_backs: r.add("write_backs", "Write-back results by status"),
            in_flight: r.add("in_flight", "Images being processed"),
            queue_depth: r.add("queue_depth", "Images in the retry queue by state"),
            paused: r.add("provider_paused", "1 while a provider is paused"),
            download_seconds: r.add_made(
                "download_seconds",
                "Provider download time",
                seconds_histogram(),
            ),
            upload_seconds: r.add_made(
                "upload_seconds",
                "ImageKit upload time",
                seconds_histogram(),
            ),
            released: r.add("released", "Images given back unattempted, by reason"),
            write_back_refused: r.add(
                "write_back_refused",
                "Outcomes the database refused on their own",
            ),
            last_db_ok: AtomicI64::new(0),
            registry: r.0,
        }
    }

    /// Notes a successful database round trip (for `/healthz`).
    pub fn db_ok(&self) {
        self.last_db_ok.store(unix_now(), Ordering::Relaxed);
    }

    /// Seconds since the last successful database round trip.
    pub fn db_age(&self) -> i64 {
        unix_now() - self.last_db_ok.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

async fn healthz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let age = m.db_age();
    if age <= 60 {
        (
            StatusCode::OK,
            format!("ok (database reached {age}s ago)\n"),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database not reached for {age}s\n"),
        )
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}

/// Binds `addr` for `/healthz` and `/metrics`; returns the bound address and the
/// server, which serves until `shutdown` fires (the caller spawns it and owns the task).
pub async fn bind(
    addr: SocketAddr,
    m: Arc<Metrics>,
    shutdown: crate::shutdown::Shutdown,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(m);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let server = async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.triggered().await })
            .await;
    };
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new();
        m.failures
            .get_or_create(&FailureLabels {
                provider: "here".into(),
                error_type: "rate_limited".into(),
                stage: "download".into(),
            })
            .inc();
        let text = m.render();
        assert!(
            text.contains(r#"venue_image_uploader_failures_total{provider="here",error_type="rate_limited",stage="download"} 1"#),
            "{text}"
        );
    }
}
