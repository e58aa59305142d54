//! The internal merge topic's records, as the task that owns their key handles them: a forwarded event
//! is scored, a merge request turns the merged contact into an alias and sends its state on, and a
//! transferred state is merged into the survivor (or passed on, if the survivor was merged too), and an
//! alias of an erased contact is forgotten.

use super::{BatchStore, Gathered, InputRecord, Scorer, Scoring, Standing, TaskError, TaskSettings};
use crate::event::Event;
use crate::insights::event_class;
use crate::rules::Rules;
use crate::runtime::internal::{InternalRecord, Origin, Work};
use crate::scoring::ContactState;

impl Scorer<'_> {
    pub(super) fn process_internal(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        batch: &mut BatchStore,
        record: &InputRecord,
        here: Origin,
        out: &mut Gathered,
    ) -> Result<(), TaskError> {
        let payload = record.payload.as_deref().unwrap_or_default();
        let internal = match InternalRecord::decode(rules, payload, &settings.limits) {
            Ok(internal) => internal,
            Err(reason) => {
                out.dead_letter(settings, self.partition, record, "merge", &reason);
                return Ok(());
            }
        };
        let scoring =
            Scoring { record, stamp: (internal.origin.stamp_key(), internal.origin.offset), here, hops: internal.hops };
        match internal.work {
            Work::Forward(event) => self.score_event(rules, settings, batch, event, &scoring, out),
            Work::Request(event) => self.release_merged(rules, settings, batch, event, &scoring, out),
            Work::Transfer { event, merged } => {
                self.merge_transfer(rules, settings, batch, event, *merged, &scoring, out)
            }
            Work::Forget { alias, erased } => {
                let forgotten = match batch.standing(&alias, scoring.stamp)? {
                    Standing::MergedInto(into) if erased.contains(&into) => {
                        let topic = TaskSettings::topic_key(&settings.inputs[record.topic]);
                        batch.forget_alias(&alias, topic, record.offset)?;
                        super::SCORED
                    }
                    // A copy sent again, or an id merged into another contact since.
                    _ => super::IGNORED,
                };
                out.tally(forgotten, crate::insights::UNKNOWN_CLASS);
                Ok(())
            }
        }
    }

    /// The merged contact of a merge event becomes an alias of the event's contact, and its state, if it
    /// has one, goes there. A contact already merged stays with the contact it was merged into first.
    fn release_merged(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        batch: &mut BatchStore,
        event: Event,
        scoring: &Scoring,
        out: &mut Gathered,
    ) -> Result<(), TaskError> {
        let class = event_class(&event.kind);
        let Some(merged) = rules.merged_contact(&event).map(str::to_owned) else {
            // The rules no longer merge on this event type.
            out.tally(super::IGNORED, class);
            return Ok(());
        };
        match batch.standing(&merged, scoring.stamp)? {
            Standing::MergedInto(_) => {
                out.tally(super::IGNORED, class);
                return Ok(());
            }
            Standing::Applied => {
                out.tally(super::REPLAYED, class);
                return Ok(());
            }
            Standing::Open => {}
        }
        let state = self.stream.release(batch, &merged);
        batch.check()?;
        batch.set_merged_into(&merged, &event.contact)?;
        batch.mark_applied(&merged, scoring.stamp.0, scoring.stamp.1);
        out.tally(super::SCORED, class);
        if let Some(state) = state {
            let survivor = event.contact.clone();
            let record = InternalRecord {
                origin: scoring.here,
                hops: 0,
                work: Work::Transfer { event, merged: Box::new(state) },
            };
            out.internal(rules, settings, &survivor, &record);
        }
        Ok(())
    }

    /// Merges a merged contact's state into the survivor, or passes it on to the contact the survivor was
    /// itself merged into.
    #[allow(clippy::too_many_arguments)] // the parts of one internal record
    fn merge_transfer(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        batch: &mut BatchStore,
        event: Event,
        merged: ContactState,
        scoring: &Scoring,
        out: &mut Gathered,
    ) -> Result<(), TaskError> {
        let class = event_class(&event.kind);
        match batch.standing(&event.contact, scoring.stamp)? {
            Standing::MergedInto(next) => {
                let work = Work::Transfer { event: Event { contact: next.clone(), ..event }, merged: Box::new(merged) };
                out.follow(rules, settings, self.partition, scoring, &next, work);
                out.tally(super::FORWARDED, class);
                return Ok(());
            }
            Standing::Applied => {
                out.tally(super::REPLAYED, class);
                return Ok(());
            }
            Standing::Open => {}
        }
        let merge = crate::scoring::merge_event(&event);
        let processed = self.stream.merge(rules, batch, merged, &merge);
        batch.check()?;
        out.outcome(
            rules,
            settings,
            self.partition,
            batch,
            &merge.contact,
            scoring,
            processed,
            Some(merge.ts_ms),
            class,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Destination, PartitionTask, Publish, WireFormat};
    use super::*;
    use crate::event::input::InputDecoder;
    use crate::event::{AttrValue, DecodeLimits, json};
    use crate::runtime::record::StoredContact;
    use crate::runtime::record_cache::CacheBudget;
    use crate::store::MemoryStore;
    use crate::stream::TimerClock;

    const RULES: &str = r#"
[[groups]]
name = "engagement"
[[phases]]
name = "lead"
[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 10
"#;

    fn settings() -> TaskSettings {
        TaskSettings {
            inputs: vec!["events".into(), "merges".into()],
            decoders: [InputDecoder::Json].into(),
            output_format: WireFormat::Json,
            limits: DecodeLimits::default(),
            max_record_bytes: 1 << 20,
            clock: TimerClock::StreamTime,
            record_cache: CacheBudget::default(),
            registry: None,
            internal: Some(1),
            partitions: 1,
        }
    }

    fn event(id: &str, contact: &str, kind: &str, merged: Option<&str>) -> Event {
        Event {
            id: id.into(),
            contact: contact.into(),
            kind: kind.into(),
            ts_ms: 1_772_366_400_000,
            item: None,
            attrs: merged.map(|merged| ("merged".to_owned(), AttrValue::Text(merged.into()))).into_iter().collect(),
            adjustment: None,
            phase: None,
        }
    }

    fn input(offset: i64, event: &Event) -> InputRecord {
        let key = Some(event.contact.clone().into_bytes());
        InputRecord { topic: 0, offset, key, payload: Some(json::encode(event)), headers: Vec::new() }
    }

    /// The internal records of a batch, as the internal topic hands them back from `first_offset` on.
    fn internal(published: &[Publish], first_offset: i64) -> Vec<InputRecord> {
        published
            .iter()
            .filter(|record| matches!(record.destination, Destination::Internal(_)))
            .zip(first_offset..)
            .map(|(record, offset)| InputRecord {
                topic: 1,
                offset,
                key: Some(record.key.clone()),
                payload: record.payload.clone(),
                headers: Vec::new(),
            })
            .collect()
    }

    /// A replay of uncommitted input sends its internal records again, at new offsets of the internal
    /// topic but with their origin: each is applied once, so a state is never merged in twice.
    #[test]
    fn a_copy_of_an_internal_record_is_applied_once() {
        let rules = Rules::parse(RULES, Path::new("merge.toml")).unwrap_or_else(|err| panic!("{err}"));
        let (settings, store) = (settings(), MemoryStore::new());
        let mut task =
            PartitionTask::open(0, &store, &settings, vec![None, None]).unwrap_or_else(|err| panic!("{err}"));
        let mut process = |records: &[InputRecord]| {
            task.process(&rules, &store, &settings, records).unwrap_or_else(|err| panic!("{err}"))
        };
        let scored = process(&[
            input(0, &event("a-1", "anonymous", "page_visit", None)),
            input(1, &event("k-1", "known", "page_visit", None)),
            input(2, &event("m-1", "known", "merge", Some("anonymous"))),
        ]);
        let request = internal(&scored.publish, 0);
        assert_eq!(request.len(), 1);

        // The request, and its copy.
        let copy = InputRecord { offset: 1, ..request[0].clone() };
        let released = process(&[request[0].clone(), copy]);
        assert_eq!(released.counts.replayed, 1);
        let transfer = internal(&released.publish, 2);
        assert_eq!(transfer.len(), 1, "one transfer for two copies of the request");

        // The transfer, and its copy.
        let copy = InputRecord { offset: 3, ..transfer[0].clone() };
        let merged = process(&[transfer[0].clone(), copy]);
        assert_eq!((merged.counts.scored, merged.counts.replayed), (1, 1));
        let totals: Vec<Option<f64>> = merged
            .publish
            .iter()
            .filter(|record| matches!(record.destination, Destination::Output(_)))
            .filter_map(|record| serde_json::from_slice::<serde_json::Value>(record.payload.as_deref()?).ok())
            .filter(|output| output["type"] == "score_changed")
            .map(|output| output["new_total"].as_f64())
            .collect();
        assert_eq!(totals, [Some(20.0)], "the visits of both, counted once");

        // Erasing the survivor forgets its alias once its record is committed; a copy changes nothing.
        let erased = process(&[input(3, &event("x-1", "known", "erase", None))]);
        let forget = internal(&erased.publish, 4);
        assert_eq!(forget.len(), 1, "one alias to forget");
        let copy = InputRecord { offset: 5, ..forget[0].clone() };
        let forgotten = process(&[forget[0].clone(), copy]);
        assert_eq!((forgotten.counts.scored, forgotten.counts.ignored), (1, 1));
        let alias_record = forgotten.write.puts.iter().find(|(contact, _)| contact == "anonymous");
        let alias = alias_record.map(|(_, bytes)| StoredContact::decode(&rules, "anonymous", bytes));
        assert!(
            matches!(&alias, Some(Ok(stored)) if stored.state.is_none() && stored.merged_into.is_none()),
            "{alias:?}"
        );
        task.committed(1, 6);
        let settled = task.settle_erasures(&rules, &settings);
        assert_eq!(settled.write.deletes, ["anonymous"]);
        let visit = task
            .process(&rules, &store, &settings, &[input(4, &event("a-2", "anonymous", "page_visit", None))])
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!((visit.counts.scored, internal(&visit.publish, 6).len()), (1, 0), "scored on a contact of its own");
    }
}
