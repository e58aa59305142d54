//! Accounts in a task: the contacts' side, which reports each changed contact to its account through the
//! internal account topic, and the accounts' side, which applies those reports to the accounts the
//! task's partition owns and fires their timers.
//!
//! An account's record is named under [`ACCOUNT_KEY_PREFIX`] in the partition's batch (the store keeps it
//! in a column family of its own) and in the changelog, so it is written, restored and checkpointed with
//! the contacts. It
//! keeps the last update applied per origin partition, so that a copy sent again after a crash or a
//! rebalance changes nothing; a record whose last contact left keeps that bookkeeping, without members.

use std::collections::BTreeSet;

use foldhash::HashMap;

use super::gathered::Gathered;
use super::{Destination, InputRecord, InternalTopic, Publish, TaskError, TaskSettings, WireFormat};
use crate::accounts::codec::{self, AppliedOrigin};
use crate::accounts::{AccountOutput, AccountState};
use crate::rules::Rules;
use crate::runtime::account_update::AccountUpdate;
use crate::runtime::batch_store::BatchStore;
use crate::runtime::internal::Origin;
use crate::runtime::record::Route;
use crate::runtime::record_cache::{CacheBudget, RecordCache, Reread, memory_estimate};
use crate::scoring::codec::CodecError;
use crate::store::{ACCOUNT_KEY_PREFIX, PartitionBatch, StateStore};

/// The stored key of an account's record.
pub fn account_key(account: &str) -> String {
    [ACCOUNT_KEY_PREFIX, account].concat()
}

/// The timer of a stored record of the contact table, contact or account.
pub fn record_timer(rules: &Rules, key: &str, bytes: &[u8]) -> Result<Option<i64>, String> {
    match key.strip_prefix(ACCOUNT_KEY_PREFIX) {
        Some(account) => {
            let (state, _) = codec::decode(rules, account, bytes).map_err(|err| err.to_string())?;
            Ok(state.next_timer_ms)
        }
        None => {
            let stored =
                crate::runtime::record::StoredContact::decode(rules, key, bytes).map_err(|err| err.to_string())?;
            Ok(stored.state.and_then(|state| state.next_timer_ms))
        }
    }
}

/// The stored key of the origin of timers fired on the wall clock: a partition's timers, at the time they
/// fired.
pub fn timer_origin(partition: i32, now_ms: i64) -> Origin {
    Origin { topic: crate::hashing::name_key("\0timers"), partition, offset: now_ms }
}

impl Gathered {
    /// Reports the contacts changed since the last report to their accounts: each update names `origin`
    /// and its place among the origin's updates, `id` (its cause) and `at_ms`.
    pub(super) fn report_accounts(
        &mut self,
        rules: &Rules,
        settings: &TaskSettings,
        batch: &mut BatchStore,
        origin: Origin,
        id: &str,
        at_ms: i64,
    ) {
        for (index, (account, change, clock_ms)) in batch.account_changes().into_iter().enumerate() {
            let id = [id, ":", change.contact()].concat();
            let update = AccountUpdate { origin, index: index as u32, id, at_ms: at_ms.max(clock_ms), change };
            self.publish_internal(settings, InternalTopic::Account, &account, update.encode(rules));
        }
    }
}

/// An account's record as its cache holds it: decoded, with the updates applied per origin.
#[derive(Debug)]
pub(in crate::runtime) struct CachedAccount {
    /// Without members for an account that is gone but for its bookkeeping.
    state: AccountState,
    applied: Vec<AppliedOrigin>,
}

impl Reread for CachedAccount {
    fn reread(&mut self, account: &str, old: &Rules, new: &Rules) -> Result<(), CodecError> {
        (self.state, self.applied) = codec::decode(new, account, &codec::encode(old, &self.state, &self.applied))?;
        Ok(())
    }
}

/// What a task keeps of its partition's accounts between batches.
#[derive(Debug)]
pub struct TaskAccounts {
    /// Decoded account records, by account: those of batches not yet written to RocksDB, and recently
    /// used ones, within the instance's record cache budget. A batch decodes an account only the first
    /// time it meets it.
    cache: RecordCache<CachedAccount>,
    /// Account timers, as (due, account).
    timers: BTreeSet<(i64, String)>,
    /// The latest change time applied: on stream time, account timers fire when it or the partition's
    /// stream time passes them.
    clock_ms: i64,
}

impl TaskAccounts {
    /// A task's accounts, cached within `budget`.
    pub fn new(budget: CacheBudget) -> Self {
        TaskAccounts { cache: RecordCache::new(budget), timers: BTreeSet::new(), clock_ms: 0 }
    }

