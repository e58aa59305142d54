use std::path::Path;

use super::{Board, BoardEntry, Ranking};
use crate::generator::EventGenerator;
use crate::offline::MemoryStore;
use crate::rules::Rules;
use crate::scoring::ContactState;
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

/// The brute-force ranking: every contact's value read at `now`, sorted.
fn brute_force(rules: &Rules, states: &[ContactState], ranking: Ranking, phase: Option<usize>, now: i64) -> Vec<f64> {
    let mut values: Vec<f64> = states
        .iter()
        .filter(|state| state.disqualified.is_none() && phase.is_none_or(|phase| state.phase == phase))
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

fn check(rules: &Rules, board: &mut Board, states: &[ContactState], now: i64) {
    for ranking in rankings(rules) {
        for phase in [None].into_iter().chain((0..rules.phases.len()).map(Some)) {
            for limit in [1, 10, 50] {
                let top = board.top(rules, ranking, phase, limit, now);
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

#[test]
fn rankings_equal_brute_force_as_time_passes() {
    let rules = rules();
    let states = states(&rules, 6_000, 400);
    let mut board = Board::new(&rules);
    for state in &states {
        board.upsert(&rules, &state.contact, BoardEntry::of(&rules, state));
    }
    assert_eq!(board.len(), states.iter().filter(|state| state.disqualified.is_none()).count());
    let last = states.iter().map(|state| state.clock_ms).max().unwrap_or(START_MS);
    // Step contributions expire after 14 days and linear malus wears off: read across those times.
    for days in [0, 1, 7, 13, 15, 30, 120] {
        check(&rules, &mut board, &states, last + days * DAY_MS);
    }
}

#[test]
fn updates_and_removals_keep_the_index_exact() {
    let rules = rules();
    let early = states(&rules, 2_000, 300);
    let late = states(&rules, 5_000, 300);
    let mut board = Board::new(&rules);
    for state in &early {
        board.upsert(&rules, &state.contact, BoardEntry::of(&rules, state));
    }
    // The contacts change (as a batch would change them), and every third one is erased.
    let mut remaining = Vec::new();
    for (position, state) in late.iter().enumerate() {
        if position % 3 == 0 {
            board.upsert(&rules, &state.contact, None);
        } else {
            board.upsert(&rules, &state.contact, BoardEntry::of(&rules, state));
            remaining.push(state.clone());
        }
    }
    let last = late.iter().map(|state| state.clock_ms).max().unwrap_or(START_MS);
    check(&rules, &mut board, &remaining, last + 3 * DAY_MS);
    let counted: usize = board.count_by_phase().iter().sum();
    assert_eq!(counted, board.len());
    for state in &remaining {
        board.remove(&state.contact);
    }
    assert!(board.is_empty());
    assert!(board.top(&rules, Ranking::Total, None, 10, last).is_empty());
}
