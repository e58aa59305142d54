//! What a batch gathers as it scores its records: the records to publish (outputs, dead letters and
//! internal records), with the counts and insight of what happened to each record.

use super::{
    BatchCounts, DEAD_LETTER_HEAD, DEAD_LETTER_HEADER_OVERHEAD, DEAD_LETTERED, DUPLICATE, Destination, IGNORED,
    InputRecord, InternalTopic, Publish, REPLAYED, SCORED, TaskSettings, WireFormat,
};
use crate::insights::{BatchInsight, UNKNOWN_CLASS};
use crate::rules::Rules;
use crate::runtime::batch_store::BatchStore;
use crate::runtime::internal::{InternalRecord, MAX_HOPS, Origin, Work};
use crate::runtime::record::Route;
use crate::scoring::{Outcome, Output, OutputBody};
use crate::stream::Processed;

/// What a batch gathers as it goes.
#[derive(Default)]
pub(super) struct Gathered {
    pub publish: Vec<Publish>,
    pub counts: BatchCounts,
    pub insight: BatchInsight,
    /// With account rules: the id and time of the event the current record applies, which names the
    /// account updates of the contacts it changes.
    pub cause: Option<(String, i64)>,
}

/// The record being scored, and how its effects are stamped and named.
pub(super) struct Scoring<'r> {
    pub record: &'r InputRecord,
    /// The key and offset the changed contact's record stamps as applied.
    pub stamp: (u32, i64),
    /// The record as the origin of the internal records it writes.
    pub here: Origin,
    /// Aliases followed to get here.
    pub hops: u32,
}

impl Gathered {
    /// Notes the change the current record makes (`id`, at `at_ms`), which names its account updates.
    pub(super) fn caused_by(&mut self, rules: &Rules, id: &str, at_ms: i64) {
        if rules.accounts.is_some() {
            self.cause = Some((id.to_owned(), at_ms));
        }
    }

    /// Reports the contacts the current record changed to their accounts, named after its event.
    pub(super) fn report_cause(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        batch: &mut BatchStore,
        here: Origin,
    ) {
        if let Some((id, at_ms)) = self.cause.take() {
            self.report_accounts(rules, settings, batch, here, &id, at_ms);
        }
    }

    /// Counts a record's outcome (an index in [`crate::insights::OUTCOMES`]) for its class of event.
    pub(super) fn tally(&mut self, outcome: usize, class: usize) {
        let counts = &mut self.counts;
        match outcome {
            SCORED => counts.scored += 1,
            IGNORED => counts.ignored += 1,
            DUPLICATE => counts.duplicate += 1,
            REPLAYED => counts.replayed += 1,
            DEAD_LETTERED => counts.dead_lettered += 1,
            _ => {}
        }
        self.insight.count_event(outcome, class);
    }

    pub(super) fn dead_letter(
        &mut self,
        settings: &TaskSettings,
        partition: i32,
        record: &InputRecord,
        kind: &str,
        reason: &str,
    ) {
        self.tally(DEAD_LETTERED, UNKNOWN_CLASS);
        self.insight.count_dead_letter(kind);
        self.publish.push(dead_letter(settings, partition, record, reason));
    }

    /// Publishes an internal merge record to the partition of the contact `key`.
    pub(super) fn internal(&mut self, rules: &Rules, settings: &TaskSettings, key: &str, record: &InternalRecord) {
        self.publish_internal(settings, InternalTopic::Merge, key, record.encode(rules));
    }

    /// Publishes `payload` to an internal topic, on the partition that owns `key`.
    pub(super) fn publish_internal(
        &mut self,
        settings: &TaskSettings,
        topic: InternalTopic,
        key: &str,
        payload: Vec<u8>,
    ) {
        let partition = crate::hashing::partition_for_key(key.as_bytes(), settings.partitions.max(1)) as i32;
        self.publish.push(Publish {
            destination: Destination::Internal(topic, partition),
            key: key.as_bytes().to_vec(),
            payload: Some(payload),
            headers: Vec::new(),
        });
    }

    /// Hands `work` on to `survivor`, one alias further; a chain longer than [`MAX_HOPS`] is a cycle.
    pub(super) fn follow(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        partition: i32,
        scoring: &Scoring,
        survivor: &str,
        work: Work,
    ) {
        if scoring.hops >= MAX_HOPS {
            self.dead_letter(settings, partition, scoring.record, "merge", &crate::scoring::alias_cycle(survivor));
            return;
        }
        let record = InternalRecord { origin: scoring.here, hops: scoring.hops + 1, work };
        self.internal(rules, settings, survivor, &record);
    }

