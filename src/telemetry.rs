//! Metric names, in one place, each registered with its unit and help text. Names follow
//! `leadscore_<noun>_<unit>[_total]`; label values come from small fixed sets, never a contact id.
//! Metrics are recorded per batch, not per event.

use std::io::IsTerminal;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use tracing_subscriber::EnvFilter;

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global tracing subscriber: level filter from `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    if let Err(err) = installed {
        eprintln!("logging is not set up: {err}");
    }
}

/// Events consumed, by `outcome` (scored, ignored, duplicate, replayed, dlq, forwarded) and `class`
/// (interaction, phase_change, manual_adjustment, erase, requalify, unknown, internal).
pub const EVENTS_TOTAL: &str = "leadscore_events_total";
/// Outputs published, by `kind` (score_changed, threshold_crossed, phase_changed, contact_erased).
pub const OUTPUTS_TOTAL: &str = "leadscore_outputs_total";
/// Records sent to the dead-letter topic, by `reason` (too_large, empty, malformed, missing_field, invalid_field, key, rejected).
pub const DLQ_TOTAL: &str = "leadscore_dlq_records_total";
/// Batches processed.
pub const BATCHES_TOTAL: &str = "leadscore_batches_total";
/// Time to score and write one batch.
pub const BATCH_SECONDS: &str = "leadscore_batch_duration_seconds";
/// Records per batch.
pub const BATCH_RECORDS: &str = "leadscore_batch_records";
/// Offsets committed.
pub const COMMITS_TOTAL: &str = "leadscore_commits_total";
/// Records sent and not yet acknowledged.
pub const IN_FLIGHT_RECORDS: &str = "leadscore_in_flight_records";
/// Input partitions assigned to this instance.
pub const ASSIGNED_PARTITIONS: &str = "leadscore_assigned_partitions";
/// Changelog records restored.
pub const RESTORED_RECORDS_TOTAL: &str = "leadscore_restore_records_total";
/// Partitions still restoring.
pub const RESTORING_PARTITIONS: &str = "leadscore_restoring_partitions";
/// Contacts with a pending decay timer.
pub const PENDING_TIMERS: &str = "leadscore_pending_timers";
/// Bytes the record cache holds (estimated).
pub const RECORD_CACHE_BYTES: &str = "leadscore_record_cache_bytes";
/// Decay timers fired by the ticker.
pub const TIMERS_FIRED_TOTAL: &str = "leadscore_timers_fired_total";
/// Rebalances seen, by `kind` (assign, revoke).
pub const REBALANCES_TOTAL: &str = "leadscore_rebalances_total";
/// Rules reloads, by `outcome` (applied, rejected).
pub const RULES_RELOADS_TOTAL: &str = "leadscore_rules_reloads_total";

/// Rule firings, by `rule` (rule ids are bounded by the rules file).
pub const RULE_FIRES_TOTAL: &str = "leadscore_rule_fires_total";
/// Points given by rules (absolute, after clamping, rounded per batch), by `rule`.
pub const RULE_POINTS_TOTAL: &str = "leadscore_rule_points_total";
/// Threshold crossings, by `threshold` and `direction` (up, down).
pub const THRESHOLD_CROSSINGS_TOTAL: &str = "leadscore_threshold_crossings_total";
/// Phase changes, by `from` and `to`.
pub const PHASE_CHANGES_TOTAL: &str = "leadscore_phase_changes_total";
/// Time from an event's timestamp to the hand-over of its outputs for publishing.
pub const EVENT_LATENCY_SECONDS: &str = "leadscore_event_latency_seconds";
/// Records behind the partition's end, by `topic` and `partition` (librdkafka statistics).
pub const CONSUMER_LAG_RECORDS: &str = "leadscore_consumer_lag_records";
/// Time to restore the partitions of an assignment from the changelog.
pub const RESTORE_SECONDS: &str = "leadscore_restore_duration_seconds";
/// RocksDB's estimate of the keys in a column family, by `cf`.
pub const ROCKSDB_ESTIMATED_KEYS: &str = "leadscore_rocksdb_estimated_keys";
/// RocksDB's estimate of live data, in bytes.
pub const ROCKSDB_LIVE_DATA_BYTES: &str = "leadscore_rocksdb_live_data_bytes";
/// Bytes held by RocksDB's block cache.
pub const ROCKSDB_BLOCK_CACHE_BYTES: &str = "leadscore_rocksdb_block_cache_bytes";
/// Ranked contacts (not disqualified) by `phase`, over the owned partitions.
pub const CONTACTS: &str = "leadscore_contacts";
/// 1 when ready to serve (restored, polling, no fatal error), else 0.
pub const READY: &str = "leadscore_ready";
/// 1 with the `version` of the binary and the `rules_version` in force; 0 for rules versions replaced.
pub const BUILD_INFO: &str = "leadscore_build_info";

/// Histogram buckets, in seconds, of [`BATCH_SECONDS`] and [`RESTORE_SECONDS`].
pub const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Histogram buckets, in seconds, of [`EVENT_LATENCY_SECONDS`]: from milliseconds to a day of backlog.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0];
/// Histogram buckets of [`BATCH_RECORDS`].
pub const RECORD_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// Marks `current` as the rules version in force in [`BUILD_INFO`], and `previous` (replaced by a reload)
/// as no longer in force.
pub fn set_rules_version(previous: Option<&str>, current: &str) {
    let version = env!("CARGO_PKG_VERSION");
    if let Some(previous) = previous {
        metrics::gauge!(BUILD_INFO, "version" => version, "rules_version" => previous.to_owned()).set(0.0);
    }
    metrics::gauge!(BUILD_INFO, "version" => version, "rules_version" => current.to_owned()).set(1.0);
}

/// Registers the unlabelled counters at 0, so rates and alerts see a series before the first increment.
pub fn register_zeroes() {
    for name in [BATCHES_TOTAL, COMMITS_TOTAL, RESTORED_RECORDS_TOTAL, TIMERS_FIRED_TOTAL] {
        metrics::counter!(name).absolute(0);
    }
}

/// Registers every metric with its unit and help text.
pub fn describe() {
    describe_counter!(EVENTS_TOTAL, Unit::Count, "Events consumed, by outcome and class.");
    describe_counter!(OUTPUTS_TOTAL, Unit::Count, "Outputs published, by kind.");
    describe_counter!(DLQ_TOTAL, Unit::Count, "Records sent to the dead-letter topic, by reason.");
    describe_counter!(BATCHES_TOTAL, Unit::Count, "Batches processed.");
    describe_histogram!(BATCH_SECONDS, Unit::Seconds, "Time to decode, score and write one batch.");
    describe_histogram!(BATCH_RECORDS, Unit::Count, "Input records per batch.");
    describe_counter!(
        COMMITS_TOTAL,
        Unit::Count,
        "Offset commits issued after every record of a batch was acknowledged."
    );
    describe_gauge!(IN_FLIGHT_RECORDS, Unit::Count, "Records sent and not yet acknowledged.");
    describe_gauge!(
        ASSIGNED_PARTITIONS,
        Unit::Count,
        "Input partitions assigned to this processing thread, with their tasks open."
    );
    describe_counter!(RESTORED_RECORDS_TOTAL, Unit::Count, "Changelog records restored.");
    describe_gauge!(RESTORING_PARTITIONS, Unit::Count, "Partitions still restoring from the changelog.");
    describe_gauge!(PENDING_TIMERS, Unit::Count, "Contacts with a pending decay timer.");
    describe_gauge!(RECORD_CACHE_BYTES, Unit::Bytes, "Decoded contact records held in memory, estimated.");
    describe_counter!(TIMERS_FIRED_TOTAL, Unit::Count, "Decay timers fired by the wall-clock ticker.");
    describe_counter!(REBALANCES_TOTAL, Unit::Count, "Consumer-group rebalances, by kind.");
    describe_counter!(RULE_FIRES_TOTAL, Unit::Count, "Rule firings, by rule.");
    describe_counter!(RULE_POINTS_TOTAL, Unit::Count, "Absolute points given by rules after clamping, by rule.");
    describe_counter!(THRESHOLD_CROSSINGS_TOTAL, Unit::Count, "Threshold crossings, by threshold and direction.");
    describe_counter!(PHASE_CHANGES_TOTAL, Unit::Count, "Phase changes, by from and to.");
    describe_histogram!(EVENT_LATENCY_SECONDS, Unit::Seconds, "Event timestamp to output hand-over for publishing.");
    describe_gauge!(CONSUMER_LAG_RECORDS, Unit::Count, "Consumer lag per input partition, from librdkafka statistics.");
    describe_histogram!(RESTORE_SECONDS, Unit::Seconds, "Time to restore one partition from the changelog.");
    describe_gauge!(ROCKSDB_ESTIMATED_KEYS, Unit::Count, "Estimated keys per RocksDB column family.");
    describe_gauge!(ROCKSDB_LIVE_DATA_BYTES, Unit::Bytes, "Estimated live data in RocksDB, memtables included.");
    describe_gauge!(ROCKSDB_BLOCK_CACHE_BYTES, Unit::Bytes, "Bytes held by the RocksDB block cache.");
    describe_gauge!(CONTACTS, Unit::Count, "Ranked (not disqualified) contacts of the owned partitions, by phase.");
    describe_gauge!(READY, Unit::Count, "1 when the instance is ready to serve, else 0.");
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "1 with the binary version and the rules version in force; 0 for rules versions a reload replaced."
    );
    describe_counter!(
        RULES_RELOADS_TOTAL,
        Unit::Count,
        "Rules file reloads, by outcome: applied, or rejected because the new file is invalid."
    );
}
