//! The behaviour every [`StateStore`] must have, written once and run against each implementation by
//! [`conformance_tests!`], so the in-memory store used in tests cannot drift from RocksDB.

use super::{IndexBatch, IndexRange, PartitionBatch, PartitionMeta, Result, StateStore};

/// A store under test, with whatever must outlive it (a temporary directory). Fields drop in order:
/// the store closes before its directory is removed.
pub(crate) struct Fixture {
    pub(crate) store: Box<dyn StateStore>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub(crate) fn new(store: Box<dyn StateStore>, dir: Option<tempfile::TempDir>) -> Self {
        Fixture { store, _dir: dir }
    }
}

/// Generates one `#[test]` per check below, each on a fresh store made by `$fixture()`.
macro_rules! conformance_tests {
    ($fixture:ident) => {
        mod conformance {
            use crate::store::conformance as check;

            $crate::store::conformance::conformance_tests!(@each $fixture;
                put_get_delete, multi_get_keeps_order, timers_come_in_due_order, meta_round_trips,
                a_batch_is_all_or_nothing, drop_partition_removes_only_that_partition,
                partitions_lists_those_with_meta, for_each_contact_walks_in_key_order,
                accounts_and_contacts_are_walked_apart,
                approximate_size_counts_contacts, empty_batches_and_maintenance_succeed,
                index_ranges_read_in_order_within_their_partition, index_clear_leaves_the_contacts);
        }
    };
    (@each $fixture:ident; $($check:ident),+) => {
        $(
            #[test]
            fn $check() {
                let fixture = super::$fixture();
                check::$check(&*fixture.store);
            }
        )+
    };
}
pub(crate) use conformance_tests;

/// Unwraps a store result, failing the test with the error's message.
pub(crate) fn ok<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("store operation failed: {err}"))
}

fn put(store: &dyn StateStore, partition: i32, contact: &str, value: &[u8]) {
    let mut batch = PartitionBatch::new(partition);
    batch.puts.push((contact.to_owned(), value.to_vec()));
    ok(store.write(batch));
}

fn contacts(store: &dyn StateStore, partition: i32) -> Vec<(String, Vec<u8>)> {
    let mut seen = Vec::new();
    ok(store.for_each_contact(partition, &mut |contact, value| {
        seen.push((contact.to_owned(), value.to_vec()));
        true
    }));
    seen
}

fn meta_at(offset: i64) -> PartitionMeta {
    PartitionMeta {
        input_offsets: vec![("events".to_owned(), offset)],
        changelog_offset: Some(offset * 2),
        stream_time_ms: Some(offset * 1000),
    }
}

pub(crate) fn put_get_delete(store: &dyn StateStore) {
    assert_eq!(ok(store.get(0, "alice")), None);
    put(store, 0, "alice", b"v1");
    put(store, 0, "", b"empty id");
    put(store, 0, "zoë@example.com", b"");
    assert_eq!(ok(store.get(0, "alice")), Some(b"v1".to_vec()));
    assert_eq!(ok(store.get(0, "")), Some(b"empty id".to_vec()));
    assert_eq!(ok(store.get(0, "zoë@example.com")), Some(Vec::new()));
    assert_eq!(ok(store.get(1, "alice")), None, "partitions are separate");
    assert_eq!(ok(store.get(0, "alic")), None, "no prefix matches");

    put(store, 0, "alice", b"v2");
    assert_eq!(ok(store.get(0, "alice")), Some(b"v2".to_vec()));

    let mut batch = PartitionBatch::new(0);
    batch.deletes.push("alice".to_owned());
    batch.deletes.push("never-written".to_owned());
    ok(store.write(batch));
    assert_eq!(ok(store.get(0, "alice")), None);
    assert_eq!(ok(store.get(0, "")), Some(b"empty id".to_vec()));

    let mut batch = PartitionBatch::new(0);
    batch.deletes.push("bob".to_owned());
    batch.puts.push(("bob".to_owned(), b"recreated".to_vec()));
    ok(store.write(batch));
    assert_eq!(ok(store.get(0, "bob")), Some(b"recreated".to_vec()), "deletes apply before puts");
}

