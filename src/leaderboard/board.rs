//! One partition's leaderboard index: per phase and per group, contacts ordered by their [`RankKey`].
//!
//! Updates are O(groups · log n) per changed contact. A ranking by one group reads the top of one
//! ordered set. A ranking by the weighted total, whose order does change with time when groups decay
//! differently, is answered exactly with Fagin's threshold algorithm over the per-group sets: it reads
//! the groups' sets in parallel from the top, computes the exact total of every contact it meets, and
//! stops as soon as the k-th best total is at least the best total an unseen contact could still have.

use std::collections::{BTreeSet, HashMap};

use super::key::RankKey;
use crate::rules::{DecayLaw, Grade, Rules};
use crate::scoring::{ContactState, GroupScore};

/// What the index keeps of a contact: its phase and what its group values need to be read at any time.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardEntry {
    /// Phase index.
    pub phase: usize,
    /// Per group: value and time; contributions only for step-expiry groups, which need them.
    pub groups: Vec<GroupScore>,
}

impl BoardEntry {
    /// The entry of a contact, or `None` if it does not rank (a disqualified contact is not a lead).
    pub fn of(rules: &Rules, state: &ContactState) -> Option<BoardEntry> {
        if state.disqualified.is_some() {
            return None;
        }
        let groups = rules
            .groups
            .iter()
            .zip(&state.groups)
            .map(|(group, score)| match group.decay {
                DecayLaw::Step { .. } => score.clone(),
                _ => GroupScore { value: score.value, since_ms: score.since_ms, contributions: Vec::new() },
            })
            .collect();
        Some(BoardEntry { phase: state.phase, groups })
    }

    /// Group `index`'s value at `at_ms`, exactly as the contact view reads it.
    pub fn value(&self, rules: &Rules, index: usize, at_ms: i64) -> f64 {
        match (rules.groups.get(index), self.groups.get(index)) {
            (Some(group), Some(score)) => score.value_at(group, at_ms.max(score.since_ms)),
            _ => 0.0,
        }
    }

    /// The weighted total at `at_ms`.
    pub fn total(&self, rules: &Rules, at_ms: i64) -> f64 {
        (0..rules.groups.len())
            .fold(0.0, |total, index| total + rules.groups[index].weight * self.value(rules, index, at_ms))
    }
}

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

struct Slot {
    contact: String,
    entry: BoardEntry,
    keys: Vec<RankKey>,
    /// Earliest expiry, after the time the step keys were computed at, of any step group's contribution.
    next_expiry: Option<i64>,
}

/// One group's ordered entries, read from the best end.
type KeyStream<'a> = Box<dyn Iterator<Item = &'a (RankKey, u32)> + 'a>;

/// The index of one partition.
#[derive(Default)]
pub struct Board {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: HashMap<String, u32>,
    /// `sets[phase][group]`. A query over every phase merges the phases' sets as it reads them.
    sets: Vec<Vec<BTreeSet<(RankKey, u32)>>>,
    /// Contacts whose step keys go stale at a time: re-keyed before a query reads past it.
    expiries: BTreeSet<(i64, u32)>,
    /// The latest time any key was made at; from then on keys read back exactly as values.
    latest_key_ms: i64,
}

impl Board {
    /// An empty index for `rules`.
    pub fn new(rules: &Rules) -> Board {
        let sets = (0..rules.phases.len()).map(|_| rules.groups.iter().map(|_| BTreeSet::new()).collect()).collect();
        Board { sets, latest_key_ms: i64::MIN, ..Board::default() }
    }

    /// Contacts indexed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no contact is indexed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Contacts indexed per phase (disqualified contacts are not indexed).
    pub fn count_by_phase(&self) -> Vec<usize> {
        self.sets.iter().map(|groups| groups.first().map_or(0, BTreeSet::len)).collect()
    }

