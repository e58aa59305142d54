//! What the leaderboard keeps of a contact ([`BoardEntry`]), the keys it is ranked by, and how both are
//! laid out in the store's index column family:
//!
//! | key (after the partition)                              | value                         |
//! |--------------------------------------------------------|-------------------------------|
//! | `e` ++ contact id                                      | the contact's [`Indexed`]     |
//! | `r` ++ phase (u16 BE) ++ group (u16 BE) ++ rank key ++ contact id | empty              |
//! | `t` ++ phase (u16 BE) ++ 0 (u16) ++ total bound ++ contact id | empty                  |
//! | `x` ++ due ms (i64, sign-flipped BE) ++ contact id     | empty                         |
//!
//! A group's ranking within a phase is one ordered range of `r` keys, read from its best end; `x` keys
//! are the step-expiry instants at which a contact's step keys go stale, in time order. The weighted
//! total has no key that keeps its order as time passes (groups decay at different rates), so `t` keys
//! order contacts by a bound: the most their total can reach from the time the bound was made on. A
//! ranking by total reads them from the top and stops once the totals it has are at least the next
//! bound.

use super::key::RankKey;
use crate::rules::{DecayLaw, Rules};
use crate::scoring::{ContactState, Contribution, GroupScore};

const ENTRY: u8 = b'e';
const RANK: u8 = b'r';
const EXPIRY: u8 = b'x';
const TOTAL: u8 = b't';
/// Width of a rank key's prefix: tag, phase, group.
const RANK_PREFIX_LEN: usize = 5;

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
        let mut groups = state.value_groups(rules);
        // A group with nothing in it reads 0 at any time: its time means nothing, and is left out of
        // the stored entry.
        for score in groups.iter_mut().filter(|score| score.is_empty()) {
            score.since_ms = 0;
        }
        Some(BoardEntry { phase: state.phase, groups })
    }

    /// Group `index`'s value at `at_ms`, exactly as the contact view reads it.
    pub fn value(&self, rules: &Rules, index: usize, at_ms: i64) -> f64 {
        match (rules.groups.get(index), self.groups.get(index)) {
            (Some(group), Some(score)) => score.value_at(group, at_ms.max(score.since_ms)),
            _ => 0.0,
        }
    }

    /// Whether the contact is listed in group `index`'s ranking: once it has points there, a value or
    /// step contributions still to count. A contact never scored in a group (or reset there by a phase)
    /// is not, which keeps most of a scorecard's group keys out of the index: a contact usually scores in
    /// one or two of its groups.
    pub fn ranks_in(&self, index: usize) -> bool {
        self.groups.get(index).is_some_and(|score| score.value != 0.0 || !score.contributions.is_empty())
    }

    /// The weighted total at `at_ms`.
    pub fn total(&self, rules: &Rules, at_ms: i64) -> f64 {
        (0..rules.groups.len())
            .fold(0.0, |total, index| total + rules.groups[index].weight * self.value(rules, index, at_ms))
    }
}

/// A contact as indexed: its entry, the rank key per group it is filed under, the bound its total is
/// filed under, and the earliest time a step key goes stale.
#[derive(Debug, Clone, PartialEq)]
pub struct Indexed {
    /// What the ranking reads.
    pub entry: BoardEntry,
    /// One key per group; only those of the groups it [ranks in](BoardEntry::ranks_in) are filed.
    pub keys: Vec<RankKey>,
    /// At least the weighted total at any time from when it was made on.
    pub bound: f64,
    /// Earliest expiry, after the time the step keys were computed at, of any step group's contribution.
    pub next_expiry: Option<i64>,
}

impl Indexed {
    /// Files `entry` with its keys as of `at_ms`: step groups are keyed by their value then, valid until
    /// the next expiry; the others by their time-invariant key.
    pub fn new(rules: &Rules, entry: BoardEntry, at_ms: i64) -> Indexed {
        let mut next_expiry: Option<i64> = None;
        let keys = rules
            .groups
            .iter()
            .zip(&entry.groups)
            .map(|(group, score)| match group.decay {
                // Not filed (see `BoardEntry::ranks_in`), and not stored.
                _ if score.is_empty() => RankKey::of_value(0.0),
                DecayLaw::Step { .. } => {
                    let read_at = at_ms.max(score.since_ms);
                    let next = score.contributions.iter().filter_map(|c| c.expires_at_ms).filter(|end| *end > read_at);
                    if let Some(next) = next.min() {
                        next_expiry = Some(next_expiry.map_or(next, |old| old.min(next)));
                    }
                    RankKey::of_value(score.value_at(group, read_at))
                }
                decay => RankKey::of(decay, score.value, score.since_ms),
            })
            .collect();
        let bound = total_bound(rules, &entry, at_ms);
        Indexed { entry, keys, bound, next_expiry }
    }

