//! The ordering key of a contact in one group's ranking, chosen so that the order of two contacts never
//! changes as time passes ("forward decay"). The index then never has to re-sort when the clock moves.
//!
//! For a group value `v` last changed at `t0` (its `since_ms`), read at `t ≥ t0`:
//!
//! - **no decay**: `v(t) = v`; the key is `v`.
//! - **exponential** with half-life `h`: `v(t) = v·2^(−(t−t0)/h)`. For `v > 0`,
//!   `log2 v(t) = (log2 v + t0/h) − t/h`, so `log2 v + t0/h` orders contacts the same way at every `t`.
//!   For `v < 0` the magnitude shrinks the same way and the order flips: the key is `−(log2 |v| + t0/h)`.
//! - **linear** at `r` points per ms toward 0: `v(t) = max(v − r·(t−t0), 0)` for `v > 0`, a non-decreasing
//!   function of `v + r·t0` at every `t` (contacts that reached 0 tie at 0, below every positive one).
//!   For `v < 0`, `v(t) = min(v + r·(t−t0), 0)`, non-decreasing in `v − r·t0`.
//! - **step expiry**: each contribution vanishes at its own time, so the order does change, but only at
//!   expiry instants. The key is the value itself, valid until the contact's next expiry; the index keeps
//!   those instants in a queue and re-keys the contacts whose instant has passed before it answers (a
//!   bounded re-rank: each contribution is re-keyed at most once when it expires).
//!
//! Keys of different signs are kept apart by a sign class (negative < zero < positive), so the key is
//! `(class, level)`, and the value at any `t` is a non-decreasing function of it.

use std::cmp::Ordering;

use crate::rules::DecayLaw;

/// A contact's position in one group's ranking; larger ranks higher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankKey {
    class: i8,
    level: f64,
}

impl Eq for RankKey {}

impl PartialOrd for RankKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RankKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.class.cmp(&other.class).then(self.level.total_cmp(&other.level))
    }
}

impl RankKey {
    /// The lowest possible key.
    pub const MIN: RankKey = RankKey { class: i8::MIN, level: f64::NEG_INFINITY };

    /// Width of [`RankKey::to_bytes`].
    pub const BYTES: usize = 9;

    /// The key as bytes whose byte order is the keys' order, for an on-disk index.
    pub fn to_bytes(self) -> [u8; RankKey::BYTES] {
        let bits = self.level.to_bits();
        // The order of `f64::total_cmp`: negative values have every bit flipped, the others the sign bit.
        let ordered = if bits >> 63 == 1 { !bits } else { bits ^ (1 << 63) };
        let mut bytes = [0; RankKey::BYTES];
        bytes[0] = self.class.cast_unsigned() ^ 0x80;
        bytes[1..].copy_from_slice(&ordered.to_be_bytes());
        bytes
    }

    /// Inverse of [`RankKey::to_bytes`].
    pub fn from_bytes(bytes: [u8; RankKey::BYTES]) -> RankKey {
        let [class, level @ ..] = bytes;
        let ordered = u64::from_be_bytes(level);
        let bits = if ordered >> 63 == 1 { ordered ^ (1 << 63) } else { !ordered };
        RankKey { class: (class ^ 0x80).cast_signed(), level: f64::from_bits(bits) }
    }

    /// The key of a value that does not change with time (no decay, or a step value until its next
    /// expiry).
    pub fn of_value(value: f64) -> RankKey {
        RankKey { class: class(value), level: if value.is_nan() { 0.0 } else { value } }
    }

    /// The time-invariant key of `value` as of `since_ms` under `decay`. Step groups use
    /// [`RankKey::of_value`] with their current value instead.
    pub fn of(decay: DecayLaw, value: f64, since_ms: i64) -> RankKey {
        let class = class(value);
        if class == 0 {
            return RankKey { class, level: 0.0 };
        }
        let level = match decay {
            DecayLaw::None | DecayLaw::Step { .. } => value,
            DecayLaw::Exponential { half_life_ms } => {
                let forward = value.abs().log2() + since_ms as f64 / half_life_ms;
                if class > 0 { forward } else { -forward }
            }
            DecayLaw::Linear { per_ms } => {
                if class > 0 {
                    value + per_ms * since_ms as f64
                } else {
                    value - per_ms * since_ms as f64
                }
            }
        };
        RankKey { class, level }
    }

    /// The value the key stands for at `at_ms` under `decay`, exact for any `at_ms` not before the time
    /// the key was made at (for a step key: until its next expiry). The ranking by total reads its
    /// bounds from keys this way, without touching the contacts.
    pub fn value_at(self, decay: DecayLaw, at_ms: i64) -> f64 {
        if self.class == 0 {
            return 0.0;
        }
        let positive = self.class > 0;
        match decay {
            DecayLaw::None | DecayLaw::Step { .. } => self.level,
            DecayLaw::Exponential { half_life_ms } => {
                let at = at_ms as f64 / half_life_ms;
                if positive { (self.level - at).exp2() } else { -(-self.level - at).exp2() }
            }
            DecayLaw::Linear { per_ms } => {
                let moved = per_ms * at_ms as f64;
                if positive { (self.level - moved).max(0.0) } else { (self.level + moved).min(0.0) }
            }
        }
    }
}

