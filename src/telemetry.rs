//! Metric names, in one place, each registered with its unit and help text. Names follow
//! `leadscore_<noun>_<unit>[_total]`; label values come from small fixed sets, never a contact id.
//! Metrics are recorded per batch, not per event.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Events consumed, by `outcome` (scored, ignored, duplicate, replayed, dlq).
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
/// Decay timers fired by the ticker.
pub const TIMERS_FIRED_TOTAL: &str = "leadscore_timers_fired_total";
/// Rebalances seen, by `kind` (assign, revoke).
pub const REBALANCES_TOTAL: &str = "leadscore_rebalances_total";
/// Outputs re-sent after a restart or rebalance.
pub const RESENT_OUTPUTS_TOTAL: &str = "leadscore_resent_outputs_total";
/// Rules reloads, by `outcome` (applied, rejected).
pub const RULES_RELOADS_TOTAL: &str = "leadscore_rules_reloads_total";
/// 1 for the rules version the processor scores with, 0 for versions it scored with before, by
/// `rules_version` (one series per version loaded since start-up).
pub const RULES_INFO: &str = "leadscore_rules_info";

/// Registers every metric with its unit and help text.
pub fn describe() {
    describe_counter!(EVENTS_TOTAL, Unit::Count, "Events consumed, by outcome.");
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
    describe_gauge!(ASSIGNED_PARTITIONS, Unit::Count, "Input partitions assigned to this instance.");
    describe_counter!(RESTORED_RECORDS_TOTAL, Unit::Count, "Changelog records restored.");
    describe_gauge!(RESTORING_PARTITIONS, Unit::Count, "Partitions still restoring from the changelog.");
    describe_gauge!(PENDING_TIMERS, Unit::Count, "Contacts with a pending decay timer.");
    describe_counter!(TIMERS_FIRED_TOTAL, Unit::Count, "Decay timers fired by the wall-clock ticker.");
    describe_counter!(REBALANCES_TOTAL, Unit::Count, "Consumer-group rebalances, by kind.");
    describe_counter!(RESENT_OUTPUTS_TOTAL, Unit::Count, "Outputs re-sent because their input was not committed.");
    describe_counter!(
        RULES_RELOADS_TOTAL,
        Unit::Count,
        "Rules file reloads, by outcome: applied, or rejected because the new file is invalid."
    );
    describe_gauge!(RULES_INFO, Unit::Count, "1 for the active rules version, 0 for versions replaced since start-up.");
}
