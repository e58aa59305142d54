//! Criterion benches of leaderboard queries against one partition's index of 100k and 1M contacts, in
//! RocksDB as the runtime keeps it, built directly: the top 50 by a decaying group, by the weighted total (threshold algorithm over the
//! groups' indices), within one phase, and one contact's update. Query latency should stay nearly flat
//! as the contact count grows tenfold, because no query scans the contacts.
//!
//! `cargo bench --bench leaderboard` prints the time per query.

#![allow(clippy::panic, reason = "a bench without its rules file cannot run")]

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use leadscore::generator::SplitMix64;
use leadscore::leaderboard::{Board, BoardEntry, Query, Ranking};
use leadscore::rules::{DecayLaw, Rules};
use leadscore::scoring::{Contribution, GroupScore};
use leadscore::store::{RocksOptions, RocksStore};

const START_MS: i64 = 1_772_366_400_000;
const DAY_MS: i64 = 86_400_000;

/// A contact as the engine leaves it: values set at some time in the last 60 days, step contributions
/// with their expiry, phases weighted toward the early ones.
fn entry(rules: &Rules, random: &mut SplitMix64) -> BoardEntry {
    let phase = [0, 0, 0, 1, 1, 2, 3, 4, 5][random.below(9) as usize].min(rules.phases.len() - 1);
    let groups = rules
        .groups
        .iter()
        .map(|group| {
            let since_ms = START_MS + random.below(60 * DAY_MS as u64) as i64;
            let value = group.min + random.next_f64() * (group.max - group.min);
            match group.decay {
                DecayLaw::Step { expire_after_ms } => {
                    let points = random.next_f64() * group.max.max(1.0) / 2.0;
                    let contributions = vec![
                        Contribution { source: 1, points, expires_at_ms: Some(since_ms + expire_after_ms) },
                        Contribution { source: 2, points, expires_at_ms: Some(since_ms + expire_after_ms / 2) },
                    ];
                    GroupScore { value: 2.0 * points, since_ms, contributions }
                }
                _ => GroupScore { value, since_ms, contributions: Vec::new() },
            }
        })
        .collect();
    BoardEntry { phase, groups }
}

fn leaderboard(c: &mut Criterion) {
    let rules = Rules::load(Path::new("examples/rules.toml")).unwrap_or_else(|err| panic!("{err}"));
    let engagement = rules.group_index("engagement").unwrap_or(0);
    let mql = rules.phase_index("mql");
    let mut group = c.benchmark_group("leaderboard");
    group.sample_size(30);
    let now = START_MS + 70 * DAY_MS;
    for contacts in [100_000usize, 1_000_000] {
        let mut random = SplitMix64::new(contacts as u64);
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}"));
        let mut board = Board::new(&rules, 0);
        for first in (0..contacts).step_by(4096) {
            let changes: Vec<(String, Option<BoardEntry>)> = (first..(first + 4096).min(contacts))
                .map(|n| (format!("contact-{n:08}"), Some(entry(&rules, &mut random))))
                .collect();
            board.upsert(&rules, &store, &changes).unwrap_or_else(|err| panic!("{err}"));
        }
        let top = |board: &mut Board, ranking, phase, limit| {
            board.top(&rules, &store, Query { ranking, phase, limit }, now).unwrap_or_else(|err| panic!("{err}"))
        };
        // Read 70 days in, when many step contributions have expired: the first query re-keys them once.
        top(&mut board, Ranking::Total, None, 1);
        group.bench_with_input(BenchmarkId::new("top50_engagement", contacts), &contacts, |b, _| {
            b.iter(|| black_box(top(&mut board, Ranking::Group(engagement), None, 50)))
        });
        group.bench_with_input(BenchmarkId::new("top50_engagement_in_mql", contacts), &contacts, |b, _| {
            b.iter(|| black_box(top(&mut board, Ranking::Group(engagement), mql, 50)))
        });
        group.bench_with_input(BenchmarkId::new("top50_total", contacts), &contacts, |b, _| {
            b.iter(|| black_box(top(&mut board, Ranking::Total, None, 50)))
        });
        group.bench_with_input(BenchmarkId::new("top10_total_in_mql", contacts), &contacts, |b, _| {
            b.iter(|| black_box(top(&mut board, Ranking::Total, mql, 10)))
        });
        let mut n = 0usize;
        group.bench_with_input(BenchmarkId::new("update_one_contact", contacts), &contacts, |b, _| {
            b.iter(|| {
                n = (n + 7919) % contacts;
                let update = (format!("contact-{n:08}"), Some(entry(&rules, &mut random)));
                board.upsert(&rules, &store, &[update]).unwrap_or_else(|err| panic!("{err}"));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, leaderboard);
criterion_main!(benches);
