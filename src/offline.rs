//! `leadscore score`: the offline reference model. It scores a JSON-lines export (or an export in an input
//! topic's format) with the same engine and the same per-partition order of timers and events as the
//! Kafka runtime, on stream time.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use crate::accounts::{AccountBook, AccountOutput};
use crate::event::DecodeLimits;
use crate::event::Event;
use crate::event::input::InputDecoder;
use crate::event::mapping::{Mapped, Position, SourceRecord};
use crate::hashing::partition_for_key;
use crate::rules::Rules;
use crate::scoring::{
    ContactErased, ContactState, ContactView, MAX_ALIAS_HOPS, Outcome, Output, OutputBody, alias_cycle, merge_event,
    merge_fits,
};
use crate::stream::{ContactStore, PartitionStream, TimerClock};

/// Contact states in memory, ordered by contact id so that output is deterministic.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    contacts: BTreeMap<String, ContactState>,
    merged_into: BTreeMap<String, String>,
    /// With account rules: contacts whose state changed since their accounts were last brought up to date.
    touched: Option<Vec<String>>,
}

impl MemoryStore {
    /// Every contact, by id.
    pub fn contacts(&self) -> &BTreeMap<String, ContactState> {
        &self.contacts
    }

    /// Every contact merged into another, with the one it was merged into.
    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.merged_into
    }
}

impl ContactStore for MemoryStore {
    fn take(&mut self, contact: &str) -> Option<ContactState> {
        self.contacts.remove(contact)
    }
    fn save(&mut self, state: ContactState) {
        if let Some(touched) = &mut self.touched {
            touched.push(state.contact.clone());
        }
        self.contacts.insert(state.contact.clone(), state);
    }
    fn put_back(&mut self, state: ContactState) {
        self.contacts.insert(state.contact.clone(), state);
    }
    fn remove(&mut self, contact: &str) {
        if let Some(touched) = &mut self.touched {
            touched.push(contact.to_owned());
        }
        self.contacts.remove(contact);
    }
}

/// Counts of what happened to the input.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Lines read.
    pub lines: u64,
    /// Events that changed a score.
    pub scored: u64,
    /// Events nothing listens to.
    pub ignored: u64,
    /// Events seen before.
    pub duplicates: u64,
    /// Lines that are not valid events, or events the rules reject.
    pub malformed: u64,
    /// Outputs written.
    pub outputs: u64,
}

/// The offline model: the engine over an in-memory store, one stream per partition.
pub struct OfflineScorer<'r> {
    rules: &'r Rules,
    decoder: InputDecoder,
    limits: DecodeLimits,
    partitions: Vec<PartitionStream>,
    store: MemoryStore,
    accounts: AccountBook,
    /// Account outputs of the lines scored since [`OfflineScorer::take_account_outputs`].
    account_outputs: Vec<AccountOutput>,
    /// The latest event time seen, which account timers fire on.
    clock_ms: i64,
    summary: Summary,
}

impl<'r> OfflineScorer<'r> {
    /// A model that splits contacts over `partitions` partitions as Kafka's default partitioner does.
    pub fn new(rules: &'r Rules, partitions: u32) -> Self {
        let count = partitions.max(1) as usize;
        OfflineScorer {
            rules,
            decoder: InputDecoder::Json,
            limits: DecodeLimits::default(),
            partitions: (0..count).map(|_| PartitionStream::new(TimerClock::StreamTime)).collect(),
            store: MemoryStore { touched: rules.accounts.as_ref().map(|_| Vec::new()), ..MemoryStore::default() },
            accounts: AccountBook::default(),
            account_outputs: Vec::new(),
            clock_ms: i64::MIN,
            summary: Summary::default(),
        }
    }

    /// Reads lines in an input topic's format (such as Segment or Snowplow) instead of leadscore's JSON.
    pub fn with_decoder(mut self, decoder: InputDecoder) -> Self {
        self.decoder = decoder;
        self
    }

