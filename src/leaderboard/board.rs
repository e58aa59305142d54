//! One partition's leaderboard index: per phase and per group, contacts ordered by their [`RankKey`], in
//! the store's index column family, so that the memory it takes does not grow with the contacts.
//!
//! An update reads the contact's previous entry and rewrites its keys: one point read and a few writes
//! per changed contact. A ranking by one group reads the top of one ordered range (per phase). A ranking
//! by the weighted total, whose order does change with time when groups decay differently, reads down the
//! ranking by total bound (see [`super::entry`]), computes the exact total of every contact it meets, and
//! stops as soon as the k-th best total is at least the next bound.

use std::time::{Duration, Instant};

use super::LeaderboardError;
use super::entry::{
    BoardEntry, Indexed, entry_key, expired_range, parse_expiry_key, parse_rank_key, ranking_range, total_range,
};
use super::key::RankKey;
use crate::rules::{DecayLaw, Grade, Rules};
use crate::store::{IndexBatch, IndexRange, StateStore};

/// What a leaderboard ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranking {
    /// One group's value.
    Group(usize),
    /// The weighted total.
    Total,
}

/// One ranked contact of a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Contact id.
    pub contact: String,
    /// Value ranked by, at the query time.
    pub score: f64,
    /// Phase index.
    pub phase: usize,
    /// Fit grade at the query time, if the rules define grades.
    pub grade: Option<Grade>,
}

/// Ranking entries read from the store per step, at first: enough for a small query at once; a longer
/// read doubles it up to [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 64;
const MAX_CHUNK: usize = 4096;

/// Most changed contacts that wait to be written to a board's index (a query writes them first).
const MAX_STAGED: usize = 4_096;

/// Longest a changed contact waits to be written to a board's index, so that the per-phase counts of
/// the metrics lag the scoring by about this much at most.
const STAGED_AT_MOST: Duration = Duration::from_secs(1);

/// Changed contacts' latest entries, waiting to be written to a board's index together: a contact that
/// changes in many batches is written once.
#[derive(Debug, Default)]
pub struct Staged {
    changes: foldhash::HashMap<String, Option<BoardEntry>>,
    /// When the oldest waiting change came.
    since: Option<Instant>,
}

impl Staged {
    /// Takes a batch's changed contacts.
    pub fn add(&mut self, changes: Vec<(String, Option<BoardEntry>)>) {
        if changes.is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        self.changes.extend(changes);
    }

    /// Whether the changes are due to be written: [`MAX_STAGED`] of them, or the oldest has waited
    /// [`STAGED_AT_MOST`].
    pub fn due(&self) -> bool {
        self.changes.len() >= MAX_STAGED || self.since.is_some_and(|since| since.elapsed() >= STAGED_AT_MOST)
    }

    /// Takes the changes out, to be written with [`Board::upsert`].
    pub fn take(&mut self) -> Vec<(String, Option<BoardEntry>)> {
        self.since = None;
        self.changes.drain().collect()
    }
}

/// One partition's index, kept in the store's index column family (see [`super::entry`]); in memory only
/// the counts per phase and how far step expiries are caught up with, so memory does not grow with the
/// contacts.
#[derive(Debug)]
pub struct Board {
    partition: i32,
    /// Contacts indexed per phase.
    counts: Vec<usize>,
    /// Every step expiry at or before this time has been caught up with.
    refreshed_to: i64,
}

impl Board {
    /// The board of `partition`, whose index in the store is empty.
    pub fn new(rules: &Rules, partition: i32) -> Board {
        Board { partition, counts: vec![0; rules.phases.len()], refreshed_to: i64::MIN }
    }

    /// Contacts indexed.
    pub fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Whether no contact is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Contacts indexed per phase (disqualified contacts are not indexed).
    pub fn count_by_phase(&self) -> &[usize] {
        &self.counts
    }

    /// Sets contacts' entries; `None` removes one (erased, disqualified or moved away). A contact named
    /// twice keeps its last entry.
    pub fn upsert(
        &mut self,
        rules: &Rules,
        store: &dyn StateStore,
        changes: &[(String, Option<BoardEntry>)],
    ) -> Result<(), LeaderboardError> {
        let mut named = foldhash::HashSet::default();
        let changes: Vec<&(String, Option<BoardEntry>)> =
            changes.iter().rev().filter(|(contact, _)| named.insert(contact.as_str())).collect();
        let keys: Vec<Vec<u8>> = changes.iter().map(|(contact, _)| entry_key(contact)).collect();
        let old = store.index_get(self.partition, &keys)?;
        self.write(rules, store, i64::MIN, changes.into_iter().zip(keys.into_iter().zip(old)))
    }

