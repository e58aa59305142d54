use std::path::Path;

use super::{Board, Query, Ranking};
use crate::generator::EventGenerator;
use crate::leaderboard::BoardEntry;
use crate::offline::MemoryStore;
use crate::rules::Rules;
use crate::scoring::ContactState;
use crate::store::{RocksOptions, RocksStore, StateStore};
use crate::stream::{PartitionStream, TimerClock};

const START_MS: i64 = 1_772_366_400_000;
const DAY_MS: i64 = 86_400_000;

fn rules() -> Rules {
    Rules::parse(include_str!("../../../examples/rules.toml"), Path::new("examples/rules.toml"))
        .unwrap_or_else(|err| panic!("{err}"))
}

/// Realistic states: a generated stream through the engine.
fn states(rules: &Rules, events: usize, contacts: u64) -> Vec<ContactState> {
    let mut generator = EventGenerator::new(7, contacts, START_MS, 600_000);
    let mut stream = PartitionStream::new(TimerClock::StreamTime);
    let mut store = MemoryStore::default();
    for _ in 0..events {
        let event = generator.next_event();
        stream.process(rules, &mut store, &event);
    }
    store.contacts().values().cloned().collect()
}

/// The brute-force ranking: the value at `now` of every contact that ranks (in a group's ranking, those
/// that have points in it), sorted.
fn brute_force(rules: &Rules, states: &[ContactState], ranking: Ranking, phase: Option<usize>, now: i64) -> Vec<f64> {
    let listed = |state: &ContactState| match ranking {
        Ranking::Group(group) => BoardEntry::of(rules, state).is_some_and(|entry| entry.ranks_in(group)),
        Ranking::Total => state.disqualified.is_none(),
    };
    let mut values: Vec<f64> = states
        .iter()
        .filter(|state| listed(state) && phase.is_none_or(|phase| state.phase == phase))
        .map(|state| {
            let at = now.max(state.clock_ms);
            match ranking {
                Ranking::Group(group) => state.group_value(rules, group, at),
                Ranking::Total => state.total(rules, at),
            }
        })
        .collect();
    values.sort_by(|a, b| b.total_cmp(a));
    values
}

fn rankings(rules: &Rules) -> Vec<Ranking> {
    (0..rules.groups.len()).map(Ranking::Group).chain([Ranking::Total]).collect()
}

const PARTITION: i32 = 3;

fn upsert(rules: &Rules, board: &mut Board, store: &dyn StateStore, contact: &str, entry: Option<BoardEntry>) {
    board.upsert(rules, store, &[(contact.to_owned(), entry)]).unwrap_or_else(|err| panic!("{err}"));
}

fn check(rules: &Rules, board: &mut Board, store: &dyn StateStore, states: &[ContactState], now: i64) {
    for ranking in rankings(rules) {
        for phase in [None].into_iter().chain((0..rules.phases.len()).map(Some)) {
            for limit in [1, 10, 50] {
                let top =
                    board.top(rules, store, Query { ranking, phase, limit }, now).unwrap_or_else(|err| panic!("{err}"));
                let expected = brute_force(rules, states, ranking, phase, now);
                assert_eq!(top.len(), expected.len().min(limit), "{ranking:?} {phase:?} {limit}");
                for (position, (ranked, value)) in top.iter().zip(&expected).enumerate() {
                    assert!(
                        (ranked.score - value).abs() <= 1e-9 * value.abs().max(1.0),
                        "{ranking:?} phase {phase:?} at {now}: #{position} is {} with {}, brute force says {value}",
                        ranked.contact,
                        ranked.score
                    );
                    let state = states.iter().find(|state| state.contact == ranked.contact).unwrap_or_else(|| panic!());
                    assert!(phase.is_none_or(|phase| state.phase == phase));
                }
            }
        }
    }
}

/// Builds a board of `states` in `store` and reads it across the times when step contributions expire
/// (after 14 days) and linear malus wears off.
fn rankings_equal_brute_force_as_time_passes(rules: &Rules, store: &dyn StateStore) {
    let states = states(rules, 6_000, 400);
    let mut board = Board::new(rules, PARTITION);
    let changes: Vec<(String, Option<BoardEntry>)> =
        states.iter().map(|state| (state.contact.clone(), BoardEntry::of(rules, state))).collect();
    board.upsert(rules, store, &changes[..100]).unwrap_or_else(|err| panic!("{err}"));
    board.upsert(rules, store, &changes[100..]).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(board.len(), states.iter().filter(|state| state.disqualified.is_none()).count());
    let last = states.iter().map(|state| state.clock_ms).max().unwrap_or(START_MS);
    for days in [0, 1, 7, 13, 15, 30, 120] {
        check(rules, &mut board, store, &states, last + days * DAY_MS);
    }
}

#[test]
fn rankings_equal_brute_force_in_memory() {
    rankings_equal_brute_force_as_time_passes(&rules(), &crate::store::MemoryStore::new());
}

/// A group that counts against the total (here the step group, whose bound then comes from its negative
/// contributions) and one that counts double.
#[test]
fn rankings_with_negative_and_large_weights_equal_brute_force() {
    let text = include_str!("../../../examples/rules.toml").replacen("weight = 0.5", "weight = 2.0", 1);
    let text = text.replacen("decay = \"step\"", "decay = \"step\"\nweight = -1.5", 1).replacen(
        "weight = 1.0\ndecay = \"step\"",
        "decay = \"step\"",
        1,
    );
    let rules = Rules::parse(&text, Path::new("rules.toml")).unwrap_or_else(|err| panic!("{err}"));
    assert!(rules.groups.iter().any(|group| group.weight < 0.0), "the step group counts against the total");
    rankings_equal_brute_force_as_time_passes(&rules, &crate::store::MemoryStore::new());
}

