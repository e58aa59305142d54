//! `leadscore demo`: the whole product on one laptop with no setup. It starts librdkafka's in-process
//! mock broker, creates the topics, feeds a realistic stream of interaction events for a few thousand
//! contacts (with companies, anonymous visitors who identify, and duplicates merged), runs the processor
//! on it, and prints a live view of the top contacts and accounts each second.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;

use crate::app::{self, Instance};
use crate::config::Config;
use crate::event::json;
use crate::generator::EventGenerator;
use crate::rules::Rules;
use crate::runtime::now_ms;
use crate::runtime::status::Status;

/// The scorecard the demo runs: the shipped example.
const DEMO_RULES: &str = include_str!("../examples/rules.toml");
/// Input partitions of the demo topics.
const PARTITIONS: i32 = 4;

/// Demo settings from the command line.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this long (until Ctrl-C if absent).
    pub duration: Option<Duration>,
    /// Events generated per second.
    pub rate: u32,
    /// Contacts in the generated population.
    pub contacts: u64,
    /// HTTP address for the API and metrics.
    pub http: std::net::SocketAddr,
    /// Bearer token the API then requires (the console asks for it), as `http.token` does.
    pub http_token: Option<String>,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The embedded broker or a client could not start.
    #[error("embedded Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The state directory could not be created.
    #[error("state directory: {0}")]
    Io(#[from] std::io::Error),
    /// The processor failed.
    #[error(transparent)]
    App(#[from] app::AppError),
    /// The embedded rules are invalid (a build problem).
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What the live view shows, fed from the output topics.
#[derive(Default)]
struct LiveView {
    scores: HashMap<String, (f64, String, String)>,
    /// Each account's sum and number of contacts.
    accounts: HashMap<String, (f64, u64)>,
    recent: VecDeque<String>,
    outputs: u64,
}

/// Runs the demo until `shutdown` resolves or the duration passes.
pub async fn run(options: DemoOptions, shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    let cluster = MockCluster::new(1)?;
    let bootstrap = cluster.bootstrap_servers();
    let state_dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.kafka.brokers = bootstrap.clone();
    config.kafka.group_id = "leadscore-demo".into();
    config.kafka.fetch_wait_max_ms = 20;
    config.kafka.for_mock_cluster();
    config.topics.partitions = PARTITIONS as u32;
    config.state.dir = state_dir.path().join("state");
    config.http.listen = options.http;
    config.http.token = options.http_token.clone().map(crate::config::Secret::new);
    for spec in app::topic_specs(&config) {
        cluster.create_topic(&spec.name, spec.partitions, 1)?;
    }
    println!("leadscore demo: embedded Kafka broker at {bootstrap}");
    println!("  web console: http://{}/ui/", options.http);
    println!("  tap the topics with: kcat -b {bootstrap} -t {} -C", config.topics.score_changed);
    println!(
        "  contact API and metrics: http://{}/v1/contacts/contact-0000000  http://{}/metrics",
        options.http, options.http
    );
    println!(
        "  leaderboard and rule statistics: http://{}/v1/leaderboard?limit=10  http://{}/v1/rules",
        options.http, options.http
    );
    println!("  top accounts: http://{}/v1/accounts?by=sum&limit=10", options.http);

    let rules = Arc::new(Rules::parse(DEMO_RULES, Path::new("examples/rules.toml"))?);
    let store = app::open_store(&config)?;
    let status = Arc::new(Status::default());
    let instance = Arc::new(Instance::new(rules, store, status.clone(), PARTITIONS as u32, config.clone()));

    let stop = Arc::new(AtomicBool::new(false));
    let generator = spawn_generator(&config, options.rate, options.contacts, stop.clone())?;
    let view = Arc::new(Mutex::new(LiveView::default()));
    let watcher = spawn_view_consumer(&config, view.clone(), stop.clone())?;

    let printer = {
        let view = view.clone();
        let status = status.clone();
        let console = format!("http://{}/ui/", options.http);
        tokio::spawn(async move { print_live(view, status, console).await })
    };
    let deadline = async {
        match options.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    let result = app::run_instance(instance, async {
        tokio::select! {
            _ = shutdown => {}
            _ = deadline => {}
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    printer.abort();
    let _ = generator.join();
    let _ = watcher.join();
    let summary = result?;
    let outputs = view.lock().map(|view| view.outputs).unwrap_or(0);
    println!(
        "demo finished: {} events scored, {} outputs published, {} outputs seen on the topics",
        summary.records, summary.outputs, outputs
    );
    drop(cluster);
    Ok(())
}

fn client(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (key, value) in config.kafka.client_config() {
        client.set(key, value);
    }
    client
}

fn spawn_generator(
    config: &Config,
    rate: u32,
    contacts: u64,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, DemoError> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        client(config).set("partitioner", "murmur2_random").set("linger.ms", "5").create()?;
    let topic = config.topics.inputs[0].clone();
    Ok(std::thread::spawn(move || {
        let mut generator = EventGenerator::new(now_ms() as u64, contacts, now_ms(), 0).with_identities();
        let started = Instant::now();
        let mut sent: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let mut event = generator.next_event();
            event.ts_ms = now_ms();
            let payload = json::encode(&event);
            let record = BaseRecord::to(&topic).key(event.contact.as_bytes()).payload(&payload);
            if producer.send(record).is_ok() {
                sent += 1;
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = producer.flush(Duration::from_secs(2));
    }))
}

fn spawn_view_consumer(
    config: &Config,
    view: Arc<Mutex<LiveView>>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, DemoError> {
    let consumer: BaseConsumer =
        client(config).set("group.id", "leadscore-demo-view").set("auto.offset.reset", "earliest").create()?;
    let topics = [
        &config.topics.score_changed,
        &config.topics.threshold_crossed,
        &config.topics.phase_changed,
        &config.topics.accounts,
    ];
    let topics: Vec<&str> = topics.iter().map(|topic| topic.as_str()).collect();
    consumer.subscribe(&topics)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let Some(Ok(output)) = message.payload().map(serde_json::from_slice::<Value>) else {
                continue;
            };
            let Ok(mut view) = view.lock() else {
                return;
            };
            view.outputs += 1;
            let contact = output["contact"].as_str().unwrap_or_default().to_owned();
            match output["type"].as_str() {
                Some("score_changed") => {
                    let total = output["new_total"].as_f64().unwrap_or(0.0);
                    let phase = output["phase"].as_str().unwrap_or_default().to_owned();
                    let grade = output["grade"].as_str().unwrap_or("-").to_owned();
                    view.scores.insert(contact, (total, phase, grade));
                }
                Some("contact_merged") => {
                    let merged = output["merged"].as_str().unwrap_or_default();
                    view.scores.remove(merged);
                    push_recent(&mut view.recent, format!("{merged} merged into {contact}"));
                }
                Some("contact_erased") => {
                    view.scores.remove(&contact);
                }
                Some("account_score_changed") => {
                    let account = output["account"].as_str().unwrap_or_default().to_owned();
                    let sum = output["sum"].as_f64().unwrap_or(0.0);
                    let contacts = output["contacts"].as_u64().unwrap_or(0);
                    view.accounts.insert(account, (sum, contacts));
                }
                Some("account_threshold_crossed") => {
                    let line = format!(
                        "account {} {} {}",
                        output["account"].as_str().unwrap_or_default(),
                        output["threshold"].as_str().unwrap_or_default(),
                        output["direction"].as_str().unwrap_or_default(),
                    );
                    push_recent(&mut view.recent, line);
                }
                Some("threshold_crossed") => {
                    let line = format!(
                        "{} {} {} ({:.1})",
                        contact,
                        output["threshold"].as_str().unwrap_or_default(),
                        output["direction"].as_str().unwrap_or_default(),
                        output["value"].as_f64().unwrap_or(0.0)
                    );
                    push_recent(&mut view.recent, line);
                }
                Some("phase_changed") => {
                    let line = format!(
                        "{} {} → {}",
                        contact,
                        output["from"].as_str().unwrap_or_default(),
                        output["to"].as_str().unwrap_or_default()
                    );
                    push_recent(&mut view.recent, line);
                }
                _ => {}
            }
        }
    }))
}

fn push_recent(recent: &mut VecDeque<String>, line: String) {
    recent.push_back(line);
    while recent.len() > 8 {
        recent.pop_front();
    }
}

async fn print_live(view: Arc<Mutex<LiveView>>, status: Arc<Status>, console: String) {
    let terminal = std::io::stdout().is_terminal();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut last_events = 0;
    loop {
        interval.tick().await;
        let events = status.events.load(Ordering::Relaxed);
        let rate = events - last_events;
        last_events = events;
        let Ok(view) = view.lock() else {
            return;
        };
        let mut top: Vec<(&String, &(f64, String, String))> = view.scores.iter().collect();
        top.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
        let mut screen = String::new();
        if terminal {
            screen.push_str("\x1b[2J\x1b[H");
        }
        let ready = if status.ready() { "ready" } else { "starting" };
        screen.push_str(&format!(
            "leadscore demo [{ready}]  {rate} events/s  {events} events  {} outputs  {} contacts scored\n",
            view.outputs,
            view.scores.len()
        ));
        let mut accounts: Vec<(&String, &(f64, u64))> = view.accounts.iter().collect();
        accounts.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
        screen.push_str("  top contacts              total  phase        grade   top accounts       sum  contacts\n");
        for row in 0..10 {
            let contact = top.get(row).map_or_else(String::new, |(contact, (total, phase, grade))| {
                format!("{contact:<24} {total:>6.1}  {phase:<12} {grade:<5}")
            });
            let account = accounts.get(row).map_or_else(String::new, |(account, (sum, contacts))| {
                format!("{account:<14} {sum:>7.1}  {contacts:>8}")
            });
            screen.push_str(format!("  {contact:<52}   {account}").trim_end());
            screen.push('\n');
        }
        screen.push_str("  recent crossings and phase changes:\n");
        for line in &view.recent {
            screen.push_str(&format!("    {line}\n"));
        }
        screen.push_str(&format!("  web console: {console}\n"));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(screen.as_bytes());
        let _ = out.flush();
    }
}
