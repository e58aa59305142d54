//! A scenario of contact merges across partitions, run on the mock cluster and on Apache Kafka.

use std::collections::BTreeMap;
use std::time::Duration;

use leadscore::config::Config;

use super::*;

/// The whole answer to a GET, headers included.
fn raw_http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|err| panic!("{err}"));
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|err| panic!("{err}"));
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap_or_else(|err| panic!("{err}"));
    response
}

/// The end offsets of a topic's partitions.
fn ends(bootstrap: &str, topic: &str, partitions: u32) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = client(bootstrap).create().unwrap_or_else(|err| panic!("{err}"));
    (0..partitions as i32)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .unwrap_or_else(|err| panic!("{err}"));
            (partition, high)
        })
        .collect()
}

/// Per partition of the internal topic, the offset after its last committed record: the least the group
/// commits once it has read them all. Transaction markers, and records of transactions aborted after a
/// crash, take offsets of their own, so in exactly-once mode this is below the topic's end and the group
/// may commit past it.
fn read_to(bootstrap: &str, topic: &str, partitions: u32) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let ends = ends(bootstrap, topic, partitions);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap_or_else(|err| panic!("{err}"));
    }
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", unique("reader"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap_or_else(|err| panic!("{err}"));
    consumer.assign(&assignment).unwrap_or_else(|err| panic!("{err}"));
    let mut read = BTreeMap::new();
    let mut at_end = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    while at_end.len() < ends.len() && started.elapsed() < Duration::from_secs(30) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                read.insert(message.partition(), message.offset() + 1);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            _ => {}
        }
    }
    read
}

/// Produces `events`, then waits until the group has committed them and everything they sent through the
/// internal topics (a merge request sends a transfer on, which sends account updates: so until the
/// topics' ends stop moving).
pub fn score_phase(bootstrap: &str, names: &Names, events: &[leadscore::event::Event], partitions: u32) {
    produce(bootstrap, &names.input, partitions, events);
    wait_processed(bootstrap, names, partitions);
}

/// Waits until the group has committed everything produced to the input topic and everything it sent
/// through the internal topics (until the topics' ends stop moving).
pub fn wait_processed(bootstrap: &str, names: &Names, partitions: u32) {
    wait_committed(
        bootstrap,
        &names.group,
        &names.input,
        &ends(bootstrap, &names.input, partitions),
        Duration::from_secs(60),
    );
    let mut previous = Vec::new();
    loop {
        let mut internal = Vec::new();
        for topic in [&names.internal, &names.internal_account] {
            internal.push(ends(bootstrap, topic, partitions));
            let written = read_to(bootstrap, topic, partitions);
            wait_committed_past(bootstrap, &names.group, topic, &written, Duration::from_secs(60));
        }
        if internal == previous {
            break;
        }
        previous = internal;
    }
}