    /// Files contacts into a board whose index holds none of them (being built), their step groups keyed
    /// as of `now_ms`, so that the first query has no expiries to catch up on.
    pub fn insert_new(
        &mut self,
        rules: &Rules,
        store: &dyn StateStore,
        contacts: &[(String, Option<BoardEntry>)],
        now_ms: i64,
    ) -> Result<(), LeaderboardError> {
        self.write(rules, store, now_ms, contacts.iter().map(|change| (change, (entry_key(&change.0), None))))
    }

    /// Writes each contact's new entry over its stored one (as read at its entry key), keyed as of its
    /// latest group time or `at_ms`, whichever is later.
    fn write<'c>(
        &mut self,
        rules: &Rules,
        store: &dyn StateStore,
        at_ms: i64,
        changes: impl Iterator<Item = (&'c (String, Option<BoardEntry>), (Vec<u8>, Option<Vec<u8>>))>,
    ) -> Result<(), LeaderboardError> {
        let mut batch = IndexBatch::new(self.partition);
        for ((contact, entry), (key, old)) in changes {
            let old = old.map(|old| self.decode(&old)).transpose()?;
            if let Some(count) = old.as_ref().and_then(|old| self.counts.get_mut(old.entry.phase)) {
                *count = count.saturating_sub(1);
            }
            let valid =
                |entry: &&BoardEntry| entry.phase < self.counts.len() && entry.groups.len() == rules.groups.len();
            let new = entry.as_ref().filter(valid).map(|entry| {
                let since = entry.groups.iter().map(|score| score.since_ms).max().unwrap_or(i64::MIN);
                self.counts[entry.phase] += 1;
                let mut indexed = Indexed::new(rules, entry.clone(), since.max(at_ms));
                if let Some(due) = indexed.next_expiry {
                    // An entry older than the last catch-up may expire before it.
                    self.refreshed_to = self.refreshed_to.min(due.saturating_sub(1));
                }
                // A bound that is still at least the new one stays: the contact is not refiled for it.
                if let Some(old) = old.as_ref().filter(|old| old.entry.phase == entry.phase) {
                    indexed.bound = indexed.bound.max(old.bound);
                }
                indexed
            });
            if old.as_ref().map(|old| &old.entry) != new.as_ref().map(|new| &new.entry) {
                refile(&mut batch, contact, key, old.as_ref(), new.as_ref());
            }
        }
        Ok(store.index_write(batch)?)
    }

    /// Re-keys every contact whose step contributions expired by `now_ms`.
    fn refresh(&mut self, rules: &Rules, store: &dyn StateStore, now_ms: i64) -> Result<(), LeaderboardError> {
        // Expiries up to `refreshed_to` are done: the scan starts after them, not over what they left
        // deleted.
        let (mut from, to) = expired_range(self.refreshed_to, now_ms);
        self.refreshed_to = self.refreshed_to.max(now_ms);
        loop {
            let range = IndexRange { from: &from, to: &to, reverse: false, limit: MAX_CHUNK };
            let due = store.index_range(self.partition, range)?;
            if due.is_empty() {
                return Ok(());
            }
            let contacts: Vec<String> = due
                .iter()
                .map(|(key, _)| parse_expiry_key(key).map(str::to_owned).ok_or_else(|| self.corrupt("an expiry key")))
                .collect::<Result<_, _>>()?;
            let keys: Vec<Vec<u8>> = contacts.iter().map(|contact| entry_key(contact)).collect();
            let entries = store.index_get(self.partition, &keys)?;
            if let Some((last, _)) = due.last() {
                from = [last.as_slice(), &[0]].concat();
            }
            let mut batch = IndexBatch::new(self.partition);
            batch.deletes.extend(due.into_iter().map(|(key, _)| key));
            for ((contact, key), old) in contacts.iter().zip(keys).zip(entries) {
                let Some(old) = old else { continue };
                let old = self.decode(&old)?;
                let new = Indexed::new(rules, old.entry.clone(), now_ms);
                refile(&mut batch, contact, key, Some(&old), Some(&new));
            }
            store.index_write(batch)?;
        }
    }

