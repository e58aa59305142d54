//! A task's record cache: decoded contact records kept in memory, so that an event for a contact seen
//! recently decodes nothing from RocksDB (Kafka Streams' `statestore.cache.max.bytes`).
//!
//! The cache holds the newest record of every contact in it. A record of a batch that is not yet
//! acknowledged and written to RocksDB, or not yet flushed ([`UNFLUSHED`]), is *pending*: it is the only
//! copy of the contact's newest state, so it is never evicted. Once its batch is written, the record equals what RocksDB holds and may be
//! evicted, oldest use first, when the instance's cache is over its budget. A contact known to have no
//! record is cached too, which spares RocksDB the lookup of a key it does not have.
//!
//! The budget is shared by every task of an instance: each task counts its records into it and, after a
//! batch, evicts its own oldest written records while the instance is over budget. Record sizes are
//! estimates from the encoded size (see [`memory_estimate`]). A task keeps two caches on the one budget:
//! its contacts' records, and its accounts' (see [`super::task::TaskAccounts`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use foldhash::HashMap;

use super::record::StoredContact;
use crate::rules::Rules;
use crate::scoring::codec::CodecError;

/// A decoded record a cache holds, which a change of rules reads again.
pub(super) trait Reread {
    /// Reads the record, stored under `key` and decoded under `old`, again under `new`, as RocksDB's
    /// would be: a decoded record indexes groups, phases and thresholds by their position in the rules.
    fn reread(&mut self, key: &str, old: &Rules, new: &Rules) -> Result<(), CodecError>;
}

impl Reread for StoredContact {
    fn reread(&mut self, key: &str, old: &Rules, new: &Rules) -> Result<(), CodecError> {
        if self.state.is_some() {
            *self = StoredContact::decode(new, key, &self.encode(old))?;
        }
        Ok(())
    }
}

/// The instance's cache budget, shared by its tasks.
#[derive(Debug, Clone)]
pub struct CacheBudget {
    limit: usize,
    used: Arc<AtomicUsize>,
}

/// The default budget of an instance: 64 MiB.
pub const DEFAULT_BYTES: usize = 64 << 20;

impl Default for CacheBudget {
    fn default() -> Self {
        CacheBudget::new(DEFAULT_BYTES)
    }
}

impl CacheBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        CacheBudget { limit, used: Arc::new(AtomicUsize::new(0)) }
    }

    /// Bytes the instance's caches hold now (estimated).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }
}

/// Memory taken by a decoded record whose encoding is `encoded` bytes long: the decoded state spreads
/// the same content over vectors and strings, about four and a half times the packed bytes (contacts
/// of 3 to 30 events: 4.2 to 5.4 times their state format 3), plus the map entry.
pub fn memory_estimate(encoded: usize) -> usize {
    const ENTRY: usize = 160;
    ENTRY + encoded * 9 / 2
}

/// The `pending` batch of a record changed by a batch that did not flush: no batch's write covers it
/// until a flush takes it, so it is never evicted before.
pub const UNFLUSHED: u64 = u64::MAX;

/// A cached record.
#[derive(Debug)]
pub(super) struct Cached<V> {
    pub stored: V,
    /// The batch whose write this record waits for, if it is not written yet.
    pub pending: Option<u64>,
    /// [`memory_estimate`] of the record.
    pub bytes: usize,
    /// When it was last used, in the task's uses.
    last_use: u64,
}

/// One task's cache of contacts' records (or of other records, such as accounts').
#[derive(Debug)]
pub(super) struct RecordCache<V = StoredContact> {
    entries: HashMap<String, Cached<V>>,
    budget: CacheBudget,
    bytes: usize,
    uses: u64,
}

impl<V: Reread> RecordCache<V> {
    pub fn new(budget: CacheBudget) -> Self {
        RecordCache { entries: HashMap::default(), budget, bytes: 0, uses: 0 }
    }

    /// Takes a contact's record out for a batch, which puts it back with [`RecordCache::put`].
    pub fn take(&mut self, contact: &str) -> Option<Cached<V>> {
        let cached = self.entries.remove(contact)?;
        self.account(cached.bytes, 0);
        Some(cached)
    }

    /// Puts a record (back) in, as used now; `pending` is the batch whose write it waits for.
    pub fn put(&mut self, contact: String, stored: V, pending: Option<u64>, bytes: usize) {
        self.uses += 1;
        let cached = Cached { stored, pending, bytes, last_use: self.uses };
        let old = self.entries.insert(contact, cached).map_or(0, |old| old.bytes);
        self.account(old, bytes);
    }

    /// Marks the records of batches up to `sequence` as written to RocksDB.
    pub fn written(&mut self, sequence: u64) {
        // A scan of the task's records: with batches of thousands of events it costs less per event than
        // keeping a list of the pending ones would.
        for cached in self.entries.values_mut() {
            if cached.pending.is_some_and(|batch| batch <= sequence) {
                cached.pending = None;
            }
        }
        self.evict();
    }

