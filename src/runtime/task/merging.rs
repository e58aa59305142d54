//! The internal merge topic's records, as the task that owns their key handles them: a forwarded event
//! is scored, a merge request turns the merged contact into an alias and sends its state on, and a
//! transferred state is merged into the survivor (or passed on, if the survivor was merged too), and an
//! alias of an erased contact is forgotten.

use super::{BatchStore, Gathered, InputRecord, Scorer, Scoring, Standing, TaskError, TaskSettings};
use crate::event::Event;
use crate::insights::event_class;
use crate::rules::Rules;
use crate::runtime::internal::{InternalRecord, Origin, Work};
use crate::scoring::{ContactErased, ContactState};

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
                    Standing::MergedInto(into) if ContactErased::forgets(&erased, &into) => {
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
        out.caused_by(rules, &event.id, event.ts_ms);
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
        // The survivor's account hears of the merge apart from the merge event itself.
        out.caused_by(rules, &[&event.id, ":merge"].concat(), event.ts_ms);
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