    /// The `r`, `t` and `x` keys this contact is filed under.
    pub fn index_keys(&self, contact: &str) -> Vec<Vec<u8>> {
        let listed = self.keys.iter().enumerate().filter(|(group, _)| self.entry.ranks_in(*group));
        let ranks = listed.map(|(group, key)| rank_key(self.entry.phase, group, *key, contact));
        let total = total_key(self.entry.phase, RankKey::of_value(self.bound), contact);
        ranks.chain([total]).chain(self.next_expiry.map(|due| expiry_key(due, contact))).collect()
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.keys.len() * 40);
        out.extend_from_slice(&(self.entry.phase as u16).to_le_bytes());
        out.extend_from_slice(&self.next_expiry.unwrap_or(i64::MIN).to_le_bytes());
        out.extend_from_slice(&self.bound.to_le_bytes());
        out.push(self.keys.len() as u8);
        for (key, score) in self.keys.iter().zip(&self.entry.groups) {
            // A group with nothing in it is one byte: most of a contact's groups are.
            out.push(u8::from(!score.is_empty()));
            if score.is_empty() {
                continue;
            }
            out.extend_from_slice(&key.to_bytes());
            out.extend_from_slice(&score.value.to_le_bytes());
            out.extend_from_slice(&score.since_ms.to_le_bytes());
            out.extend_from_slice(&(score.contributions.len() as u16).to_le_bytes());
            for contribution in &score.contributions {
                out.extend_from_slice(&contribution.source.to_le_bytes());
                out.extend_from_slice(&contribution.points.to_le_bytes());
                out.extend_from_slice(&contribution.expires_at_ms.unwrap_or(i64::MIN).to_le_bytes());
            }
        }
        out
    }

    /// Reads the stored form back; `None` if it is not one (the index is then rebuilt by reopening).
    pub fn decode(bytes: &[u8]) -> Option<Indexed> {
        let mut reader = Reader(bytes);
        let phase = usize::from(u16::from_le_bytes(reader.take()?));
        let next_expiry = Some(i64::from_le_bytes(reader.take()?)).filter(|due| *due != i64::MIN);
        let bound = f64::from_le_bytes(reader.take()?);
        let [groups] = reader.take()?;
        let mut keys = Vec::with_capacity(usize::from(groups));
        let mut scores = Vec::with_capacity(usize::from(groups));
        for _ in 0..groups {
            let [stored] = reader.take()?;
            if stored == 0 {
                keys.push(RankKey::of_value(0.0));
                scores.push(GroupScore::empty(0));
                continue;
            }
            keys.push(RankKey::from_bytes(reader.take()?));
            let value = f64::from_le_bytes(reader.take()?);
            let since_ms = i64::from_le_bytes(reader.take()?);
            let count = u16::from_le_bytes(reader.take()?);
            let mut contributions = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let source = u32::from_le_bytes(reader.take()?);
                let points = f64::from_le_bytes(reader.take()?);
                let expires_at_ms = Some(i64::from_le_bytes(reader.take()?)).filter(|at| *at != i64::MIN);
                contributions.push(Contribution { source, points, expires_at_ms });
            }
            let score = GroupScore { value, since_ms, contributions };
            // An empty group is written as one byte, never in full.
            if stored != 1 || score.is_empty() {
                return None;
            }
            scores.push(score);
        }
        let entry = BoardEntry { phase, groups: scores };
        reader.0.is_empty().then_some(Indexed { entry, keys, bound, next_expiry })
    }
}

/// The most `entry`'s weighted total can reach at any time from `at_ms` on (each group read from its own
/// time if that is later). A decaying value only moves toward 0, and a step group only loses
/// contributions, so each group's weighted value is at most what it is then, or 0, or, for a step group,
/// what its contributions of the weight's sign alone make.
pub fn total_bound(rules: &Rules, entry: &BoardEntry, at_ms: i64) -> f64 {
    rules.groups.iter().zip(&entry.groups).fold(0.0, |sum, (group, score)| {
        let at = at_ms.max(score.since_ms);
        let most = match group.decay {
            DecayLaw::Step { .. } => {
                let live = score.contributions.iter().filter(|c| c.expires_at_ms.is_none_or(|end| end > at));
                let same_sign = live.filter(|c| c.points * group.weight > 0.0).fold(0.0, |sum, c| sum + c.points);
                group.weight * same_sign.clamp(group.min, group.max)
            }
            _ => group.weight * score.value_at(group, at),
        };
        sum + most.max(0.0)
    })
}

/// A cursor over a stored entry.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

/// The key of a contact's [`Indexed`].
pub fn entry_key(contact: &str) -> Vec<u8> {
    [&[ENTRY][..], contact.as_bytes()].concat()
}

/// The start of group `group`'s ranking within phase `phase`.
fn rank_prefix(phase: usize, group: usize) -> [u8; RANK_PREFIX_LEN] {
    let [p0, p1] = (phase as u16).to_be_bytes();
    let [g0, g1] = (group as u16).to_be_bytes();
    [RANK, p0, p1, g0, g1]
}