#[test]
fn rankings_equal_brute_force_on_rocksdb() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    rankings_equal_brute_force_as_time_passes(&rules(), &store);
}

#[test]
fn updates_and_removals_keep_the_index_exact() {
    let rules = rules();
    let store = crate::store::MemoryStore::new();
    let early = states(&rules, 2_000, 300);
    let late = states(&rules, 5_000, 300);
    let mut board = Board::new(&rules, PARTITION);
    for state in &early {
        upsert(&rules, &mut board, &store, &state.contact, BoardEntry::of(&rules, state));
    }
    // The contacts change (as a batch would change them), and every third one is erased.
    let mut remaining = Vec::new();
    for (position, state) in late.iter().enumerate() {
        if position % 3 == 0 {
            upsert(&rules, &mut board, &store, &state.contact, None);
        } else {
            upsert(&rules, &mut board, &store, &state.contact, BoardEntry::of(&rules, state));
            remaining.push(state.clone());
        }
    }
    let last = late.iter().map(|state| state.clock_ms).max().unwrap_or(START_MS);
    check(&rules, &mut board, &store, &remaining, last + 3 * DAY_MS);
    let counted: usize = board.count_by_phase().iter().sum();
    assert_eq!(counted, board.len());
    // One call naming a contact twice keeps the last entry.
    if let Some(state) = remaining.first() {
        let changes = [(state.contact.clone(), None), (state.contact.clone(), BoardEntry::of(&rules, state))];
        board.upsert(&rules, &store, &changes).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(board.len(), counted);
    }
    for state in &remaining {
        upsert(&rules, &mut board, &store, &state.contact, None);
    }
    assert!(board.is_empty());
    let query = Query { ranking: Ranking::Total, phase: None, limit: 10 };
    assert!(board.top(&rules, &store, query, last).unwrap_or_else(|err| panic!("{err}")).is_empty());
    // Nothing is left behind in the index: no entry, ranking key or expiry.
    let everything = crate::store::IndexRange { from: b"", to: b"\xff", reverse: false, limit: 10 };
    assert_eq!(store.index_range(PARTITION, everything).unwrap_or_else(|err| panic!("{err}")), Vec::new());
}

/// Contacts filed after a query has caught up with the expiries of a later time, with expiries before
/// that time (late events, a replay): their step keys are still caught up with.
#[test]
fn entries_older_than_the_last_query_are_caught_up_with() {
    let rules = rules();
    let store = crate::store::MemoryStore::new();
    let states = states(&rules, 3_000, 300);
    let last = states.iter().map(|state| state.clock_ms).max().unwrap_or(START_MS);
    let mut board = Board::new(&rules, PARTITION);
    let query = Query { ranking: Ranking::Total, phase: None, limit: 10 };
    assert!(board.top(&rules, &store, query, last + 7 * DAY_MS).unwrap_or_else(|err| panic!("{err}")).is_empty());
    let changes: Vec<(String, Option<BoardEntry>)> =
        states.iter().map(|state| (state.contact.clone(), BoardEntry::of(&rules, state))).collect();
    board.upsert(&rules, &store, &changes).unwrap_or_else(|err| panic!("{err}"));
    check(&rules, &mut board, &store, &states, last + 7 * DAY_MS);
}

/// A group's ranking lists the contacts with points in it; the ranking by total lists every contact.
#[test]
fn a_group_ranks_only_the_contacts_with_points_in_it() {
    let rules = rules();
    let store = crate::store::MemoryStore::new();
    let mut board = Board::new(&rules, PARTITION);
    let score = |value: f64| crate::scoring::GroupScore { value, since_ms: START_MS, contributions: Vec::new() };
    let engaged = BoardEntry { phase: 0, groups: vec![score(5.0), score(0.0), score(0.0), score(0.0)] };
    let risky = BoardEntry { phase: 0, groups: vec![score(0.0), score(0.0), score(0.0), score(-20.0)] };
    upsert(&rules, &mut board, &store, "engaged", Some(engaged));
    upsert(&rules, &mut board, &store, "risky", Some(risky.clone()));
    let listed = |board: &mut Board, ranking: Ranking| -> Vec<String> {
        let query = Query { ranking, phase: None, limit: 10 };
        let top = board.top(&rules, &store, query, START_MS).unwrap_or_else(|err| panic!("{err}"));
        top.into_iter().map(|ranked| ranked.contact).collect()
    };
    assert_eq!(listed(&mut board, Ranking::Group(0)), ["engaged"]);
    assert!(listed(&mut board, Ranking::Group(1)).is_empty());
    assert_eq!(listed(&mut board, Ranking::Group(3)), ["risky"]);
    assert_eq!(listed(&mut board, Ranking::Total), ["engaged", "risky"]);
    // Its risk gone (a phase resets it), the contact leaves the risk ranking and stays in the total's.
    upsert(&rules, &mut board, &store, "risky", Some(BoardEntry { groups: vec![score(0.0); 4], ..risky }));
    assert!(listed(&mut board, Ranking::Group(3)).is_empty());
    assert_eq!(listed(&mut board, Ranking::Total), ["engaged", "risky"]);
}
