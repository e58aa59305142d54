//! The Prometheus recorder, and the gauges that are sampled rather than counted per batch: RocksDB
//! estimates, contacts by phase and readiness, refreshed every few seconds; the build info, set once.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

use crate::app::Instance;
use crate::telemetry;

/// How often sampled gauges are refreshed.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed once), with histogram buckets.
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                (telemetry::BATCH_SECONDS, telemetry::DURATION_BUCKETS),
                (telemetry::RESTORE_SECONDS, telemetry::DURATION_BUCKETS),
                (telemetry::EVENT_LATENCY_SECONDS, telemetry::LATENCY_BUCKETS),
                (telemetry::BATCH_RECORDS, telemetry::RECORD_BUCKETS),
            ];
            let mut builder = PrometheusBuilder::new();
            for (name, values) in buckets {
                builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), values).ok()?;
            }
            let handle = builder.install_recorder().ok();
            telemetry::describe();
            telemetry::register_zeroes();
            handle
        })
        .as_ref()
}

/// Sets the sampled gauges once now.
pub async fn refresh(instance: &Arc<Instance>) {
    gauge!(telemetry::READY).set(if instance.status.ready() { 1.0 } else { 0.0 });
    let rules = instance.rules.get();
    let counting = instance.clone();
    let counted = rules.clone();
    let counts = tokio::task::spawn_blocking(move || counting.insights.leaderboard.count_by_phase(&counted)).await;
    for (phase, count) in rules.phases.iter().zip(counts.unwrap_or_default()) {
        gauge!(telemetry::CONTACTS, "phase" => phase.name.clone()).set(count as f64);
    }
    let store = instance.store.clone();
    match tokio::task::spawn_blocking(move || store.estimates()).await {
        Ok(Ok(estimates)) => {
            for (cf, keys) in estimates.keys {
                gauge!(telemetry::ROCKSDB_ESTIMATED_KEYS, "cf" => cf).set(keys as f64);
            }
            gauge!(telemetry::ROCKSDB_LIVE_DATA_BYTES).set(estimates.live_bytes as f64);
            gauge!(telemetry::ROCKSDB_BLOCK_CACHE_BYTES).set(estimates.block_cache_bytes as f64);
        }
        Ok(Err(err)) => tracing::warn!(error = %err, "cannot read the state store's estimates"),
        Err(_) => tracing::warn!("reading the state store's estimates stopped abnormally"),
    }
}

/// Refreshes the sampled gauges every [`REFRESH`] until aborted.
pub fn spawn_refresher(instance: Arc<Instance>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(REFRESH);
        loop {
            ticker.tick().await;
            refresh(&instance).await;
        }
    })
}