    /// The top `limit` contacts by `ranking` at `now_ms`, optionally in one phase, best first.
    pub fn top(
        &mut self,
        rules: &Rules,
        store: &dyn StateStore,
        query: Query,
        now_ms: i64,
    ) -> Result<Vec<Ranked>, LeaderboardError> {
        self.refresh(rules, store, now_ms)?;
        let phases: Vec<usize> = match query.phase {
            Some(phase) => (phase < self.counts.len()).then_some(phase).into_iter().collect(),
            None => (0..self.counts.len()).collect(),
        };
        let mut ranked = match query.ranking {
            Ranking::Group(group) if group < rules.groups.len() => {
                let ranges = phases.iter().map(|phase| ranking_range(*phase, group)).collect();
                let mut stream = Merged::new(store, self.partition, ranges)?;
                let mut contacts = Vec::with_capacity(query.limit);
                while contacts.len() < query.limit
                    && let Some((_, contact)) = stream.next()?
                {
                    contacts.push(contact);
                }
                let entries = self.entries(store, &contacts)?;
                let found = contacts.into_iter().zip(entries);
                found
                    .filter_map(|(contact, entry)| {
                        entry.map(|entry| (entry.value(rules, group, now_ms), contact, entry))
                    })
                    .collect()
            }
            Ranking::Group(_) => Vec::new(),
            Ranking::Total => self.top_total(rules, store, &phases, query.limit, now_ms)?,
        };
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        ranked.truncate(query.limit);
        Ok(ranked
            .into_iter()
            .map(|(score, contact, entry)| {
                let grade = rules.grades.map(|grades| grades.grade(entry.value(rules, grades.group, now_ms)));
                Ranked { contact, score, phase: entry.phase, grade }
            })
            .collect())
    }

    /// The best totals, read down the ranking by total bound until the `limit`-th best total is at least
    /// the next bound. A contact read whose bound has come down since it was made (its groups decayed or
    /// its step contributions expired) is filed under its bound as of now, so that the next query reads
    /// past fewer contacts that can no longer rank.
    fn top_total(
        &self,
        rules: &Rules,
        store: &dyn StateStore,
        phases: &[usize],
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<(f64, String, BoardEntry)>, LeaderboardError> {
        let ranges = phases.iter().map(|phase| total_range(*phase)).collect();
        let mut stream = Merged::new(store, self.partition, ranges)?;
        let mut best: Vec<(f64, String, BoardEntry)> = Vec::with_capacity(limit + 1);
        let mut rekeyed = IndexBatch::new(self.partition);
        let mut round = FIRST_CHUNK / 2;
        let done = 'read: loop {
            let mut read = Vec::with_capacity(round);
            while read.len() < round
                && let Some(next) = stream.next()?
            {
                read.push(next);
            }
            if read.is_empty() {
                break 'read best;
            }
            let keys: Vec<Vec<u8>> = read.iter().map(|(_, contact)| entry_key(contact)).collect();
            let stored = store.index_get(self.partition, &keys)?;
            for (((bound, contact), key), stored) in read.into_iter().zip(keys).zip(stored) {
                let bound = bound.value_at(DecayLaw::None, now_ms);
                if best.len() == limit && best.last().is_some_and(|(total, _, _)| *total >= bound) {
                    break 'read best;
                }
                let Some(stored) = stored else { continue };
                let indexed = self.decode(&stored)?;
                let now_bound = super::entry::total_bound(rules, &indexed.entry, now_ms);
                if now_bound < indexed.bound {
                    let lowered = Indexed { bound: now_bound, ..indexed.clone() };
                    refile(&mut rekeyed, &contact, key, Some(&indexed), Some(&lowered));
                }
                let total = indexed.entry.total(rules, now_ms);
                let at = best.partition_point(|(score, _, _)| *score >= total);
                if at < limit {
                    best.insert(at, (total, contact, indexed.entry));
                    best.truncate(limit);
                }
            }
            round = (round * 2).min(MAX_CHUNK);
        };
        store.index_write(rekeyed)?;
        Ok(done)
    }

    /// The entries of `contacts`, in order; `None` for one not indexed.
    fn entries(
        &self,
        store: &dyn StateStore,
        contacts: &[String],
    ) -> Result<Vec<Option<BoardEntry>>, LeaderboardError> {
        let keys: Vec<Vec<u8>> = contacts.iter().map(|contact| entry_key(contact)).collect();
        let values = store.index_get(self.partition, &keys)?;
        values
            .into_iter()
            .map(|value| value.map(|bytes| self.decode(&bytes).map(|indexed| indexed.entry)).transpose())
            .collect()
    }

