//! The contact store a task's batch scores against: contact records taken from the task's record cache
//! (else read from the state store) once per batch, changed in memory, and handed back: the changed ones
//! as the batch's changes for one atomic write, the others straight to the cache.

use foldhash::HashMap;

use super::record::StoredContact;
use super::record_cache::{RecordCache, memory_estimate};
use super::task::TaskError;
use crate::accounts::{Member, MemberChange};
use crate::rules::Rules;
use crate::scoring::ContactState;
use crate::store::StateStore;
use crate::stream::ContactStore;

struct Entry {
    stored: StoredContact,
    old_timer: Option<i64>,
    dirty: bool,
    /// The cache's pending batch and size estimate of the record, kept for an unchanged record.
    pending: Option<u64>,
    bytes: usize,
    /// The account the contact last reported itself to (see [`BatchStore::account_changes`]).
    reported: Option<String>,
}

/// Where a contact stands for one record.
pub(crate) enum Standing {
    /// It was merged into this contact, which takes its records.
    MergedInto(String),
    /// The record was applied to it before a crash or rebalance: it changes nothing.
    Applied,
    /// The record is to be applied.
    Open,
}

/// A changed contact record of a batch.
pub(crate) struct Change {
    pub contact: String,
    pub stored: StoredContact,
    /// The timer the record had on disk, to remove from the timer index.
    pub old_timer: Option<i64>,
    /// [`memory_estimate`] of the record as it was read.
    pub bytes: usize,
}

pub(super) struct BatchStore<'a> {
    rules: &'a Rules,
    store: &'a dyn StateStore,
    partition: i32,
    /// The task's cache, which holds every record of earlier batches not yet in the state store.
    cache: &'a mut RecordCache,
    entries: HashMap<String, Entry>,
    order: Vec<String>,
    /// With account rules: contacts whose state changed since the last [`BatchStore::account_changes`].
    touched: Vec<String>,
    error: Option<TaskError>,
}

impl<'a> BatchStore<'a> {
    pub fn new(rules: &'a Rules, store: &'a dyn StateStore, partition: i32, cache: &'a mut RecordCache) -> Self {
        let (entries, order, touched) = (HashMap::default(), Vec::new(), Vec::new());
        BatchStore { rules, store, partition, cache, entries, order, touched, error: None }
    }

    fn entry(&mut self, contact: &str) -> Result<&mut Entry, TaskError> {
        if !self.entries.contains_key(contact) {
            let (stored, pending, bytes) = match self.cache.take(contact) {
                Some(cached) => (cached.stored, cached.pending, cached.bytes),
                None => match self.store.get(self.partition, contact)? {
                    Some(bytes) => (
                        StoredContact::decode(self.rules, contact, &bytes)
                            .map_err(|source| TaskError::Corrupt { partition: self.partition, source })?,
                        None,
                        memory_estimate(bytes.len()),
                    ),
                    None => (StoredContact::fresh(None), None, memory_estimate(0)),
                },
            };
            let old_timer = stored.state.as_ref().and_then(|state| state.next_timer_ms);
            // A contact reports every change of its state, so its stored account is the one it reported to.
            let reported = match self.rules.accounts {
                Some(_) => stored.state.as_ref().and_then(|state| state.account.clone()),
                None => None,
            };
            let entry = Entry { stored, old_timer, dirty: false, pending, bytes, reported };
            self.entries.insert(contact.to_owned(), entry);
            self.order.push(contact.to_owned());
        }
        self.entries
            .get_mut(contact)
            .ok_or_else(|| TaskError::Store(crate::store::StoreError::Rocks("entry vanished".into())))
    }

