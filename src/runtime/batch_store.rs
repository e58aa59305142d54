//! The contact store a task's batch scores against: contact records read once per batch (from the task's
//! unwritten records of batches in flight, else from the state store), changed in memory, and handed back
//! as the batch's changes for one atomic write.

use std::collections::HashMap;

use super::record::StoredContact;
use super::task::TaskError;
use crate::rules::Rules;
use crate::scoring::ContactState;
use crate::store::StateStore;
use crate::stream::ContactStore;

struct Entry {
    stored: StoredContact,
    old_timer: Option<i64>,
    dirty: bool,
}

/// A changed contact record of a batch.
pub(crate) struct Change {
    pub contact: String,
    pub stored: StoredContact,
    /// The timer the record had on disk, to remove from the timer index.
    pub old_timer: Option<i64>,
}

pub(super) struct BatchStore<'a> {
    rules: &'a Rules,
    store: &'a dyn StateStore,
    partition: i32,
    /// Records of earlier batches not yet in the state store; a changed one is taken out, and goes back
    /// with this batch's sequence number when the batch is finished.
    unwritten: &'a mut HashMap<String, (u64, StoredContact)>,
    entries: HashMap<String, Entry>,
    order: Vec<String>,
    error: Option<TaskError>,
}

impl<'a> BatchStore<'a> {
    pub fn new(
        rules: &'a Rules,
        store: &'a dyn StateStore,
        partition: i32,
        unwritten: &'a mut HashMap<String, (u64, StoredContact)>,
    ) -> Self {
        BatchStore { rules, store, partition, unwritten, entries: HashMap::new(), order: Vec::new(), error: None }
    }

    fn entry(&mut self, contact: &str) -> Result<&mut Entry, TaskError> {
        if !self.entries.contains_key(contact) {
            let stored = match self.unwritten.get(contact) {
                Some((_, stored)) => stored.clone(),
                None => match self.store.get(self.partition, contact)? {
                    Some(bytes) => StoredContact::decode(self.rules, contact, &bytes)
                        .map_err(|source| TaskError::Corrupt { partition: self.partition, source })?,
                    None => StoredContact::fresh(None),
                },
            };
            let old_timer = stored.state.as_ref().and_then(|state| state.next_timer_ms);
            self.entries.insert(contact.to_owned(), Entry { stored, old_timer, dirty: false });
            self.order.push(contact.to_owned());
        }
        self.entries
            .get_mut(contact)
            .ok_or_else(|| TaskError::Store(crate::store::StoreError::Rocks("entry vanished".into())))
    }

    /// The last offset of `topic` applied to the contact.
    pub fn applied_offset(&mut self, contact: &str, topic: u32) -> Result<Option<i64>, TaskError> {
        Ok(self.entry(contact)?.stored.applied_offset(topic))
    }

    /// Records that the input record at `offset` changed the contact.
    pub fn mark_applied(&mut self, contact: &str, topic: u32, offset: i64) {
        if let Some(entry) = self.entries.get_mut(contact) {
            entry.stored.mark_applied(topic, offset);
            entry.dirty = true;
        }
    }

    /// The first error met while loading, if any.
    pub fn check(&mut self) -> Result<(), TaskError> {
        match self.error.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// The changed records, in the order they were first touched.
    pub fn into_changes(mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        for contact in self.order {
            if let Some(entry) = self.entries.remove(&contact)
                && entry.dirty
            {
                changes.push(Change { contact, stored: entry.stored, old_timer: entry.old_timer });
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
        match self.entry(&state.contact.clone()) {
            Ok(entry) => {
                entry.stored.state = Some(state);
                entry.dirty = true;
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
            }
            Err(err) => {
                self.error.get_or_insert(err);
            }
        }
    }
}