pub(crate) fn multi_get_keeps_order(store: &dyn StateStore) {
    assert_eq!(ok(store.multi_get(2, &[])), Vec::<Option<Vec<u8>>>::new());
    put(store, 2, "b", b"B");
    put(store, 2, "a", b"A");
    put(store, 3, "c", b"other partition");
    let got = ok(store.multi_get(2, &["b", "missing", "a", "c", "b"]));
    assert_eq!(got, vec![Some(b"B".to_vec()), None, Some(b"A".to_vec()), None, Some(b"B".to_vec())]);
}

pub(crate) fn timers_come_in_due_order(store: &dyn StateStore) {
    let mut batch = PartitionBatch::new(-3);
    for (due, contact) in [
        (i64::MAX, "max"),
        (1_772_366_400_000, "b"),
        (-1, "minus-one"),
        (0, "zero"),
        (i64::MIN, "min"),
        (1_772_366_400_000, "a"),
        (-86_400_000, "yesterday-of-1970"),
        (1, "one"),
    ] {
        batch.timer_puts.push((due, contact.to_owned()));
    }
    ok(store.write(batch));
    let mut other = PartitionBatch::new(-2);
    other.timer_puts.push((5, "elsewhere".to_owned()));
    ok(store.write(other));

    let expected: Vec<(i64, String)> = [
        (i64::MIN, "min"),
        (-86_400_000, "yesterday-of-1970"),
        (-1, "minus-one"),
        (0, "zero"),
        (1, "one"),
        (1_772_366_400_000, "a"),
        (1_772_366_400_000, "b"),
        (i64::MAX, "max"),
    ]
    .into_iter()
    .map(|(due, contact)| (due, contact.to_owned()))
    .collect();
    assert_eq!(ok(store.timers(-3)), expected);

    // Rescheduling: deletes apply first, so deleting and re-adding the same timer keeps it.
    let mut batch = PartitionBatch::new(-3);
    batch.timer_deletes.push((1_772_366_400_000, "a".to_owned()));
    batch.timer_deletes.push((0, "zero".to_owned()));
    batch.timer_puts.push((0, "zero".to_owned()));
    batch.timer_deletes.push((7, "no such timer".to_owned()));
    ok(store.write(batch));
    let after = ok(store.timers(-3));
    assert_eq!(after.len(), expected.len() - 1);
    assert!(!after.contains(&(1_772_366_400_000, "a".to_owned())));
    assert!(after.contains(&(0, "zero".to_owned())));
    assert_eq!(ok(store.timers(-2)), vec![(5, "elsewhere".to_owned())]);
    assert_eq!(ok(store.timers(0)), Vec::new());
}

pub(crate) fn meta_round_trips(store: &dyn StateStore) {
    assert_eq!(ok(store.meta(5)), None);
    let mut batch = PartitionBatch::new(5);
    batch.meta = Some(meta_at(10));
    ok(store.write(batch));
    assert_eq!(ok(store.meta(5)), Some(meta_at(10)));
    assert_eq!(ok(store.meta(6)), None);

    let mut batch = PartitionBatch::new(5);
    batch.meta = Some(PartitionMeta::default());
    ok(store.write(batch));
    assert_eq!(ok(store.meta(5)), Some(PartitionMeta::default()));

    // A batch without meta leaves the partition's meta as it was.
    put(store, 5, "c", b"x");
    assert_eq!(ok(store.meta(5)), Some(PartitionMeta::default()));
}

pub(crate) fn a_batch_is_all_or_nothing(store: &dyn StateStore) {
    let mut batch = PartitionBatch::new(1);
    batch.puts.push(("a".to_owned(), b"1".to_vec()));
    batch.timer_puts.push((100, "a".to_owned()));
    batch.meta = Some(meta_at(1));
    ok(store.write(batch));
    assert_eq!(ok(store.get(1, "a")), Some(b"1".to_vec()));
    assert_eq!(ok(store.timers(1)), vec![(100, "a".to_owned())]);
    assert_eq!(ok(store.meta(1)), Some(meta_at(1)));

    // A reader racing the writer sees both contacts of a batch at the same version, never one old and
    // one new.
    const ROUNDS: u32 = 300;
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for round in 0..ROUNDS {
                let value = round.to_be_bytes().to_vec();
                let mut batch = PartitionBatch::new(1);
                batch.puts.push(("a".to_owned(), value.clone()));
                batch.puts.push(("z".to_owned(), value));
                batch.meta = Some(meta_at(i64::from(round)));
                ok(store.write(batch));
            }
        });
        let mut reads = 0;
        while !writer.is_finished() || reads == 0 {
            let got = ok(store.multi_get(1, &["a", "z"]));
            if got[1].is_some() {
                assert_eq!(got[0], got[1], "a batch was seen half-applied");
            }
            reads += 1;
        }
    });
    assert_eq!(ok(store.meta(1)), Some(meta_at(i64::from(ROUNDS - 1))));
}