    /// Scores one line. Errors are returned as text for the caller to report; they never stop the run.
    pub fn score_line(&mut self, line: &[u8]) -> Result<Vec<Output>, String> {
        self.summary.lines += 1;
        let position = Position::Line { file: "input", line: self.summary.lines as usize };
        let record = SourceRecord { payload: line, key: None, headers: &[], position };
        let event = match self.decoder.decode_value(&record, &self.limits) {
            Ok(Mapped::Event(event)) => event,
            Ok(Mapped::Skipped(_)) => {
                self.summary.ignored += 1;
                return Ok(Vec::new());
            }
            Err(err) => {
                self.summary.malformed += 1;
                return Err(err.to_string());
            }
        };
        let ts_ms = event.ts_ms;
        let outputs = self.score_event(event, 0);
        if self.rules.accounts.is_some() {
            self.clock_ms = self.clock_ms.max(ts_ms);
            self.account_outputs.extend(self.accounts.fire_due(self.rules, self.clock_ms));
        }
        outputs
    }

    /// Brings the accounts of the contacts changed since the last call up to date, as of `at_ms`; `id`
    /// names the change. The runtime reports the same contacts at the same steps: after an event is
    /// scored, after a merged contact is released, and after its state is merged in (`<id>:merge`).
    fn report_accounts(&mut self, id: &str, at_ms: i64) {
        let Some(touched) = &mut self.store.touched else { return };
        let mut touched = std::mem::take(touched);
        touched.sort_unstable();
        touched.dedup();
        for contact in touched {
            let state = self.store.contacts.get(&contact);
            self.account_outputs.extend(self.accounts.sync(self.rules, &contact, state, at_ms, id));
        }
    }

    /// The account outputs of the lines scored since the last call, in order.
    pub fn take_account_outputs(&mut self) -> Vec<AccountOutput> {
        std::mem::take(&mut self.account_outputs)
    }

    /// Every account.
    pub fn accounts(&self) -> &AccountBook {
        &self.accounts
    }

    fn partition(&self, contact: &str) -> usize {
        partition_for_key(contact.as_bytes(), self.partitions.len() as u32) as usize
    }

    /// Scores an event on its contact, or on the contact its contact was merged into, as the runtime
    /// forwards it; a merge event then merges its merged contact in.
    fn score_event(&mut self, event: Event, hops: u32) -> Result<Vec<Output>, String> {
        if let Some(survivor) = self.store.merged_into.get(&event.contact).cloned() {
            if hops >= MAX_ALIAS_HOPS {
                self.summary.malformed += 1;
                return Err(alias_cycle(&survivor));
            }
            return self.score_event(Event { contact: survivor, ..event }, hops + 1);
        }
        let partition = self.partition(&event.contact);
        let processed = self.partitions[partition].process(self.rules, &mut self.store, &event);
        self.report_accounts(&event.id, event.ts_ms);
        match processed.outcome {
            Outcome::Scored => self.summary.scored += 1,
            Outcome::Ignored => self.summary.ignored += 1,
            Outcome::Duplicate => self.summary.duplicates += 1,
            Outcome::Rejected(reason) => {
                self.summary.malformed += 1;
                return Err(reason);
            }
        }
        let mut outputs = processed.outputs;
        // An erased contact's aliases go with it.
        for output in &outputs {
            if let OutputBody::ContactErased(erased) = &output.body {
                let family = erased.family(&output.contact);
                for alias in &erased.aliases {
                    if self.store.merged_into.get(alias).is_some_and(|into| ContactErased::forgets(&family, into)) {
                        self.store.merged_into.remove(alias);
                    }
                }
            }
        }
        let takes_effect = matches!(processed.outcome, Outcome::Scored | Outcome::Ignored);
        let rules = self.rules;
        let alias_bytes = |contact: &str| self.store.contacts.get(contact).map_or(0, ContactState::alias_bytes);
        if let Some(merged) = rules.merged_contact(&event).filter(|merged| takes_effect && *merged != event.contact)
            && !self.store.merged_into.contains_key(merged)
        {
            if merge_fits(alias_bytes(&event.contact), merged, alias_bytes(merged)).is_err() {
                // The runtime dead-letters the merged contact's request: both stay apart.
                self.summary.malformed += 1;
                self.summary.outputs += outputs.len() as u64;
                return Ok(outputs);
            }
            let partition = self.partition(merged);
            let state = self.partitions[partition].release(&mut self.store, merged);
            self.report_accounts(&event.id, event.ts_ms);
            self.store.merged_into.insert(merged.to_owned(), event.contact.clone());
            match state {
                Some(state) => outputs.extend(self.transfer(&event, state, 0)?),
                None => self.adopt_alias(&event.contact, merged),
            }
        }
        self.summary.outputs += outputs.len() as u64;
        Ok(outputs)
    }