    /// Where the contact stands for a record stamped `stamp` (topic or origin key, and offset).
    pub fn standing(&mut self, contact: &str, stamp: (u32, i64)) -> Result<Standing, TaskError> {
        let stored = &self.entry(contact)?.stored;
        // Applied first: a record applied to a contact before it was merged went with its state.
        Ok(if stored.applied_offset(stamp.0).is_some_and(|applied| stamp.1 <= applied) {
            Standing::Applied
        } else if let Some(survivor) = &stored.merged_into {
            Standing::MergedInto(survivor.clone())
        } else {
            Standing::Open
        })
    }

    /// Records that the input record at `offset` changed the contact.
    pub fn mark_applied(&mut self, contact: &str, topic: u32, offset: i64) {
        if let Some(entry) = self.entries.get_mut(contact) {
            entry.stored.mark_applied(topic, offset);
            entry.dirty = true;
        }
    }

    /// Makes the contact, whose state the caller took out, an alias of `survivor`.
    pub fn set_merged_into(&mut self, contact: &str, survivor: &str) -> Result<(), TaskError> {
        let entry = self.entry(contact)?;
        entry.stored.state = None;
        entry.stored.merged_into = Some(survivor.to_owned());
        entry.dirty = true;
        let reported = entry.reported.is_some();
        self.touch(contact, reported);
        Ok(())
    }

    /// Notes a changed contact for [`BatchStore::account_changes`] if it has something to tell an
    /// account (`tells`: its state names one, or it reported to one before).
    fn touch(&mut self, contact: &str, tells: bool) {
        if tells && self.rules.accounts.is_some() {
            self.touched.push(contact.to_owned());
        }
    }

    /// What the contacts changed since the last call do to their accounts, as (account, change, the
    /// contact's clock): a contact whose state names an account reports itself there, and one that
    /// reported to another account before (or has no state now) leaves that one first.
    pub fn account_changes(&mut self) -> Vec<(String, MemberChange, i64)> {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        let mut changes = Vec::new();
        for contact in touched {
            let Some(entry) = self.entries.get_mut(&contact) else { continue };
            let state = entry.stored.state.as_ref();
            let named = state.and_then(|state| state.account.as_ref());
            if let Some(old) = entry.reported.take_if(|old| Some(&*old) != named) {
                changes.push((old, MemberChange::Leave(contact.clone()), i64::MIN));
            }
            if let (Some(state), Some(account)) = (state, named) {
                changes.push((account.clone(), MemberChange::Upsert(Member::of(self.rules, state)), state.clock_ms));
                entry.reported = Some(account.clone());
            }
        }
        changes
    }

    /// Forgets an alias: its record becomes that of an erased contact, applied up to the internal
    /// record at `offset` of the topic `topic`, and is deleted once that record is committed (and every
    /// answer it awaited has arrived and been dropped).
    /// Returns the contacts whose answers it awaited.
    pub fn forget_alias(&mut self, contact: &str, topic: u32, offset: i64) -> Result<Vec<String>, TaskError> {
        let entry = self.entry(contact)?;
        entry.stored.merged_into = None;
        entry.stored.mark_applied(topic, offset);
        entry.dirty = true;
        Ok(self.refuse_answers(contact))
    }

    /// Notes that `contact` asked `merged` to merge into it (or was handed that wait by a contact merged
    /// into it): their answer is awaited.
    pub fn await_answers(&mut self, contact: &str, merged: &[String]) -> Result<(), TaskError> {
        let entry = self.entry(contact)?;
        for id in merged {
            if !entry.stored.awaiting.contains(id) {
                entry.stored.awaiting.push(id.clone());
                entry.dirty = true;
            }
        }
        Ok(())
    }

    /// What the contact's aliases, and the contacts it awaits (or refuses), take of
    /// [`crate::scoring::MAX_ALIAS_BYTES`].
    pub fn alias_bytes(&mut self, contact: &str) -> Result<usize, TaskError> {
        let stored = &self.entry(contact)?.stored;
        let ids = stored.awaiting.iter().chain(&stored.refused);
        let awaited: usize = ids.map(|id| crate::scoring::alias_bytes(id)).sum();
        Ok(awaited + stored.state.as_ref().map_or(0, ContactState::alias_bytes))
    }