pub(crate) fn drop_partition_removes_only_that_partition(store: &dyn StateStore) {
    let partitions = [i32::MIN, -1, 0, 1, i32::MAX];
    for partition in partitions {
        let mut batch = PartitionBatch::new(partition);
        batch.puts.push(("c1".to_owned(), partition.to_be_bytes().to_vec()));
        batch.puts.push(("\u{10ffff}".to_owned(), b"last id".to_vec()));
        batch.timer_puts.push((i64::MAX, "\u{10ffff}".to_owned()));
        batch.timer_puts.push((i64::MIN, "c1".to_owned()));
        batch.meta = Some(meta_at(i64::from(partition)));
        ok(store.write(batch));
    }
    for dropped in [0, i32::MAX, i32::MIN] {
        ok(store.drop_partition(dropped));
        assert_eq!(ok(store.get(dropped, "c1")), None);
        assert_eq!(ok(store.get(dropped, "\u{10ffff}")), None);
        assert_eq!(ok(store.timers(dropped)), Vec::new());
        assert_eq!(ok(store.meta(dropped)), None);
        assert!(contacts(store, dropped).is_empty());
    }
    for kept in [-1, 1] {
        assert_eq!(ok(store.get(kept, "c1")), Some(kept.to_be_bytes().to_vec()));
        assert_eq!(contacts(store, kept).len(), 2);
        assert_eq!(ok(store.timers(kept)).len(), 2);
        assert_eq!(ok(store.meta(kept)), Some(meta_at(i64::from(kept))));
    }
    assert_eq!(ok(store.partitions()), vec![-1, 1]);
    ok(store.drop_partition(42));
}

pub(crate) fn partitions_lists_those_with_meta(store: &dyn StateStore) {
    assert_eq!(ok(store.partitions()), Vec::<i32>::new());
    for partition in [7, -5, 0, i32::MAX, 300] {
        let mut batch = PartitionBatch::new(partition);
        batch.meta = Some(meta_at(1));
        ok(store.write(batch));
    }
    put(store, 9, "no meta here", b"x");
    assert_eq!(ok(store.partitions()), vec![-5, 0, 7, 300, i32::MAX]);
}

pub(crate) fn for_each_contact_walks_in_key_order(store: &dyn StateStore) {
    for (contact, value) in [("m", "3"), ("a", "1"), ("z", "4"), ("b", "2"), ("ä", "5")] {
        put(store, 4, contact, value.as_bytes());
    }
    put(store, 3, "before", b"x");
    put(store, 5, "after", b"x");
    let all: Vec<(String, Vec<u8>)> = ["a", "b", "m", "z", "ä"]
        .iter()
        .zip(["1", "2", "3", "4", "5"])
        .map(|(c, v)| ((*c).to_owned(), v.into()))
        .collect();
    assert_eq!(contacts(store, 4), all);

    let mut first_two = Vec::new();
    ok(store.for_each_contact(4, &mut |contact, _| {
        first_two.push(contact.to_owned());
        first_two.len() < 2
    }));
    assert_eq!(first_two, ["a", "b"]);
    assert!(contacts(store, 6).is_empty());
}

pub(crate) fn accounts_and_contacts_are_walked_apart(store: &dyn StateStore) {
    for key in ["ana", "\0account:acme", "ben", "\0account:globex"] {
        put(store, 2, key, key.as_bytes());
    }
    put(store, 1, "\0account:before", b"x");
    put(store, 3, "\0account:after", b"x");
    assert_eq!(contacts(store, 2).into_iter().map(|(contact, _)| contact).collect::<Vec<_>>(), ["ana", "ben"]);
    let mut accounts = Vec::new();
    ok(store.for_each_account(2, &mut |account, value| {
        accounts.push((account.to_owned(), value.to_vec()));
        true
    }));
    assert_eq!(
        accounts,
        [("acme".to_owned(), b"\0account:acme".to_vec()), ("globex".to_owned(), b"\0account:globex".to_vec())]
    );
    let mut first = Vec::new();
    ok(store.for_each_account(2, &mut |account, _| {
        first.push(account.to_owned());
        false
    }));
    assert_eq!(first, ["acme"]);
}