    /// An erased contact's aliases go with it, and so do the contacts it asked to merge in whose answer
    /// has not arrived: `contact_erased` lists them among its aliases, and their answers will be dropped.
    pub(super) fn erasures(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        batch: &mut BatchStore,
        here: Origin,
        outputs: &mut [Output],
    ) {
        for output in outputs {
            let OutputBody::ContactErased(erased) = &mut output.body else { continue };
            for awaited in batch.refuse_answers(&output.contact) {
                if !erased.aliases.contains(&awaited) {
                    erased.aliases.push(awaited);
                }
            }
            let family = erased.family(&output.contact);
            for alias in &erased.aliases {
                let work = Work::Forget { alias: alias.clone(), erased: family.clone() };
                self.internal(rules, settings, alias, &InternalRecord { origin: here, hops: 0, work });
            }
        }
    }

    /// Counts what scoring did to `contact`, stamps it if it changed, and routes its outputs.
    #[allow(clippy::too_many_arguments)] // the parts of one scored record
    pub(super) fn outcome(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        partition: i32,
        batch: &mut BatchStore,
        contact: &str,
        scoring: &Scoring,
        processed: Processed,
        event_ts_ms: Option<i64>,
        class: usize,
    ) {
        let outcome = match &processed.outcome {
            Outcome::Scored => {
                batch.mark_applied(contact, scoring.stamp.0, scoring.stamp.1);
                SCORED
            }
            Outcome::Ignored => IGNORED,
            Outcome::Duplicate => DUPLICATE,
            Outcome::Rejected(reason) => {
                self.insight.count_dead_letter("rejected");
                self.publish.push(dead_letter(settings, partition, scoring.record, reason));
                DEAD_LETTERED
            }
        };
        self.tally(outcome, class);
        let mut processed = processed;
        self.erasures(rules, settings, batch, scoring.here, &mut processed.outputs);
        self.insight.add_attribution(processed.attribution);
        self.insight.add_outputs(&processed.outputs, event_ts_ms);
        self.counts.outputs += processed.outputs.len() as u64;
        self.publish.extend(route(settings, processed.outputs));
    }
}

/// Encodes outputs for their topics.
pub(super) fn route(settings: &TaskSettings, outputs: Vec<Output>) -> Vec<Publish> {
    outputs
        .into_iter()
        .map(|output| {
            let payload = match settings.output_format {
                WireFormat::Json => output.to_json(),
                WireFormat::Protobuf => output.to_protobuf(),
            };
            Publish {
                destination: Destination::Output(Route::of(&output.body)),
                key: output.contact.into_bytes(),
                payload: Some(payload),
                headers: Vec::new(),
            }
        })
        .collect()
}

pub(super) fn dead_letter(settings: &TaskSettings, partition: i32, record: &InputRecord, reason: &str) -> Publish {
    let mut headers = record.headers.clone();
    let mut cut = reason.len().min(crate::event::MAX_FIELD_BYTES);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    headers.push(("leadscore.error".to_owned(), reason.as_bytes()[..cut].to_vec()));
    headers.push(("leadscore.source.topic".to_owned(), settings.inputs[record.topic].as_bytes().to_vec()));
    headers.push(("leadscore.source.partition".to_owned(), partition.to_string().into_bytes()));
    headers.push(("leadscore.source.offset".to_owned(), record.offset.to_string().into_bytes()));
    // A record too large to republish whole keeps its head, with its full size, and its headers if they
    // fit: a dead letter that cannot be written would stop the partition it is meant to keep going.
    let mut payload = record.payload.clone();
    let header_bytes = |headers: &[(String, Vec<u8>)]| -> usize {
        headers.iter().map(|(name, value)| name.len() + value.len() + DEAD_LETTER_HEADER_OVERHEAD).sum()
    };
    let key_bytes = record.key.as_ref().map_or(0, Vec::len);
    let whole = key_bytes + header_bytes(&headers) + payload.as_ref().map_or(0, Vec::len);
    if let Some(bytes) = payload.as_mut().filter(|_| whole > settings.max_record_bytes) {
        headers.push(("leadscore.truncated.from".to_owned(), bytes.len().to_string().into_bytes()));
        let room = settings.max_record_bytes.saturating_sub(key_bytes + header_bytes(&headers));
        bytes.truncate(DEAD_LETTER_HEAD.min(room));
    }
    if key_bytes + header_bytes(&headers) > settings.max_record_bytes {
        headers.retain(|(name, _)| name.starts_with("leadscore."));
    }
    Publish { destination: Destination::DeadLetter, key: record.key.clone().unwrap_or_default(), payload, headers }
}
