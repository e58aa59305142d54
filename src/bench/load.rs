//! Load for the harness: pre-loading the input topic as fast as the broker takes it, and the fixed-rate
//! stream of the latency phase with the arrival of its score changes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::Format;
use crate::event::{Event, json, protobuf};
use crate::generator::EventGenerator;
use crate::proto::v1;
use crate::runtime::now_ms;

/// Event-time spacing of pre-loaded events: they end about now.
const PRELOAD_STEP_MS: i64 = 1;
/// Prefix of the latency phase's event ids, so their outputs can be matched to them.
const LATENCY_ID: &str = "lat-";
/// Warm-up after the first output arrives, before latencies count: long enough for the group to settle
/// when the processing threads joined it one after another (a broker with no initial rebalance delay
/// gives the first thread every partition, and a second round moves some to the others, which members
/// learn of at their next heartbeat, 3 s apart by default).
const WARM_UP: Duration = Duration::from_secs(5);
/// How long to wait for the first output of the latency phase.
const FIRST_OUTPUT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long late outputs are waited for after the last measured event.
const STRAGGLERS: Duration = Duration::from_secs(2);

/// The pre-loaded input.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// Next offset per partition after the load.
    pub ends: Vec<i64>,
    /// Distinct contacts in the load.
    pub contacts: u64,
    /// Events per second the load was produced at.
    pub events_per_second: f64,
}

/// Keeps the highest acknowledged offset per partition.
struct Acks {
    ends: Mutex<Vec<i64>>,
    failed: Mutex<Option<String>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                if let (Ok(mut ends), Ok(partition)) = (self.ends.lock(), usize::try_from(message.partition()))
                    && let Some(end) = ends.get_mut(partition)
                {
                    *end = (*end).max(message.offset() + 1);
                }
            }
            Err((err, _)) => {
                if let Ok(mut failed) = self.failed.lock() {
                    failed.get_or_insert(err.to_string());
                }
            }
        }
    }
}

fn producer(bootstrap: &str, partitions: u32, linger_ms: &str) -> Result<ThreadedProducer<Acks>, KafkaError> {
    let acks = Acks { ends: Mutex::new(vec![0; partitions as usize]), failed: Mutex::new(None) };
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", linger_ms)
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "200000")
        .create_with_context(acks)
}

fn send(producer: &ThreadedProducer<Acks>, topic: &str, event: &Event, format: Format) -> Result<(), KafkaError> {
    let payload = match format {
        Format::Json => json::encode(event),
        Format::Protobuf => protobuf::encode(event),
    };
    crate::kafka::send_when_queued(producer, BaseRecord::to(topic).key(event.contact.as_bytes()).payload(&payload))
}

fn finish(producer: &ThreadedProducer<Acks>) -> Result<Vec<i64>, String> {
    producer.flush(Duration::from_secs(120)).map_err(|err| format!("flushing the load: {err}"))?;
    let context = producer.context();
    if let Some(reason) = context.failed.lock().ok().and_then(|failed| failed.clone()) {
        return Err(format!("producing the load failed: {reason}"));
    }
    context.ends.lock().map(|ends| ends.clone()).map_err(|_| "delivery reports poisoned".to_owned())
}

/// Produces `events` generated events over `contacts` (Zipf-distributed) to `topic`, keyed by contact.
#[allow(clippy::too_many_arguments, reason = "one phase's settings, used once")]
pub(crate) fn preload(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    events: u64,
    contacts: u64,
    format: Format,
    seed: u64,
    bar: &ProgressBar,
) -> Result<Loaded, String> {
    let producer = producer(bootstrap, partitions, "20").map_err(|err| format!("load producer: {err}"))?;
    let start_ms = now_ms() - events as i64 * PRELOAD_STEP_MS;
    let mut generator = EventGenerator::new(seed, contacts, start_ms, PRELOAD_STEP_MS);
    let mut seen: HashSet<String> = HashSet::new();
    bar.set_length(events);
    let started = Instant::now();
    for sent in 0..events {
        let event = generator.next_event();
        send(&producer, topic, &event, format).map_err(|err| format!("producing the load: {err}"))?;
        if !seen.contains(&event.contact) {
            seen.insert(event.contact);
        }
        if sent % 4096 == 0 {
            bar.set_position(sent);
        }
    }
    let ends = finish(&producer)?;
    bar.set_position(events);
    let acknowledged: i64 = ends.iter().sum();
    if acknowledged < events as i64 {
        return Err(format!("only {acknowledged} of {events} events reached the input topic"));
    }
    Ok(Loaded { ends, contacts: seen.len() as u64, events_per_second: events as f64 / started.elapsed().as_secs_f64() })
}