    /// Sets a contact's entry; `None` removes it (erased, disqualified or moved away).
    pub fn upsert(&mut self, rules: &Rules, contact: &str, entry: Option<BoardEntry>) {
        self.remove(contact);
        let Some(entry) = entry else {
            return;
        };
        if entry.phase >= self.sets.len() || entry.groups.len() != rules.groups.len() {
            return;
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let mut slot = Slot { contact: contact.to_owned(), entry, keys: Vec::new(), next_expiry: None };
        let since = slot.entry.groups.iter().map(|score| score.since_ms).max().unwrap_or(i64::MIN);
        self.latest_key_ms = self.latest_key_ms.max(since);
        rekey(rules, &mut slot, since);
        self.link(index, &slot);
        self.ids.insert(contact.to_owned(), index);
        self.slots[index as usize] = Some(slot);
    }

    /// Removes a contact, if indexed.
    pub fn remove(&mut self, contact: &str) {
        let Some(index) = self.ids.remove(contact) else {
            return;
        };
        if let Some(slot) = self.slots[index as usize].take() {
            self.unlink(index, &slot);
            self.free.push(index);
        }
    }

    fn link(&mut self, index: u32, slot: &Slot) {
        for (group, key) in slot.keys.iter().enumerate() {
            self.sets[slot.entry.phase][group].insert((*key, index));
        }
        if let Some(due) = slot.next_expiry {
            self.expiries.insert((due, index));
        }
    }

    fn unlink(&mut self, index: u32, slot: &Slot) {
        for (group, key) in slot.keys.iter().enumerate() {
            self.sets[slot.entry.phase][group].remove(&(*key, index));
        }
        if let Some(due) = slot.next_expiry {
            self.expiries.remove(&(due, index));
        }
    }

    /// Re-keys every contact whose step contributions expired by `now_ms`.
    fn refresh(&mut self, rules: &Rules, now_ms: i64) {
        while let Some(&(due, index)) = self.expiries.first() {
            if due > now_ms {
                break;
            }
            let Some(mut slot) = self.slots[index as usize].take() else {
                self.expiries.pop_first();
                continue;
            };
            self.unlink(index, &slot);
            rekey(rules, &mut slot, now_ms);
            self.link(index, &slot);
            self.slots[index as usize] = Some(slot);
        }
    }

    /// The top `limit` contacts by `ranking` at `now_ms`, optionally in one phase, best first.
    pub fn top(
        &mut self,
        rules: &Rules,
        ranking: Ranking,
        phase: Option<usize>,
        limit: usize,
        now_ms: i64,
    ) -> Vec<Ranked> {
        self.refresh(rules, now_ms);
        let phases: Vec<&[BTreeSet<(RankKey, u32)>]> = match phase {
            Some(phase) => self.sets.get(phase).map(Vec::as_slice).into_iter().collect(),
            None => self.sets.iter().map(Vec::as_slice).collect(),
        };
        let mut ranked: Vec<(f64, u32)> = match ranking {
            Ranking::Group(group) if group < rules.groups.len() => merged(&phases, group, true)
                .take(limit)
                .filter_map(|(_, index)| self.entry(*index).map(|entry| (entry.value(rules, group, now_ms), *index)))
                .collect(),
            Ranking::Group(_) => Vec::new(),
            Ranking::Total => self.top_total(rules, &phases, limit, now_ms),
        };
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| self.contact(a.1).cmp(self.contact(b.1))));
        ranked.truncate(limit);
        ranked
            .into_iter()
            .filter_map(|(score, index)| {
                let slot = self.slots[index as usize].as_ref()?;
                let grade = rules.grades.map(|grades| grades.grade(slot.entry.value(rules, grades.group, now_ms)));
                Some(Ranked { contact: slot.contact.clone(), score, phase: slot.entry.phase, grade })
            })
            .collect()
    }

    /// Fagin's threshold algorithm over the groups with a weight.
    fn top_total<'a>(
        &'a self,
        rules: &Rules,
        phases: &[&'a [BTreeSet<(RankKey, u32)>]],
        limit: usize,
        now_ms: i64,
    ) -> Vec<(f64, u32)> {
        // Each stream yields contacts in order of decreasing weighted group value.
        let mut streams: Vec<(usize, KeyStream<'a>)> = Vec::new();
        for (group, spec) in rules.groups.iter().enumerate() {
            if spec.weight != 0.0 {
                streams.push((group, merged(phases, group, spec.weight > 0.0)));
            }
        }
        // Keys read back exactly once the query time is past every key's time; before that (event times
        // ahead of the wall clock), bounds come from the contacts themselves.
        let keys_exact = now_ms >= self.latest_key_ms;
        let mut seen = vec![0u64; self.slots.len().div_ceil(64)];
        if streams.is_empty() {
            // Every weight is 0: every total is 0; any contacts will do.
            return merged(phases, 0, true).take(limit).map(|(_, index)| (0.0, *index)).collect();
        }
        let mut best: Vec<(f64, u32)> = Vec::with_capacity(limit + 1);
        let mut bounds = vec![f64::INFINITY; streams.len()];
        loop {
            let mut advanced = false;
            for (position, (group, stream)) in streams.iter_mut().enumerate() {
                let Some(&(key, index)) = stream.next() else {
                    bounds[position] = f64::NEG_INFINITY;
                    continue;
                };
                advanced = true;
                let weight = rules.groups[*group].weight;
                let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
                let unseen = seen[word] & bit == 0;
                if keys_exact {
                    bounds[position] = weight * key.value_at(rules.groups[*group].decay, now_ms);
                    if !unseen {
                        continue;
                    }
                }
                let Some(entry) = self.entry(index) else {
                    continue;
                };
                if !keys_exact {
                    bounds[position] = weight * entry.value(rules, *group, now_ms);
                }
                if unseen {
                    seen[word] |= bit;
                    let total = entry.total(rules, now_ms);
                    let at = best.partition_point(|(score, _)| *score >= total);
                    if at < limit {
                        best.insert(at, (total, index));
                        best.truncate(limit);
                    }
                }
            }
            if !advanced {
                return best;
            }
            let threshold: f64 = bounds.iter().filter(|bound| bound.is_finite()).sum();
            let exhausted = bounds.iter().all(|bound| *bound == f64::NEG_INFINITY);
            if exhausted || (best.len() == limit && best.last().is_some_and(|(score, _)| *score >= threshold)) {
                return best;
            }
        }
    }

    fn entry(&self, index: u32) -> Option<&BoardEntry> {
        self.slots.get(index as usize)?.as_ref().map(|slot| &slot.entry)
    }

    fn contact(&self, index: u32) -> &str {
        self.slots.get(index as usize).and_then(Option::as_ref).map_or("", |slot| slot.contact.as_str())
    }
}