    /// Makes `alias`, merged into `survivor` without a state, an alias of the contact that holds the
    /// survivor's state, as the runtime does when the merged contact answers that it has none.
    fn adopt_alias(&mut self, survivor: &str, alias: &str) {
        let mut holder = survivor;
        for _ in 0..MAX_ALIAS_HOPS {
            match self.store.merged_into.get(holder) {
                Some(next) => holder = next,
                None => break,
            }
        }
        if let Some(state) = self.store.contacts.get_mut(holder) {
            state.adopt_alias(alias);
        }
    }

    /// Merges a merged contact's state into the merge event's contact, or the contact that one was merged
    /// into.
    fn transfer(&mut self, event: &Event, merged: ContactState, hops: u32) -> Result<Vec<Output>, String> {
        if let Some(next) = self.store.merged_into.get(&event.contact).cloned() {
            if hops >= MAX_ALIAS_HOPS {
                return Err(alias_cycle(&next));
            }
            return self.transfer(&Event { contact: next, ..event.clone() }, merged, hops + 1);
        }
        let partition = self.partition(&event.contact);
        let processed = self.partitions[partition].merge(self.rules, &mut self.store, merged, &merge_event(event));
        self.report_accounts(&[&event.id, ":merge"].concat(), event.ts_ms);
        Ok(processed.outputs)
    }

    /// Scores the following lines with `rules`, as a rules reload does between two batches of the
    /// runtime: every state is written under the old rules and read back under the new ones, just as the
    /// runtime reads its stored records.
    pub fn switch_rules(&mut self, rules: &'r Rules) {
        for state in self.store.contacts.values_mut() {
            let bytes = crate::scoring::codec::encode(self.rules, state);
            match crate::scoring::codec::decode(rules, &state.contact, &bytes) {
                Ok(read) => *state = read,
                // Unreachable: the bytes were encoded by this build a moment ago.
                Err(_) => continue,
            }
        }
        self.rules = rules;
    }

    /// The rules scoring now.
    pub fn rules(&self) -> &'r Rules {
        self.rules
    }

    /// What happened so far.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// The final states.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// Scores a whole JSON-lines input, writing outputs as JSON lines; bad lines go to `errors`.
    pub fn score_all(
        &mut self,
        input: impl BufRead,
        output: &mut impl Write,
        errors: &mut impl Write,
    ) -> std::io::Result<Summary> {
        for (number, line) in input.split(b'\n').enumerate() {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match self.score_line(&line) {
                Ok(outputs) => {
                    for out in outputs {
                        output.write_all(&out.to_json())?;
                        output.write_all(b"\n")?;
                    }
                }
                Err(reason) => writeln!(errors, "line {}: {reason}", number + 1)?,
            }
            for out in self.take_account_outputs() {
                output.write_all(&out.to_json())?;
                output.write_all(b"\n")?;
            }
        }
        Ok(self.summary)
    }

    /// Writes every contact's final state, read at its own clock, as JSON lines.
    pub fn write_states(&self, output: &mut impl Write) -> std::io::Result<()> {
        for state in self.store.contacts.values() {
            let view = ContactView::new(self.rules, state, state.clock_ms);
            serde_json::to_writer(&mut *output, &view)?;
            output.write_all(b"\n")?;
        }
        Ok(())
    }
}