    /// Evicts this task's least recently used written records while the instance is over budget, down
    /// to seven eighths of the budget, so evictions come in rounds rather than one per record.
    pub fn evict(&mut self) {
        if !self.budget.over() {
            return;
        }
        let mut written: Vec<(u64, &String)> = self
            .entries
            .iter()
            .filter(|(_, cached)| cached.pending.is_none())
            .map(|(contact, cached)| (cached.last_use, contact))
            .collect();
        written.sort_unstable();
        let target = self.budget.limit / 8 * 7;
        let mut freed = 0;
        let mut evict = Vec::new();
        for (_, contact) in written {
            if self.budget.used().saturating_sub(freed) <= target {
                break;
            }
            freed += self.entries[contact].bytes;
            evict.push(contact.clone());
        }
        for contact in evict {
            self.take(&contact);
        }
    }

    /// Re-reads every cached record under new rules, as RocksDB's would be.
    pub fn adopt_rules(&mut self, old: &Rules, new: &Rules) -> Result<(), CodecError> {
        for (key, cached) in &mut self.entries {
            cached.stored.reread(key, old, new)?;
        }
        Ok(())
    }

    /// Records cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn account(&mut self, removed: usize, added: usize) {
        self.bytes = self.bytes + added - removed;
        if added >= removed {
            self.budget.used.fetch_add(added - removed, Ordering::Relaxed);
        } else {
            self.budget.used.fetch_sub(removed - added, Ordering::Relaxed);
        }
    }
}

impl<V> Drop for RecordCache<V> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> StoredContact {
        StoredContact::fresh(None)
    }

    #[test]
    fn pending_records_are_never_evicted() {
        let budget = CacheBudget::new(1_000);
        let mut cache = RecordCache::new(budget.clone());
        for index in 0..10 {
            cache.put(format!("c{index}"), record(), Some(1), 500);
        }
        cache.evict();
        assert_eq!(cache.len(), 10);
        assert_eq!(budget.used(), 5_000);
        cache.written(1);
        assert!(budget.used() <= 875, "{}", budget.used());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_record_changed_again_waits_for_its_newest_batch() {
        let budget = CacheBudget::new(100);
        let mut cache = RecordCache::new(budget.clone());
        cache.put("a".into(), record(), Some(1), 500);
        let taken = cache.take("a").map(|cached| cached.stored).unwrap_or_else(record);
        cache.put("a".into(), taken, Some(2), 500);
        cache.written(1);
        assert_eq!(cache.len(), 1, "still pending batch 2");
        cache.written(2);
        assert_eq!(cache.len(), 0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_least_recently_used_go_first() {
        let budget = CacheBudget::new(1_000);
        let mut cache = RecordCache::new(budget.clone());
        for index in 0..4 {
            cache.put(format!("c{index}"), record(), None, 300);
        }
        let first = cache.take("c0").map(|cached| cached.stored);
        cache.put("c0".into(), first.unwrap_or_else(record), None, 300);
        cache.evict();
        assert!(cache.take("c0").is_some());
        assert!(cache.take("c1").is_none());
    }

    #[test]
    fn new_rules_re_read_cached_records_by_group_name() {
        let parse = |source: &str| {
            Rules::parse(source, std::path::Path::new("test.toml")).unwrap_or_else(|err| panic!("{err}"))
        };
        let group = |name: &str| format!("[[groups]]\nname = \"{name}\"\ndecay = \"none\"\n");
        let tail = "[[phases]]\nname = \"lead\"\n";
        let old = parse(&format!("{}{}{tail}", group("engagement"), group("intent")));
        let new = parse(&format!("{}{}{tail}", group("intent"), group("engagement")));
        let mut state = crate::scoring::ContactState::new(&old, "c1", 0);
        state.groups[0].value = 5.0;
        let mut cache = RecordCache::new(CacheBudget::default());
        cache.put("c1".into(), StoredContact::fresh(Some(state)), None, 100);
        cache.adopt_rules(&old, &new).unwrap_or_else(|err| panic!("{err}"));
        let cached = cache.take("c1").and_then(|cached| cached.stored.state).unwrap_or_else(|| panic!("no state"));
        assert_eq!((cached.groups[0].value, cached.groups[1].value), (0.0, 5.0));
    }

    #[test]
    fn tasks_share_the_budget_and_return_it_when_dropped() {
        let budget = CacheBudget::new(10_000);
        let mut first = RecordCache::new(budget.clone());
        let mut second = RecordCache::new(budget.clone());
        first.put("a".into(), record(), None, 400);
        second.put("b".into(), record(), None, 600);
        second.put("b".into(), record(), None, 100);
        assert_eq!(budget.used(), 500);
        drop(first);
        assert_eq!(budget.used(), 100);
        assert!(second.take("b").is_some());
        assert_eq!(budget.used(), 0);
    }
}