/// Group `group`'s entries of every set in `phases`, merged into one stream from the highest key
/// (`descending`) or the lowest.
fn merged<'a>(phases: &[&'a [BTreeSet<(RankKey, u32)>]], group: usize, descending: bool) -> KeyStream<'a> {
    let mut streams: Vec<KeyStream<'a>> = phases
        .iter()
        .filter_map(|sets| sets.get(group))
        .map(|set| -> KeyStream<'a> {
            if descending { Box::new(set.iter().rev()) } else { Box::new(set.iter()) }
        })
        .collect();
    if streams.len() == 1 {
        return streams.remove(0);
    }
    let mut heads: Vec<Option<&'a (RankKey, u32)>> = streams.iter_mut().map(Iterator::next).collect();
    Box::new(std::iter::from_fn(move || {
        let next = (0..heads.len()).filter(|at| heads[*at].is_some()).reduce(|best, at| {
            let better = if descending { heads[at] > heads[best] } else { heads[at] < heads[best] };
            if better { at } else { best }
        })?;
        let head = heads[next];
        heads[next] = streams[next].next();
        head
    }))
}

/// Computes a slot's keys; step groups are keyed by their value at `at_ms`, valid until the next expiry.
fn rekey(rules: &Rules, slot: &mut Slot, at_ms: i64) {
    slot.next_expiry = None;
    slot.keys = rules
        .groups
        .iter()
        .zip(&slot.entry.groups)
        .map(|(group, score)| match group.decay {
            DecayLaw::Step { .. } => {
                let read_at = at_ms.max(score.since_ms);
                if let Some(next) =
                    score.contributions.iter().filter_map(|c| c.expires_at_ms).filter(|end| *end > read_at).min()
                {
                    slot.next_expiry = Some(slot.next_expiry.map_or(next, |old: i64| old.min(next)));
                }
                RankKey::of_value(score.value_at(group, read_at))
            }
            decay => RankKey::of(decay, score.value, score.since_ms),
        })
        .collect();
}

#[cfg(test)]
mod tests;