    /// The answers `contact` awaits.
    pub fn awaiting(&mut self, contact: &str) -> Result<Vec<String>, TaskError> {
        Ok(self.entry(contact)?.stored.awaiting.clone())
    }

    /// The answers a contact of this batch awaited are refused from now on: its state was erased, or it
    /// was forgotten. Returns the contacts whose answers it awaited.
    pub fn refuse_answers(&mut self, contact: &str) -> Vec<String> {
        let Some(entry) = self.entries.get_mut(contact).filter(|entry| !entry.stored.awaiting.is_empty()) else {
            return Vec::new();
        };
        let awaiting = std::mem::take(&mut entry.stored.awaiting);
        entry.stored.refused.extend(awaiting.iter().cloned());
        entry.dirty = true;
        awaiting
    }

    /// Takes `merged`'s answer off the contact's lists: whether it was refused.
    pub fn answered(&mut self, contact: &str, merged: &str) -> Result<bool, TaskError> {
        let entry = self.entry(contact)?;
        let before = (entry.stored.awaiting.len(), entry.stored.refused.len());
        entry.stored.awaiting.retain(|id| id != merged);
        entry.stored.refused.retain(|id| id != merged);
        let refused = entry.stored.refused.len() < before.1;
        if (entry.stored.awaiting.len(), entry.stored.refused.len()) != before {
            entry.dirty = true;
        }
        Ok(refused)
    }

    /// Makes `alias`, a contact without state merged into `contact`, one of its aliases, if it has a state.
    pub fn adopt_alias(&mut self, contact: &str, alias: &str) -> Result<(), TaskError> {
        let entry = self.entry(contact)?;
        if let Some(state) = entry.stored.state.as_mut()
            && state.adopt_alias(alias)
        {
            entry.dirty = true;
        }
        Ok(())
    }

    /// The first error met while loading, if any.
    pub fn check(&mut self) -> Result<(), TaskError> {
        match self.error.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// The changed records, in the order they were first touched; the unchanged ones go back to the cache.
    pub fn into_changes(mut self) -> Vec<Change> {
        let mut changes = Vec::with_capacity(self.order.len());
        for contact in self.order {
            let Some(entry) = self.entries.remove(&contact) else { continue };
            if entry.dirty {
                changes.push(Change { contact, stored: entry.stored, old_timer: entry.old_timer, bytes: entry.bytes });
            } else {
                self.cache.put(contact, entry.stored, entry.pending, entry.bytes);
            }
        }
        changes
    }
}

impl ContactStore for BatchStore<'_> {
    fn take(&mut self, contact: &str) -> Option<ContactState> {
        match self.entry(contact) {
            Ok(entry) => entry.stored.state.take(),
            Err(err) => {
                self.error.get_or_insert(err);
                None
            }
        }
    }

    fn save(&mut self, state: ContactState) {
        let accounts = self.rules.accounts.is_some();
        match self.entry(&state.contact) {
            Ok(entry) => {
                // As `touch` does, without a second copy of the id.
                let tells = accounts && (state.account.is_some() || entry.reported.is_some());
                let contact = tells.then(|| state.contact.clone());
                entry.stored.state = Some(state);
                entry.dirty = true;
                self.touched.extend(contact);
            }
            Err(err) => {
                self.error.get_or_insert(err);
            }
        }
    }

    fn put_back(&mut self, state: ContactState) {
        if let Some(entry) = self.entries.get_mut(&state.contact) {
            entry.stored.state = Some(state);
        }
    }

    fn remove(&mut self, contact: &str) {
        match self.entry(contact) {
            Ok(entry) => {
                entry.stored.state = None;
                entry.dirty = true;
                let reported = entry.reported.is_some();
                self.touch(contact, reported);
            }
            Err(err) => {
                self.error.get_or_insert(err);
            }
        }
    }
}
