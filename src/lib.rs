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
//! - [`event`]: the event model and its JSON and protobuf decoders, with typed errors per field.
//! - [`rules`]: the rules file (TOML), validated with file:line:column errors and compiled to indices.
//! - [`scoring`]: the engine, `apply` and `on_timer`, with decay, thresholds, phases, explanations,
//!   outputs and the stored-state codec.
//! - [`stream`]: one partition's order of events and decay timers, shared by the model and the runtime.
//! - [`offline`]: `leadscore score`, the offline reference model over JSON lines.
//! - [`generator`]: deterministic, realistic event streams for the demo, tests and benchmarks.
//! - [`hashing`]: stable name keys, event-id fingerprints and Kafka's key partitioner.
//! - [`proto`]: the generated `leadscore.v1` protobuf types.
//!
//! Shell:
//! - [`config`]: the `leadscore run` configuration file, environment overrides and secrets.
//! - [`store`]: byte-level state storage behind a trait: RocksDB, and in memory for tests.
//! - [`runtime`]: the processor: per-partition tasks, contact records, rebalances, readiness.
//! - [`kafka`]: publishing with delivery tracking, changelog restore, topic provisioning.
//! - [`http`]: the contact API, health checks and Prometheus metrics.
//! - [`telemetry`]: metric names and their descriptions.
//! - [`app`]: `leadscore run`: wiring and shutdown.
//! - [`demo`]: `leadscore demo`: everything on an embedded broker with a live view.
//! - [`bench`]: `leadscore bench`: the end-to-end load harness next to a bare pipe, and `leadscore pipe`.

pub mod app;
pub mod bench;
pub mod config;
pub mod demo;
pub mod event;
pub mod generator;
pub mod hashing;
pub mod http;
pub mod kafka;
pub mod offline;
pub mod proto;
pub mod rules;
pub mod runtime;
pub mod scoring;
pub mod store;
pub mod stream;
pub mod telemetry;