    /// Registers a timer read back from the timer index; `false` if `key` is not an account's.
    pub fn track_due(&mut self, due_ms: i64, key: &str) -> bool {
        match key.strip_prefix(ACCOUNT_KEY_PREFIX) {
            Some(account) => {
                self.timers.insert((due_ms, account.to_owned()));
                true
            }
            None => false,
        }
    }

    /// Records that the batches up to `sequence` are written to RocksDB.
    pub fn written(&mut self, sequence: u64) {
        self.cache.written(sequence);
    }

    /// Re-reads the cached accounts under rules that replace `old`.
    pub fn adopt_rules(&mut self, old: &Rules, new: &Rules) -> Result<(), CodecError> {
        self.cache.adopt_rules(old, new)
    }

    /// Accounts with a pending timer.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }
}

/// An account as a batch holds it.
struct Entry {
    state: Option<AccountState>,
    applied: Vec<AppliedOrigin>,
    old_timer: Option<i64>,
    dirty: bool,
    /// The cache's pending batch and size estimate of the record, kept for an unchanged record.
    pending: Option<u64>,
    bytes: usize,
}

/// The accounts a batch reads and changes.
pub(super) struct AccountBatch<'a> {
    rules: &'a Rules,
    store: &'a dyn StateStore,
    partition: i32,
    task: &'a mut TaskAccounts,
    entries: HashMap<String, Entry>,
    order: Vec<String>,
}

/// A changed account record of a batch.
pub(super) struct AccountChange {
    account: String,
    bytes: Vec<u8>,
    old_timer: Option<i64>,
    new_timer: Option<i64>,
    record: CachedAccount,
}

impl<'a> AccountBatch<'a> {
    pub fn new(rules: &'a Rules, store: &'a dyn StateStore, partition: i32, task: &'a mut TaskAccounts) -> Self {
        AccountBatch { rules, store, partition, task, entries: HashMap::default(), order: Vec::new() }
    }

    fn entry(&mut self, account: &str) -> Result<&mut Entry, TaskError> {
        if !self.entries.contains_key(account) {
            let (CachedAccount { state, applied }, pending, bytes) = match self.task.cache.take(account) {
                Some(cached) => (cached.stored, cached.pending, cached.bytes),
                None => match self.store.get(self.partition, &account_key(account))? {
                    Some(bytes) => {
                        let (state, applied) = codec::decode(self.rules, account, &bytes)
                            .map_err(|source| TaskError::Corrupt { partition: self.partition, source })?;
                        (CachedAccount { state, applied }, None, memory_estimate(bytes.len()))
                    }
                    None => {
                        let state = AccountState::new(self.rules, account, 0);
                        (CachedAccount { state, applied: Vec::new() }, None, memory_estimate(0))
                    }
                },
            };
            let old_timer = state.next_timer_ms;
            // A record without members is an account that is gone but for its bookkeeping.
            let state = Some(state).filter(|state| !state.members.is_empty());
            let entry = Entry { state, applied, old_timer, dirty: false, pending, bytes };
            self.entries.insert(account.to_owned(), entry);
            self.order.push(account.to_owned());
        }
        self.entries
            .get_mut(account)
            .ok_or_else(|| TaskError::Store(crate::store::StoreError::Rocks("account entry vanished".into())))
    }

    /// Applies one record of the internal account topic, unless it was applied before.
    pub fn apply(
        &mut self,
        settings: &TaskSettings,
        record: &InputRecord,
        out: &mut Gathered,
    ) -> Result<(), TaskError> {
        let rules = self.rules;
        let payload = record.payload.as_deref().unwrap_or_default();
        let update = match std::str::from_utf8(record.key.as_deref().unwrap_or_default()) {
            Ok(account) if rules.accounts.is_some() => {
                AccountUpdate::decode(rules, payload).map(|update| (account.to_owned(), update))
            }
            Ok(_) => {
                // The rules no longer score accounts.
                out.tally(super::IGNORED, crate::insights::INTERNAL_CLASS);
                return Ok(());
            }
            Err(_) => Err("account update whose key is not UTF-8".to_owned()),
        };
        let (account, update) = match update {
            Ok(update) => update,
            Err(reason) => {
                out.dead_letter(settings, self.partition, record, "account", &reason);
                return Ok(());
            }
        };
        let stamp = update.origin.stamp_key();
        let entry = self.entry(&account)?;
        let applied = entry.applied.iter_mut().find(|applied| applied.origin == stamp);
        if applied.as_ref().is_some_and(|applied| applied.covers(update.origin.offset, update.index)) {
            out.tally(super::REPLAYED, crate::insights::INTERNAL_CLASS);
            return Ok(());
        }
        let position = AppliedOrigin { origin: stamp, offset: update.origin.offset, index: update.index };
        match applied {
            Some(applied) => *applied = position,
            None => entry.applied.push(position),
        }
        let result =
            crate::accounts::apply(rules, entry.state.take(), &account, update.change, update.at_ms, &update.id);
        entry.state = result.state;
        entry.dirty = true;
        self.task.clock_ms = self.task.clock_ms.max(update.at_ms);
        out.tally(super::SCORED, crate::insights::INTERNAL_CLASS);
        out.account_outputs(settings, result.outputs);
        Ok(())
    }

