//! A fixed amount of work for instruction-count profiling (`valgrind --tool=callgrind`) of the engine
//! with RocksDB state and no Kafka: a partition task scores `BATCHES` batches of 1000 encoded events, as
//! `benches/store.rs` does, but deterministically, so before/after counts compare, and files the changed
//! contacts in the partition's leaderboard, as the runtime does after each batch. Every
//! `FLUSH_EVERY`th batch flushes (writes the contacts changed since the last flush), as an instance under
//! load flushes once per commit interval: 5,000 events per flush here, where an instance at 70,000
//! events/s with the default 500 ms interval flushes about 35,000.
//!
//! ```text
//! cargo build --release --example profile_engine
//! valgrind --tool=callgrind --toggle-collect='profile_engine::score_batches' \
//!     target/release/examples/profile_engine json 20
//! ```
//!
//! Without it the events name no account, so the example scorecard's `[accounts]` table scores none. With
//! a third argument `accounts`, each event names one of 1,000 accounts (about 100 contacts each): the
//! contacts' reports to their accounts are handed back to the task as its internal account topic, after
//! each batch, as the runtime does.

#![allow(clippy::panic, reason = "a profiling driver without its rules file cannot run")]

use std::path::Path;

use leadscore::event::AttrValue;
use leadscore::event::input::InputDecoder;
use leadscore::event::{DecodeLimits, json, protobuf};
use leadscore::generator::EventGenerator;
use leadscore::leaderboard::{Board, Staged};
use leadscore::rules::Rules;
use leadscore::runtime::record_cache::CacheBudget;
use leadscore::runtime::task::{Destination, InputRecord, InternalTopic, PartitionTask, TaskSettings, WireFormat};

/// The allocator of the `leadscore` binary, so that the counts are those of what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use leadscore::store::{RocksOptions, RocksStore, StateStore};
use leadscore::stream::TimerClock;

const BATCH: usize = 1_000;

/// Batches per flush.
const FLUSH_EVERY: usize = 5;

/// Accounts the contacts of the `accounts` mode belong to.
const ACCOUNT_COUNT: u32 = 1_000;

#[inline(never)]
fn score_batches(
    task: &mut PartitionTask,
    rules: &Rules,
    store: &RocksStore,
    settings: &TaskSettings,
    board: &mut Board,
    staged: &mut Staged,
    batches: &[Vec<InputRecord>],
) -> usize {
    let mut published = 0;
    let mut account_offset = 0;
    for (index, records) in batches.iter().enumerate() {
        let flush = (index + 1) % FLUSH_EVERY == 0 || index + 1 == batches.len();
        let batch = task.process(rules, store, settings, records, flush).unwrap_or_else(|err| panic!("{err}"));
        // The contacts' reports to their accounts come back as the internal account topic's next batch.
        let reports: Vec<InputRecord> = batch
            .publish
            .iter()
            .filter(|record| record.destination == Destination::Internal(InternalTopic::Account, 0))
            .map(|record| {
                account_offset += 1;
                InputRecord {
                    topic: 1,
                    offset: account_offset,
                    key: Some(record.key.clone()),
                    payload: record.payload.clone(),
                    headers: Vec::new(),
                }
            })
            .collect();
        published += batch.publish.len();
        store.write(batch.write).unwrap_or_else(|err| panic!("{err}"));
        staged.add(batch.insight.contacts);
        if staged.due() {
            board.upsert(rules, store, &staged.take()).unwrap_or_else(|err| panic!("{err}"));
        }
        task.written(batch.sequence);
        for (topic, next) in &batch.commit {
            task.committed(*topic, *next);
        }
        if !reports.is_empty() {
            let applied = task.process(rules, store, settings, &reports, true).unwrap_or_else(|err| panic!("{err}"));
            published += applied.publish.len();
            store.write(applied.write).unwrap_or_else(|err| panic!("{err}"));
            task.written(applied.sequence);
            task.committed(1, account_offset + 1);
        }
    }
    board.upsert(rules, store, &staged.take()).unwrap_or_else(|err| panic!("{err}"));
    published
}

fn main() {
    let mut args = std::env::args().skip(1);
    let format = match args.next().as_deref() {
        Some("protobuf") => WireFormat::Protobuf,
        _ => WireFormat::Json,
    };
    let count: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(20);
    let accounts = args.next().as_deref() == Some("accounts");
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules.toml"));
    let rules = Rules::load(path).unwrap_or_else(|err| panic!("{err}"));
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_or_else(|err| panic!("{err}"));
    let settings = TaskSettings {
        inputs: vec!["events".into(), "accounts".into()],
        decoders: [match format {
            WireFormat::Json => InputDecoder::Json,
            WireFormat::Protobuf => InputDecoder::Protobuf,
        }]
        .into(),
        output_format: format,
        limits: DecodeLimits::default(),
        max_record_bytes: leadscore::config::LIBRDKAFKA_MESSAGE_MAX_BYTES,
        clock: TimerClock::StreamTime,
        record_cache: CacheBudget::default(),
        registry: None,
        internal: None,
        internal_account: accounts.then_some(1),
        partitions: 1,
    };
    let mut board = Board::new(&rules, 0);
    let mut task = PartitionTask::open(0, &store, &settings, vec![None, None]).unwrap_or_else(|err| panic!("{err}"));
    let mut generator = EventGenerator::new(5, 100_000, 1_772_366_400_000, 1_000);
    let mut offset = 0;
    let batches: Vec<Vec<InputRecord>> = (0..count)
        .map(|_| {
            (0..BATCH)
                .map(|_| {
                    let mut event = generator.next_event();
                    if accounts {
                        let account = leadscore::hashing::partition_for_key(event.contact.as_bytes(), ACCOUNT_COUNT);
                        event.attrs.push(("account_id".into(), AttrValue::Text(format!("account-{account}"))));
                    }
                    offset += 1;
                    let payload = match format {
                        WireFormat::Json => json::encode(&event),
                        WireFormat::Protobuf => protobuf::encode(&event),
                    };
                    InputRecord {
                        topic: 0,
                        offset,
                        key: Some(event.contact.into_bytes()),
                        payload: Some(payload),
                        headers: Vec::new(),
                    }
                })
                .collect()
        })
        .collect();
    let started = std::time::Instant::now();
    let mut staged = Staged::default();
    let published = score_batches(&mut task, &rules, &store, &settings, &mut board, &mut staged, &batches);
    let seconds = started.elapsed().as_secs_f64();
    let events = count * BATCH;
    println!("{events} events, {published} records to publish, {:.0} events/s", events as f64 / seconds);
}
