//! One partition's stream of events through the engine: stream time, the decay-timer index, and the
//! order of timers and events that both the offline model and the Kafka runtime follow.
//!
//! For each event: the partition's stream time becomes the latest event time seen; timers due by then
//! fire; the event is scored; timers due by then fire again (a late event can leave its contact's new
//! t* in the past). Following this one order is what makes `leadscore score` and `leadscore run` agree.

use std::collections::BTreeSet;

use crate::event::Event;
use crate::rules::Rules;
use crate::scoring::{self, Applied, Attribution, ContactState, Outcome, Output};

/// Where a partition's contact states live: a map in the offline model, RocksDB in the runtime.
pub trait ContactStore {
    /// Moves the contact's state out of the store, if it exists; it goes back with `save` or `put_back`.
    /// Moving instead of cloning keeps the per-event cost free of allocations.
    fn take(&mut self, contact: &str) -> Option<ContactState>;
    /// Stores a new or changed state.
    fn save(&mut self, state: ContactState);
    /// Returns a state taken with `take` that did not change.
    fn put_back(&mut self, state: ContactState);
    /// Deletes a contact (erasure).
    fn remove(&mut self, contact: &str);
}

/// When due decay timers fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerClock {
    /// On the partition's stream time, as events arrive (replay, tests, the offline model).
    StreamTime,
    /// Only when the caller ticks with a wall-clock time (live mode).
    WallClock,
}

/// The scoring state of one partition that is not per contact.
#[derive(Debug, Clone)]
pub struct PartitionStream {
    clock: TimerClock,
    stream_time_ms: i64,
    timers: BTreeSet<(i64, String)>,
}

/// The result of scoring one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// What the engine did with the event.
    pub outcome: Outcome,
    /// Outputs of due timers and of the event, in order.
    pub outputs: Vec<Output>,
    /// Rules the event fired and phases it entered.
    pub attribution: Attribution,
}

impl PartitionStream {
    /// An empty partition.
    pub fn new(clock: TimerClock) -> Self {
        PartitionStream { clock, stream_time_ms: i64::MIN, timers: BTreeSet::new() }
    }

    /// The latest event time seen.
    pub fn stream_time_ms(&self) -> i64 {
        self.stream_time_ms
    }

    /// Number of contacts with a pending decay timer.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// Registers a restored contact's timer (after loading state from disk or the changelog).
    pub fn track(&mut self, state: &ContactState) {
        if let Some(due) = state.next_timer_ms {
            self.timers.insert((due, state.contact.clone()));
        }
    }

    /// Registers a timer read back from the timer index on disk.
    pub fn track_due(&mut self, due_ms: i64, contact: String) {
        self.timers.insert((due_ms, contact));
    }

    /// Restores the stream time after a restart.
    pub fn advance_stream_time(&mut self, ts_ms: i64) {
        self.stream_time_ms = self.stream_time_ms.max(ts_ms);
    }

    /// Scores one event of this partition.
    pub fn process(&mut self, rules: &Rules, store: &mut impl ContactStore, event: &Event) -> Processed {
        self.score(rules, store, &event.contact, event.ts_ms, |before| scoring::apply(rules, before, event))
    }

    /// Merges `merged` into the contact of `event` (a merge event), as [`PartitionStream::process`]
    /// scores an event.
    pub fn merge(
        &mut self,
        rules: &Rules,
        store: &mut impl ContactStore,
        merged: ContactState,
        event: &Event,
    ) -> Processed {
        self.score(rules, store, &event.contact, event.ts_ms, |before| scoring::merge(rules, before, merged, event))
    }

    /// Takes a contact's state out of the partition, with its timer: it was merged into another contact.
    pub fn release(&mut self, store: &mut impl ContactStore, contact: &str) -> Option<ContactState> {
        let state = store.take(contact)?;
        if let Some(due) = state.next_timer_ms {
            self.timers.remove(&(due, contact.to_owned()));
        }
        store.remove(contact);
        Some(state)
    }

    /// Runs `change` on a contact at event time `ts_ms`, with the timers due before and after it.
    fn score(
        &mut self,
        rules: &Rules,
        store: &mut impl ContactStore,
        contact: &str,
        ts_ms: i64,
        change: impl FnOnce(Option<ContactState>) -> Applied,
    ) -> Processed {
        let mut outputs = Vec::new();
        self.stream_time_ms = self.stream_time_ms.max(ts_ms);
        if self.clock == TimerClock::StreamTime {
            outputs.extend(self.fire_due(rules, store, self.stream_time_ms));
        }
        let before = store.take(contact);
        let old_timer = before.as_ref().and_then(|state| state.next_timer_ms);
        let applied = change(before);
        if applied.outcome == Outcome::Scored {
            if let Some(due) = old_timer {
                self.timers.remove(&(due, contact.to_owned()));
            }
            match applied.state {
                Some(state) => {
                    self.track(&state);
                    store.save(state);
                }
                None => store.remove(contact),
            }
        } else if let Some(state) = applied.state {
            store.put_back(state);
        }
        outputs.extend(applied.outputs);
        if self.clock == TimerClock::StreamTime {
            outputs.extend(self.fire_due(rules, store, self.stream_time_ms));
        }
        Processed { outcome: applied.outcome, outputs, attribution: applied.attribution }
    }

    /// Fires every timer due at `now_ms`, in time order.
    pub fn fire_due(&mut self, rules: &Rules, store: &mut impl ContactStore, now_ms: i64) -> Vec<Output> {
        let mut outputs = Vec::new();
        while self.timers.first().is_some_and(|(due, _)| *due <= now_ms) {
            let Some((due, contact)) = self.timers.pop_first() else { break };
            let Some(state) = store.take(&contact) else {
                continue;
            };
            if state.next_timer_ms != Some(due) {
                self.track(&state);
                store.put_back(state);
                continue;
            }
            let applied = scoring::on_timer(rules, state, now_ms);
            match applied.state {
                Some(state) => {
                    self.track(&state);
                    if applied.outcome == Outcome::Scored {
                        store.save(state);
                    } else {
                        store.put_back(state);
                    }
                }
                // An idle anonymous contact expired.
                None => store.remove(&contact),
            }
            outputs.extend(applied.outputs);
        }
        outputs
    }
}
