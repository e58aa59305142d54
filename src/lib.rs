//! leadscore: a Kafka-native lead-scoring stream processor.
//!
//! It consumes contact interaction events, keeps a score per contact with exact time decay, thresholds
//! and lifecycle phases, and publishes score changes, threshold crossings and phase changes.
//!
//! # Layout
//!
//! The scoring core is pure (no clock, no I/O); everything else moves bytes around it.
//!
//! Core:
//! - [`event`]: the event model and its JSON and protobuf decoders, with typed errors per field; the
//!   mappings from Segment, CloudEvents, Snowplow, Debezium or any JSON shape; Schema Registry framing.
//! - [`rules`]: the rules file (TOML), validated with file:line:column errors and compiled to indices.
//! - [`scoring`]: the engine, `apply` and `on_timer`, with decay, thresholds, phases, explanations, the
//!   score over time for charts, outputs and the stored-state codec.
//! - [`accounts`]: account (ABM) scoring: an account's contacts as they last reported, exact aggregates
//!   over them at any time, and account thresholds with hysteresis.
//! - [`stream`]: one partition's order of events and decay timers, shared by the model and the runtime.
//! - [`leaderboard`]: the top contacts per group or total, from an index in RocksDB with time-invariant keys.
//! - [`offline`]: `leadscore score`, the offline reference model over JSON lines.
//! - [`replay`]: `leadscore replay`: what-if rescoring into shadow topics, and the diff report.
//! - [`generator`]: deterministic, realistic event streams for the demo, tests and benchmarks.
//! - [`hashing`]: stable name keys, event-id fingerprints and Kafka's key partitioner.
//! - [`proto`]: the generated `leadscore.v1` protobuf types.
//!
//! Shell:
//! - [`config`]: the `leadscore run` configuration file, environment overrides and secrets.
//! - [`store`]: byte-level state storage behind a trait: RocksDB, and in memory for tests.
//! - [`runtime`]: the processor: per-partition tasks, contact and account records, the internal merge and
//!   account topics, rebalances, readiness.
//! - [`kafka`]: publishing with delivery tracking, changelog restore, topic provisioning.
//! - [`schema_registry`]: schema ids of framed records, resolved against a Confluent-compatible registry.
//! - [`http`]: the contact, leaderboard, account, rules and what-if API, the web console (`/ui/`), health checks
//!   and Prometheus metrics.
//! - [`inspect`]: `leadscore inspect`: one contact read from a state directory.
//! - [`insights`]: the read models the API serves (leaderboard, rule statistics), updated per batch.
//! - [`rule_stats`]: rule firings and conversion attribution, counted per partition.
//! - [`telemetry`]: metric names and their descriptions.
//! - [`reload`]: hot rules reload: the rules in force, the file watcher and SIGHUP.
//! - [`app`]: `leadscore run`: wiring and shutdown.
//! - [`demo`]: `leadscore demo`: everything on an embedded broker with a live view.
//! - [`bench`]: `leadscore bench`: the end-to-end load harness next to a bare pipe, and `leadscore pipe`.
//!
//! The shell is the default `runtime` feature; without it the crate builds only the core and the
//! contact record codec (`runtime::record`), which is what the fuzz targets in `fuzz/` link against.

pub mod accounts;
#[cfg(feature = "runtime")]
pub mod app;
#[cfg(feature = "runtime")]
pub mod bench;
#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
pub mod demo;
pub mod event;
pub mod generator;
pub mod hashing;
#[cfg(feature = "runtime")]
pub mod http;
#[cfg(feature = "runtime")]
pub mod insights;
#[cfg(feature = "runtime")]
pub mod inspect;
#[cfg(feature = "runtime")]
pub mod kafka;
#[cfg(feature = "runtime")]
pub mod leaderboard;
pub mod offline;
pub mod proto;
#[cfg(feature = "runtime")]
pub mod reload;
#[cfg(feature = "runtime")]
pub mod replay;
pub mod rule_stats;
pub mod rules;
#[cfg(feature = "runtime")]
pub mod runtime;
/// Without the shell, only the runtime's contact record (the changelog value and its decoder).
#[cfg(not(feature = "runtime"))]
pub mod runtime {
    pub mod record;
}
#[cfg(feature = "runtime")]
pub mod schema_registry;
pub mod scoring;
#[cfg(feature = "runtime")]
pub mod store;
pub mod stream;
#[cfg(feature = "runtime")]
pub mod telemetry;