/// Latencies from event production to the arrival of its first score change.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Latency {
    /// Offered load, events per second.
    pub rate: u32,
    /// Events produced inside the measured window.
    pub events: u64,
    /// Of those, events whose score change arrived (the others changed no score).
    pub matched: u64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Maximum, milliseconds.
    pub max_ms: f64,
}

/// Produces events at `rate` to `input` while reading `score_topic`, for a warm-up and then `seconds`;
/// `alive` reports whether the processor still runs.
#[allow(clippy::too_many_arguments, reason = "one phase's settings, used once")]
pub(crate) fn latency(
    bootstrap: &str,
    input: &str,
    score_topic: &str,
    partitions: u32,
    rate: u32,
    seconds: u64,
    contacts: u64,
    format: Format,
    bar: &ProgressBar,
    alive: &mut dyn FnMut() -> Result<(), String>,
) -> Result<Latency, String> {
    let arrivals: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(bootstrap, score_topic, partitions, format, arrivals.clone(), stop.clone())?;
    let producer = producer(bootstrap, partitions, "0").map_err(|err| format!("latency producer: {err}"))?;
    let mut generator = EventGenerator::new(7, contacts, now_ms(), 0);
    let mut sent_at: Vec<Instant> = Vec::new();
    let started = Instant::now();
    let mut window: Option<(u64, Instant)> = None;
    bar.set_length(seconds);
    let result = 'phase: loop {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while (sent_at.len() as u64) < due {
            let mut event = generator.next_event();
            event.id = format!("{LATENCY_ID}{}", sent_at.len());
            event.ts_ms = now_ms();
            sent_at.push(Instant::now());
            if let Err(err) = send(&producer, input, &event, format) {
                break 'phase Err(format!("producing the latency load: {err}"));
            }
        }
        let now = Instant::now();
        match window {
            None => {
                let first = arrivals.lock().ok().and_then(|arrivals| arrivals.first().map(|(_, at)| *at));
                match first {
                    Some(at) if now.duration_since(at) >= WARM_UP => window = Some((sent_at.len() as u64, now)),
                    None if now.duration_since(started) > FIRST_OUTPUT_TIMEOUT => {
                        break Err("no score change arrived within a minute".to_owned());
                    }
                    _ => {}
                }
            }
            Some((_, from)) => {
                bar.set_position(now.duration_since(from).as_secs().min(seconds));
                if now.duration_since(from) >= Duration::from_secs(seconds) {
                    break Ok(sent_at.len() as u64);
                }
            }
        }
        if let Err(reason) = alive() {
            break Err(reason);
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    std::thread::sleep(STRAGGLERS);
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let end = result?;
    let Some((begin, _)) = window else {
        return Err("the latency window never opened".into());
    };
    let arrivals = arrivals.lock().map(|arrivals| arrivals.clone()).unwrap_or_default();
    let mut latencies: Vec<f64> = arrivals
        .iter()
        .filter(|(n, _)| (begin..end).contains(n))
        .filter_map(|(n, at)| sent_at.get(*n as usize).map(|sent| at.duration_since(*sent).as_secs_f64() * 1e3))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() - 1) as f64 * q).round() as usize]
    };
    Ok(Latency {
        rate,
        events: end - begin,
        matched: latencies.len() as u64,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
    })
}

/// The event number of a latency-phase output's first id (`lat-<n>:0`), or of the event itself as the
/// pipe copies it (`lat-<n>`); `None` for any other.
fn event_number(id: &str) -> Option<u64> {
    let number = id.strip_prefix(LATENCY_ID)?;
    number.strip_suffix(":0").unwrap_or(number).parse().ok()
}

fn output_id(payload: &[u8], format: Format) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    match format {
        Format::Json => serde_json::from_slice::<Id>(payload).ok().map(|output| output.id),
        Format::Protobuf => v1::Output::decode(payload).ok().map(|output| output.id),
    }
}

fn spawn_reader(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    format: Format,
    arrivals: Arc<Mutex<Vec<(u64, Instant)>>>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}.latency"))
        .set("enable.auto.commit", "false")
        // A downstream consumer's fetch wait adds to the latency it sees; the reader's adds nothing.
        .set("fetch.wait.max.ms", "1")
        .create()
        .map_err(|err| format!("latency reader: {err}"))?;
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        list.add_partition_offset(topic, partition, Offset::Beginning).map_err(|err| err.to_string())?;
    }
    consumer.assign(&list).map_err(|err| format!("latency reader: {err}"))?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(20)) else {
                continue;
            };
            let at = Instant::now();
            let number =
                message.payload().and_then(|payload| output_id(payload, format)).and_then(|id| event_number(&id));
            if let (Some(number), Ok(mut arrivals)) = (number, arrivals.lock()) {
                arrivals.push((number, at));
            }
        }
    }))
}
