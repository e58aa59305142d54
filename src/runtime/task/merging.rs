//! The internal merge topic's records, as the task that owns their key handles them: a forwarded event
//! is scored, a merge request turns the merged contact into an alias and answers with its state (or that
//! it has none, or declines), the answer is merged into the survivor (passed on, if the survivor was
//! merged too, or dropped, if it was erased since it asked), and an alias of an erased contact is
//! forgotten.

use super::{BatchStore, Gathered, InputRecord, Scorer, Scoring, Standing, TaskError, TaskSettings};
use crate::event::Event;
use crate::insights::INTERNAL_CLASS;
use crate::rules::Rules;
use crate::runtime::internal::{Answer, InternalRecord, Origin, Work};
use crate::scoring::{ContactErased, merge_fits};

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
            Work::Request { event, survivor_alias_bytes } => {
                self.release_merged(rules, settings, batch, (event, survivor_alias_bytes), &scoring, out)
            }
            Work::Transfer { event, merged, answer, awaiting } => {
                self.take_answer(rules, settings, batch, (event, merged, answer, awaiting), &scoring, out)
            }
            Work::Forget { alias, erased } => {
                let forgotten = match batch.standing(&alias, scoring.stamp)? {
                    Standing::MergedInto(into) if ContactErased::forgets(&erased, &into) => {
                        let topic = TaskSettings::topic_key(&settings.inputs[record.topic]);
                        let refused = batch.forget_alias(&alias, topic, record.offset)?;
                        self.decline_for_forgotten(rules, settings, &scoring, (&alias, &into), refused, out);
                        super::SCORED
                    }
                    // A copy sent again, or an id merged into another contact since.
                    _ => super::IGNORED,
                };
                out.tally(forgotten, INTERNAL_CLASS);
                Ok(())
            }
        }
    }

    /// The answers a forgotten alias still awaited come to it, and it drops them; the survivor it was
    /// merged into took over the wait, so each is declined to it now, or that survivor would keep its
    /// record for an answer that never reaches it.
    fn decline_for_forgotten(
        &self,
        rules: &Rules,
        settings: &TaskSettings,
        scoring: &Scoring,
        (alias, into): (&str, &str),
        refused: Vec<String>,
        out: &mut Gathered,
    ) {
        for merged in refused {
            let event = Event {
                id: [alias, ":forgotten:", &merged].concat(),
                contact: into.to_owned(),
                kind: "merge".to_owned(),
                ts_ms: self.stream.stream_time_ms().max(1),
                item: None,
                attrs: Vec::new(),
                adjustment: None,
                phase: None,
            };
            let work = Work::Transfer { event, merged, answer: Answer::Declined, awaiting: Vec::new() };
            out.internal(rules, settings, into, &InternalRecord { origin: scoring.here, hops: 0, work });
        }
    }

    /// The merged contact of a merge event becomes an alias of the event's contact, and answers it with
    /// its state, or that it has none. A contact already merged stays with the contact it was merged into
    /// first, and declines, as it does when the rules no longer merge on the event, and when the two
    /// together would have more aliases than a contact keeps (the request is then dead-lettered with why).
    fn release_merged(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        batch: &mut BatchStore,
        (event, survivor_alias_bytes): (Event, u32),
        scoring: &Scoring,
        out: &mut Gathered,
    ) -> Result<(), TaskError> {
        let class = INTERNAL_CLASS;
        out.caused_by(rules, &event.id, event.ts_ms);
        let key = String::from_utf8_lossy(scoring.record.key.as_deref().unwrap_or_default()).into_owned();
        let merged = rules.merged_contact(&event).map_or(key, str::to_owned);
        let declined = (Answer::Declined, Vec::new());
        let (answer, awaiting) = match batch.standing(&merged, scoring.stamp)? {
            Standing::Applied => {
                out.tally(super::REPLAYED, class);
                return Ok(());
            }
            Standing::MergedInto(_) => {
                out.tally(super::IGNORED, class);
                declined
            }
            Standing::Open if rules.merged_contact(&event).is_none() => {
                out.tally(super::IGNORED, class);
                declined
            }
            Standing::Open => match merge_fits(survivor_alias_bytes as usize, &merged, batch.alias_bytes(&merged)?) {
                Err(reason) => {
                    out.dead_letter(settings, self.partition, scoring.record, "merge", &reason);
                    declined
                }
                Ok(()) => {
                    let state = self.stream.release(batch, &merged);
                    batch.check()?;
                    batch.set_merged_into(&merged, &event.contact)?;
                    batch.mark_applied(&merged, scoring.stamp.0, scoring.stamp.1);
                    out.tally(super::SCORED, class);
                    let answer = state.map_or(Answer::Stateless, |state| Answer::State(Box::new(state)));
                    (answer, batch.awaiting(&merged)?)
                }
            },
        };
        let survivor = event.contact.clone();
        let work = Work::Transfer { event, merged, answer, awaiting };
        out.internal(rules, settings, &survivor, &InternalRecord { origin: scoring.here, hops: 0, work });
        Ok(())
    }

    /// Takes a merged contact's answer: merges its state into the survivor (or passes it on to the contact
    /// the survivor was itself merged into), or drops it if the survivor was erased since it asked, and
    /// then forgets the merged contact too.
    #[allow(clippy::too_many_arguments)] // the parts of one internal record
    fn take_answer(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        batch: &mut BatchStore,
        (event, merged, answer, awaiting): (Event, String, Answer, Vec<String>),
        scoring: &Scoring,
        out: &mut Gathered,
    ) -> Result<(), TaskError> {
        let class = INTERNAL_CLASS;
        let survivor = event.contact.clone();
        let standing = batch.standing(&survivor, scoring.stamp)?;
        if let Standing::Applied = standing {
            out.tally(super::REPLAYED, class);
            return Ok(());
        }
        if batch.answered(&survivor, &merged)? {
            // Erased since it asked: the merged contact's state goes nowhere, and its id is forgotten with
            // the ids merged into it, as they would have been had the erasure come after the merge.
            batch.mark_applied(&survivor, scoring.stamp.0, scoring.stamp.1);
            let aliases = match answer {
                Answer::Declined => Vec::new(),
                Answer::Stateless => vec![merged],
                Answer::State(state) => std::iter::once(merged).chain(state.merged_ids).collect(),
            };
            let family: Vec<String> = std::iter::once(survivor).chain(aliases.iter().cloned()).collect();
            for alias in aliases {
                let work = Work::Forget { alias: alias.clone(), erased: family.clone() };
                out.internal(rules, settings, &alias, &InternalRecord { origin: scoring.here, hops: 0, work });
            }
            out.tally(super::IGNORED, class);
            return Ok(());
        }
        if let Standing::MergedInto(next) = standing {
            let work = Work::Transfer { event: Event { contact: next.clone(), ..event }, merged, answer, awaiting };
            out.follow(rules, settings, self.partition, scoring, &next, work);
            out.tally(super::FORWARDED, class);
            return Ok(());
        }
        let state = match answer {
            Answer::Declined => {
                out.tally(super::IGNORED, class);
                return Ok(());
            }
            Answer::Stateless => {
                batch.await_answers(&survivor, &awaiting)?;
                batch.adopt_alias(&survivor, &merged)?;
                batch.mark_applied(&survivor, scoring.stamp.0, scoring.stamp.1);
                out.tally(super::SCORED, class);
                return Ok(());
            }
            Answer::State(state) => *state,
        };
        batch.await_answers(&survivor, &awaiting)?;
        // The survivor's account hears of the merge apart from the merge event itself.
        out.caused_by(rules, &[&event.id, ":merge"].concat(), event.ts_ms);
        let merge = crate::scoring::merge_event(&event);
        let processed = self.stream.merge(rules, batch, state, &merge);
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