    /// The time account timers are due by on stream time, given the partition's stream time.
    pub fn stream_time(&self, partition_stream_time: i64) -> i64 {
        self.task.clock_ms.max(partition_stream_time)
    }

    /// Fires the account timers due at `now_ms`, in time order.
    pub fn fire_due(&mut self, settings: &TaskSettings, now_ms: i64, out: &mut Gathered) -> Result<(), TaskError> {
        while self.task.timers.first().is_some_and(|(due, _)| *due <= now_ms) {
            let Some((due, account)) = self.task.timers.pop_first() else { break };
            let rules = self.rules;
            let entry = self.entry(&account)?;
            let Some(state) = entry.state.take_if(|state| state.next_timer_ms == Some(due)) else { continue };
            let result = crate::accounts::on_timer(rules, state, now_ms);
            entry.state = result.state;
            entry.dirty = true;
            out.account_outputs(settings, result.outputs);
        }
        Ok(())
    }

    /// The changed account records, in the order first touched; their timers are the task's from now.
    /// The unchanged ones go back to the cache as they were.
    pub fn into_changes(self) -> Vec<AccountChange> {
        let AccountBatch { rules, mut entries, order, task, .. } = self;
        let mut changes = Vec::new();
        for account in order {
            let Some(entry) = entries.remove(&account) else { continue };
            let new_timer = entry.state.as_ref().and_then(|state| state.next_timer_ms);
            let state = entry.state.unwrap_or_else(|| AccountState::new(rules, &account, 0));
            let record = CachedAccount { state, applied: entry.applied };
            if !entry.dirty {
                task.cache.put(account, record, entry.pending, entry.bytes);
                continue;
            }
            if let Some(due) = entry.old_timer {
                task.timers.remove(&(due, account.clone()));
            }
            if let Some(due) = new_timer {
                task.timers.insert((due, account.clone()));
            }
            let bytes = codec::encode(rules, &record.state, &record.applied);
            changes.push(AccountChange { account, bytes, old_timer: entry.old_timer, new_timer, record });
        }
        changes
    }
}

impl TaskAccounts {
    /// Adds a batch's changed account records to its write and its changelog records, pending until the
    /// batch `sequence` is written.
    pub(super) fn write(
        &mut self,
        changes: Vec<AccountChange>,
        sequence: u64,
        write: &mut PartitionBatch,
        publish: &mut Vec<Publish>,
    ) {
        for change in changes {
            let key = account_key(&change.account);
            if let Some(due) = change.old_timer {
                write.timer_deletes.push((due, key.clone()));
            }
            if let Some(due) = change.new_timer {
                write.timer_puts.push((due, key.clone()));
            }
            let bytes = memory_estimate(change.bytes.len());
            write.puts.push((key.clone(), change.bytes.clone()));
            publish.push(Publish {
                destination: Destination::Changelog,
                key: key.into_bytes(),
                payload: Some(change.bytes),
                headers: Vec::new(),
            });
            self.cache.put(change.account, change.record, Some(sequence), bytes);
        }
    }
}

impl Gathered {
    /// Routes account outputs to the account topic, keyed by account.
    pub(super) fn account_outputs(&mut self, settings: &TaskSettings, outputs: Vec<AccountOutput>) {
        self.counts.outputs += outputs.len() as u64;
        self.insight.add_account_outputs(&outputs);
        for output in outputs {
            let payload = match settings.output_format {
                WireFormat::Json => output.to_json(),
                WireFormat::Protobuf => output.to_protobuf(),
            };
            self.publish.push(Publish {
                destination: Destination::Output(Route::Account),
                key: output.account.clone().into_bytes(),
                payload: Some(payload),
                headers: Vec::new(),
            });
        }
    }
}