fn class(value: f64) -> i8 {
    if value > 0.0 {
        1
    } else if value < 0.0 {
        -1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::RankKey;
    use crate::rules::DecayLaw;

    const DAY_MS: i64 = 86_400_000;
    const EPOCH_2026: i64 = 1_767_225_600_000;

    fn value_at(decay: DecayLaw, value: f64, since_ms: i64, at_ms: i64) -> f64 {
        decay.decay(value, (at_ms - since_ms).max(0) as f64)
    }

    fn decay_law() -> impl Strategy<Value = DecayLaw> {
        prop_oneof![
            Just(DecayLaw::None),
            (1i64..60).prop_map(|days| DecayLaw::Exponential { half_life_ms: (days * DAY_MS) as f64 }),
            (1u32..20).prop_map(|points| DecayLaw::Linear { per_ms: f64::from(points) / DAY_MS as f64 }),
        ]
    }

    /// A contact: value and the time it was set, within 90 days after the start of 2026.
    fn contact() -> impl Strategy<Value = (f64, i64)> {
        (prop_oneof![Just(0.0), -100.0f64..100.0, 0.5f64..100.0], 0i64..90 * DAY_MS)
            .prop_map(|(value, offset)| (value, EPOCH_2026 + offset))
    }

    #[test]
    fn exponential_keys_follow_the_half_life() {
        let decay = DecayLaw::Exponential { half_life_ms: DAY_MS as f64 };
        // 80 points set a day later rank like 160 set a day earlier: both are worth 80 then.
        let early = RankKey::of(decay, 160.0, EPOCH_2026);
        let late = RankKey::of(decay, 80.0, EPOCH_2026 + DAY_MS);
        assert!((RankKey::of(decay, 79.0, EPOCH_2026 + DAY_MS)) < early);
        assert_eq!(early.cmp(&late), early.level.total_cmp(&late.level));
        assert!((early.level - late.level).abs() < 1e-9);
    }

    #[test]
    fn signs_rank_apart() {
        let decay = DecayLaw::Exponential { half_life_ms: DAY_MS as f64 };
        let negative = RankKey::of(decay, -1.0, EPOCH_2026);
        let more_negative = RankKey::of(decay, -50.0, EPOCH_2026);
        let zero = RankKey::of(decay, 0.0, EPOCH_2026);
        let positive = RankKey::of(decay, 0.001, EPOCH_2026);
        assert!(more_negative < negative && negative < zero && zero < positive);
        assert!(RankKey::MIN < more_negative);
    }

    proptest! {
        /// A key reads back as the value it was made from, decayed.
        #[test]
        fn keys_read_back_as_decayed_values(decay in decay_law(), a in contact(), extra in 0i64..400 * DAY_MS) {
            let at = a.1 + extra;
            let read = RankKey::of(decay, a.0, a.1).value_at(decay, at);
            let expected = value_at(decay, a.0, a.1, at);
            prop_assert!((read - expected).abs() <= 1e-9 * expected.abs().max(1.0), "{read} vs {expected}");
        }

        /// Whenever two keys compare, the values compare the same way at every later time: ordering by
        /// key is sorting by decayed value, whenever the index is read.
        #[test]
        fn key_order_is_value_order_at_every_time(
            decay in decay_law(),
            a in contact(),
            b in contact(),
            later in prop::collection::vec(0i64..400 * DAY_MS, 1..6),
        ) {
            let key_a = RankKey::of(decay, a.0, a.1);
            let key_b = RankKey::of(decay, b.0, b.1);
            for extra in later {
                let at = a.1.max(b.1) + extra;
                let (value_a, value_b) = (value_at(decay, a.0, a.1, at), value_at(decay, b.0, b.1, at));
                let tolerance = 1e-9 * value_a.abs().max(value_b.abs()).max(1.0);
                if key_a < key_b {
                    prop_assert!(value_a <= value_b + tolerance, "{key_a:?} < {key_b:?} but {value_a} > {value_b} at {at}");
                } else if key_a > key_b {
                    prop_assert!(value_a + tolerance >= value_b, "{key_a:?} > {key_b:?} but {value_a} < {value_b} at {at}");
                }
            }
        }

        /// Bytes order as keys do, and read back as the key.
        #[test]
        fn bytes_keep_the_order(decay in decay_law(), a in contact(), b in contact()) {
            let (key_a, key_b) = (RankKey::of(decay, a.0, a.1), RankKey::of(decay, b.0, b.1));
            prop_assert_eq!(key_a.to_bytes().cmp(&key_b.to_bytes()), key_a.cmp(&key_b));
            prop_assert_eq!(RankKey::from_bytes(key_a.to_bytes()), key_a);
            prop_assert!(RankKey::MIN.to_bytes() <= key_a.to_bytes());
        }

        /// Sorting a population by key gives the same sequence of values as sorting it by value.
        #[test]
        fn sorting_by_key_sorts_by_value(
            decay in decay_law(),
            contacts in prop::collection::vec(contact(), 1..40),
            extra in 0i64..200 * DAY_MS,
        ) {
            let at = contacts.iter().map(|(_, since)| *since).max().unwrap_or(EPOCH_2026) + extra;
            let mut by_key: Vec<(RankKey, f64)> = contacts
                .iter()
                .map(|(value, since)| (RankKey::of(decay, *value, *since), value_at(decay, *value, *since, at)))
                .collect();
            by_key.sort_by_key(|entry| std::cmp::Reverse(entry.0));
            let mut by_value: Vec<f64> = by_key.iter().map(|(_, value)| *value).collect();
            by_value.sort_by(|x, y| y.total_cmp(x));
            for (ranked, sorted) in by_key.iter().map(|(_, value)| *value).zip(by_value) {
                prop_assert!((ranked - sorted).abs() <= 1e-9 * sorted.abs().max(1.0), "{ranked} vs {sorted}");
            }
        }
    }
}