    fn decode(&self, bytes: &[u8]) -> Result<Indexed, LeaderboardError> {
        Indexed::decode(bytes).ok_or_else(|| self.corrupt("an entry"))
    }

    fn corrupt(&self, what: &str) -> LeaderboardError {
        LeaderboardError::Corrupt {
            partition: self.partition,
            reason: format!("the leaderboard index holds {what} it cannot read"),
        }
    }
}

/// Adds to `batch` what moves `contact` from its `old` filing to its `new` one: the keys only one of them
/// has, and the entry at `entry_key`. Most changes move one group's key; the others stay where they are.
fn refile(batch: &mut IndexBatch, contact: &str, entry_key: Vec<u8>, old: Option<&Indexed>, new: Option<&Indexed>) {
    let old_keys = old.map(|old| old.index_keys(contact)).unwrap_or_default();
    let new_keys = new.map(|new| new.index_keys(contact)).unwrap_or_default();
    batch.deletes.extend(old_keys.iter().filter(|key| !new_keys.contains(key)).cloned());
    match new {
        Some(new) => {
            let added = new_keys.into_iter().filter(|key| !old_keys.contains(key));
            batch.puts.extend(added.map(|key| (key, Vec::new())));
            batch.puts.push((entry_key, new.encode()));
        }
        None => batch.deletes.push(entry_key),
    }
}

/// What a leaderboard query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// What to rank by.
    pub ranking: Ranking,
    /// Only this phase, or every phase.
    pub phase: Option<usize>,
    /// Most contacts returned.
    pub limit: usize,
}

/// One ranking within one phase (a key range), read from the store a chunk at a time, highest key first.
struct Stream<'s> {
    store: &'s dyn StateStore,
    partition: i32,
    from: Vec<u8>,
    to: Vec<u8>,
    chunk: usize,
    buffer: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    exhausted: bool,
}

impl<'s> Stream<'s> {
    fn next(&mut self) -> Result<Option<(RankKey, String)>, LeaderboardError> {
        loop {
            if let Some((key, _)) = self.buffer.next() {
                let (rank, contact) = parse_rank_key(&key).ok_or_else(|| LeaderboardError::Corrupt {
                    partition: self.partition,
                    reason: "the leaderboard index holds a ranking key it cannot read".to_owned(),
                })?;
                return Ok(Some((rank, contact.to_owned())));
            }
            if self.exhausted {
                return Ok(None);
            }
            let range = IndexRange { from: &self.from, to: &self.to, reverse: true, limit: self.chunk };
            let entries = self.store.index_range(self.partition, range)?;
            self.exhausted = entries.len() < self.chunk;
            // The next chunk starts below the last key read.
            if let Some((last, _)) = entries.last() {
                self.to.clone_from(last);
            }
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
            self.buffer = entries.into_iter();
        }
    }
}

/// Rankings of several phases (key ranges) merged into one stream, best first.
struct Merged<'s> {
    streams: Vec<Stream<'s>>,
    heads: Vec<Option<(RankKey, String)>>,
}

impl<'s> Merged<'s> {
    fn new(
        store: &'s dyn StateStore,
        partition: i32,
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Merged<'s>, LeaderboardError> {
        let mut streams: Vec<Stream<'s>> = ranges
            .into_iter()
            .map(|(from, to)| Stream {
                store,
                partition,
                from,
                to,
                chunk: FIRST_CHUNK,
                buffer: Vec::new().into_iter(),
                exhausted: false,
            })
            .collect();
        let heads = streams.iter_mut().map(Stream::next).collect::<Result<_, _>>()?;
        Ok(Merged { streams, heads })
    }

    fn next(&mut self) -> Result<Option<(RankKey, String)>, LeaderboardError> {
        let mut pick: Option<usize> = None;
        for (at, head) in self.heads.iter().enumerate() {
            let Some((key, _)) = head else { continue };
            let better = pick.is_none_or(|best| {
                let best_key = self.heads[best].as_ref().map_or(RankKey::MIN, |(key, _)| *key);
                *key > best_key
            });
            if better {
                pick = Some(at);
            }
        }
        let Some(at) = pick else { return Ok(None) };
        let next = self.streams[at].next()?;
        Ok(std::mem::replace(&mut self.heads[at], next))
    }
}

#[cfg(test)]
mod tests;