pub(crate) fn approximate_size_counts_contacts(store: &dyn StateStore) {
    for index in 0..200 {
        put(store, 0, &format!("contact-{index}"), &[7; 100]);
    }
    ok(store.flush());
    let size = ok(store.approximate_size());
    assert!(size.estimated_keys > 0, "{size:?}");
    assert!(size.live_bytes > 0, "{size:?}");
}

pub(crate) fn empty_batches_and_maintenance_succeed(store: &dyn StateStore) {
    let batch = PartitionBatch::new(0);
    assert!(batch.is_empty());
    ok(store.write(batch));
    ok(store.flush());
    ok(store.compact());
    assert_eq!(ok(store.partitions()), Vec::<i32>::new());
    assert_eq!(ok(store.approximate_size()).estimated_keys, 0);
}

fn index_keys(
    store: &dyn StateStore,
    partition: i32,
    from: &[u8],
    to: &[u8],
    reverse: bool,
    limit: usize,
) -> Vec<Vec<u8>> {
    let range = IndexRange { from, to, reverse, limit };
    ok(store.index_range(partition, range)).into_iter().map(|(key, _)| key).collect()
}

pub(crate) fn index_ranges_read_in_order_within_their_partition(store: &dyn StateStore) {
    for partition in [i32::MIN, 2, 3, i32::MAX] {
        let mut batch = IndexBatch::new(partition);
        for key in [&b"rb"[..], b"ra", b"rc\xff", b"e1", b"r", b"s"] {
            batch.puts.push((key.to_vec(), partition.to_be_bytes().to_vec()));
        }
        ok(store.index_write(batch));
    }
    let r = |suffix: &[u8]| [b"r", suffix].concat();
    assert_eq!(index_keys(store, 2, b"r", b"s", false, 10), [r(b""), r(b"a"), r(b"b"), r(b"c\xff")]);
    assert_eq!(index_keys(store, 2, b"r", b"s", true, 10), [r(b"c\xff"), r(b"b"), r(b"a"), r(b"")]);
    assert_eq!(index_keys(store, 2, b"ra", b"rc", false, 10), [r(b"a"), r(b"b")]);
    assert_eq!(index_keys(store, 2, b"r", b"s", true, 2), [r(b"c\xff"), r(b"b")]);
    assert_eq!(index_keys(store, 2, b"s", b"r", false, 10), Vec::<Vec<u8>>::new());
    assert_eq!(index_keys(store, i32::MAX, b"", b"\xff", false, 10).len(), 6);
    let values = ok(store.index_get(3, &[b"e1".to_vec(), b"e2".to_vec()]));
    assert_eq!(values, [Some(3i32.to_be_bytes().to_vec()), None]);

    let mut batch = IndexBatch::new(2);
    batch.deletes.push(b"ra".to_vec());
    batch.deletes.push(b"rb".to_vec());
    batch.puts.push((b"rb".to_vec(), b"again".to_vec()));
    ok(store.index_write(batch));
    assert_eq!(index_keys(store, 2, b"r", b"s", false, 10), [r(b""), r(b"b"), r(b"c\xff")]);
    assert_eq!(index_keys(store, 3, b"r", b"s", false, 10).len(), 4);
}

pub(crate) fn index_clear_leaves_the_contacts(store: &dyn StateStore) {
    for partition in [0, i32::MAX] {
        put(store, partition, "c1", b"state");
        let mut batch = IndexBatch::new(partition);
        batch.puts.push((b"ec1".to_vec(), b"entry".to_vec()));
        ok(store.index_write(batch));
    }
    for partition in [0, i32::MAX] {
        ok(store.index_clear(partition));
        assert_eq!(ok(store.index_get(partition, &[b"ec1".to_vec()])), [None]);
        assert_eq!(ok(store.get(partition, "c1")), Some(b"state".to_vec()));
    }
    let mut batch = IndexBatch::new(1);
    batch.puts.push((b"ec1".to_vec(), b"entry".to_vec()));
    ok(store.index_write(batch));
    ok(store.drop_partition(1));
    assert_eq!(ok(store.index_get(1, &[b"ec1".to_vec()])), [None]);
}