/// Merges cross partitions through the internal topic, with one instance of `config` in this process: a
/// merged contact's state moves into the survivor,
/// the merged id becomes an alias whose later events are scored on the survivor (through two aliases for
/// a chain of merges), and the final states, aliases and outputs equal the offline model's. Each phase's
/// merges and forwarded events share one event time, so that no decay timer depends on the order in which
/// records from different partitions meet.
pub fn scenario(bootstrap: &str, names: &Names, mut config: Config, partitions: u32) {
    use leadscore::event::{AttrValue, Event};

    let rules = rules();
    let contact = |n: u64| format!("contact-{n:07}");
    let first = stream(41, 1_500, 120);
    let end = first.iter().map(|event| event.ts_ms).max().unwrap_or_default();
    let merge = |id: String, survivor: String, merged: String, ts_ms: i64| Event {
        id,
        contact: survivor,
        kind: "merge".into(),
        ts_ms,
        item: None,
        attrs: vec![("merged".into(), AttrValue::Text(merged))],
        adjustment: None,
        phase: None,
    };
    let visit = |id: String, who: String, ts_ms: i64| Event {
        id,
        contact: who,
        kind: "page_visit".into(),
        ts_ms,
        item: Some("/pricing".into()),
        attrs: Vec::new(),
        adjustment: None,
        phase: None,
    };
    // Odd contacts below 40 merge into the even ones before them; one merge is sent twice; a merged
    // contact never seen before becomes an alias all the same.
    let t_merge = end + 3_600_000;
    let mut merges: Vec<Event> =
        (0..20).map(|n| merge(format!("merge-{n}"), contact(2 * n), contact(2 * n + 1), t_merge)).collect();
    merges.push(merge("merge-again".into(), contact(4), contact(5), t_merge));
    merges.push(merge("merge-new".into(), contact(60), "visitor-never-seen".into(), t_merge));
    // The merged ids' later events go to their survivors.
    let t_after = t_merge + 3_600_000;
    let after: Vec<Event> = (0..20)
        .map(|n| visit(format!("after-{n}"), contact(2 * n + 1), t_after))
        .chain([visit("after-new".into(), "visitor-never-seen".into(), t_after)])
        .collect();
    // A survivor merged in turn: contact 1's events now go through contact 0 to contact 100.
    let t_chain = t_after + 3_600_000;
    let chain = vec![merge("merge-chain".into(), contact(100), contact(0), t_chain)];
    // One at a time: both reach contact 100, by paths of different length.
    let t_last = t_chain + 3_600_000;
    let through_one = vec![visit("last-0".into(), contact(0), t_last)];
    let through_two = vec![visit("last-1".into(), contact(1), t_last + 3_600_000)];
    // Erasing the survivor of the chain forgets its aliases: contact 1 is a contact of its own again.
    let t_erase = t_last + 2 * 3_600_000;
    let erase =
        |id: &str, who: String, ts_ms: i64| Event { kind: "erase".into(), item: None, ..visit(id.into(), who, ts_ms) };
    let erased = vec![erase("erase-100", contact(100), t_erase)];
    let reborn = vec![visit("reborn-1".into(), contact(1), t_erase + 3_600_000)];

    let db = config.state.dir.clone();
    let port = free_port();
    config.http.listen = ([127, 0, 0, 1], port).into();
    let instance = InProcess::start(&config, partitions);
    for phase in [&first, &merges, &after, &chain, &through_one, &through_two, &erased, &reborn] {
        score_phase(bootstrap, names, phase, partitions);
    }
    // The API sends a merged contact's readers to the contact it was merged into.
    let response = http_get_status(port, &format!("/v1/contacts/{}/series", contact(3)));
    assert_eq!(response.map(|(status, _)| status), Some(308));
    let raw = raw_http_get(port, &format!("/v1/contacts/{}", contact(3)));
    assert!(raw.contains(&format!("location: /v1/contacts/{}\r\n", contact(2))), "{raw}");
    instance.stop();

    let all: Vec<Event> = [first, merges, after, chain, through_one, through_two, erased, reborn].concat();
    let model = model_of_events(&rules, partitions, &all);
    let states = stored_states(&rules, &db);
    compare_states(&model, &states);
    assert_eq!(stored_aliases(&rules, &db), model.aliases);
    // 22 merged ids, less contacts 0 and 1, forgotten with contact 100.
    assert_eq!(model.aliases.len(), 20);
    for merged in (1..20).map(|n| contact(2 * n + 1)).chain(["visitor-never-seen".to_owned()]) {
        assert!(!states.contains_key(&merged), "{merged} was merged but still has a state");
    }
    assert!(!states.contains_key(&contact(0)) && !states.contains_key(&contact(100)), "erased with its aliases");
    assert!(states.contains_key(&contact(1)), "a forgotten alias's later event starts a contact of its own");
    let published = read_all(bootstrap, &names.outputs(), Duration::from_secs(2));
    assert_eq!(compare_outputs(&model, &published), 0, "a clean run publishes each output once");
    let merged_outputs = published
        .iter()
        .filter(|(_, _, payload, _)| {
            payload
                .as_deref()
                .is_some_and(|bytes| String::from_utf8_lossy(bytes).contains("\"type\":\"contact_merged\""))
        })
        .count();
    // Twenty merges of contacts with a state, and the chain; the repeated merge and the contact never
    // seen move no state.
    assert_eq!(merged_outputs, 21);
}