/// A contact's place in group `group`'s ranking within phase `phase`.
fn rank_key(phase: usize, group: usize, key: RankKey, contact: &str) -> Vec<u8> {
    [&rank_prefix(phase, group)[..], &key.to_bytes(), contact.as_bytes()].concat()
}

/// A contact's place in the ranking by total bound within phase `phase`.
fn total_key(phase: usize, bound: RankKey, contact: &str) -> Vec<u8> {
    let [p0, p1] = (phase as u16).to_be_bytes();
    [&[TOTAL, p0, p1, 0, 0][..], &bound.to_bytes(), contact.as_bytes()].concat()
}

/// The key range `[from, to)` of the ranking by total bound within phase `phase`.
pub fn total_range(phase: usize) -> (Vec<u8>, Vec<u8>) {
    let [p0, p1] = (phase as u16).to_be_bytes();
    let prefix = [TOTAL, p0, p1, 0, 0];
    (prefix.to_vec(), [&prefix[..], &[0xff]].concat())
}

/// The key range `[from, to)` of group `group`'s ranking within phase `phase`.
pub fn ranking_range(phase: usize, group: usize) -> (Vec<u8>, Vec<u8>) {
    let prefix = rank_prefix(phase, group);
    // Every rank key's first byte is a sign class below 0xff, so this bounds the whole ranking.
    (prefix.to_vec(), [&prefix[..], &[0xff]].concat())
}

/// The rank key (or bound) and contact id of an `r` or `t` key.
pub fn parse_rank_key(key: &[u8]) -> Option<(RankKey, &str)> {
    let rest = key.get(RANK_PREFIX_LEN..)?;
    let (rank, contact) = rest.split_first_chunk::<{ RankKey::BYTES }>()?;
    Some((RankKey::from_bytes(*rank), std::str::from_utf8(contact).ok()?))
}

fn due_bytes(due_ms: i64) -> [u8; 8] {
    (due_ms.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

/// The key of a step-expiry instant.
fn expiry_key(due_ms: i64, contact: &str) -> Vec<u8> {
    [&[EXPIRY][..], &due_bytes(due_ms), contact.as_bytes()].concat()
}

/// The key range `[from, to)` of every expiry instant after `after_ms` and at or before `now_ms`.
pub fn expired_range(after_ms: i64, now_ms: i64) -> (Vec<u8>, Vec<u8>) {
    let start = |at: i64| match at.checked_add(1) {
        Some(next) => [&[EXPIRY][..], &due_bytes(next)].concat(),
        None => vec![EXPIRY + 1],
    };
    (start(after_ms), start(now_ms))
}

/// The contact id of an `x` key.
pub fn parse_expiry_key(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(1 + 8..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_written() {
        let entry = BoardEntry {
            phase: 3,
            groups: vec![
                GroupScore { value: 12.5, since_ms: 1_772_366_400_000, contributions: Vec::new() },
                GroupScore {
                    value: -4.0,
                    since_ms: -5,
                    contributions: vec![
                        Contribution { source: 7, points: -4.0, expires_at_ms: Some(9) },
                        Contribution { source: 8, points: 0.0, expires_at_ms: None },
                    ],
                },
                GroupScore::empty(0),
            ],
        };
        let keys = vec![RankKey::of_value(12.5), RankKey::of_value(-4.0), RankKey::of_value(0.0)];
        let indexed = Indexed { entry, keys, bound: 12.5, next_expiry: Some(9) };
        assert_eq!(Indexed::decode(&indexed.encode()), Some(indexed.clone()));
        let without_expiry = Indexed { next_expiry: None, ..indexed };
        let bytes = without_expiry.encode();
        assert_eq!(Indexed::decode(&bytes), Some(without_expiry));
        assert_eq!(Indexed::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Indexed::decode(&[bytes.as_slice(), b"x"].concat()), None);
    }

    #[test]
    fn keys_stay_inside_their_ranges() {
        let (from, to) = ranking_range(1, 2);
        for value in [f64::NEG_INFINITY, -3.0, 0.0, 7.0, f64::MAX] {
            let key = rank_key(1, 2, RankKey::of_value(value), "\u{10ffff}");
            assert!(from <= key && key < to, "{value}");
            assert_eq!(parse_rank_key(&key), Some((RankKey::of_value(value), "\u{10ffff}")));
        }
        assert!(rank_key(1, 3, RankKey::MIN, "") >= to);
        let (from, to) = expired_range(i64::MIN, 100);
        assert!(expiry_key(i64::MIN, "c") < from && from <= expiry_key(i64::MIN + 1, ""));
        assert!(expiry_key(100, "\u{10ffff}") < to && expiry_key(101, "") >= to);
        assert!(expiry_key(i64::MAX, "c") < expired_range(0, i64::MAX).1);
        assert!(expiry_key(50, "\u{10ffff}") < expired_range(50, 100).0);
        assert_eq!(parse_expiry_key(&expiry_key(-1, "c-1")), Some("c-1"));
    }
}
