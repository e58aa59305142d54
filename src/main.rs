//! The `leadscore` command line. It parses arguments, sets up logging and hands over to the library.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use leadscore::config::Config;
use leadscore::demo::DemoOptions;
use leadscore::offline::OfflineScorer;
use leadscore::replay::ReplayRequest;
use leadscore::rules::{Effect, Rules};

/// mimalloc instead of glibc's allocator: librdkafka's threads allocate the buffers the processing threads
/// free, and glibc spent about 30% of a processing thread's time in malloc and free under load. The
/// crate's `override` feature makes librdkafka and RocksDB allocate from it too: with glibc's arenas
/// under them, an instance restoring and indexing 10M contacts peaked 200 MiB higher. Its `no_thp`
/// feature keeps it from asking the kernel for transparent huge pages: with them, peak RSS was 15-20%
/// higher for the same CPU per event.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use cli::{BenchArgs, Cli, Command, TopicsAction};

/// Exit status for a bad rules or config file.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    leadscore::telemetry::init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Topics { action: TopicsAction::Create { config } } => topics_create(&config),
        Command::Inspect { config, contact, at } => inspect(&config, &contact, at.as_deref()),
        Command::Generate { brokers, topic, count, contacts, rate, seed } => {
            leadscore::generator::produce(&brokers, &topic, count, contacts, rate, seed)
                .map(|sent| {
                    eprintln!("produced {sent} events to {topic}");
                    ExitCode::SUCCESS
                })
                .map_err(anyhow::Error::from)
        }
        Command::Bench(args) => bench(args),
        Command::Pipe { config, to } => pipe(&config, &to),
        Command::Demo { duration, rate, contacts, http, http_token } => {
            demo(DemoOptions { duration, rate, contacts, http, http_token })
        }
        Command::Check { file: Some(file), sample: None, .. } => check(&file),
        Command::Check { config, sample, topic, .. } => check_sample(config.as_deref(), sample.as_deref(), topic),
        Command::Replay {
            rules,
            config,
            baseline_rules,
            brokers,
            topics,
            from,
            to,
            output_prefix,
            state_dir,
            changelog,
            input,
            output,
            partitions,
            top,
        } => replay(&ReplayRequest {
            rules,
            baseline_rules,
            config,
            brokers,
            topics,
            from,
            to,
            output_prefix,
            state_dir,
            changelog,
            input,
            output,
            partitions,
            top,
            progress_bar: std::io::stderr().is_terminal(),
        }),
        Command::Score { rules, config, topic, input, output, state_out, partitions } => {
            let decoder = match config {
                Some(config) => match topic_decoder(&config, topic) {
                    Ok((decoder, _, _)) => decoder,
                    Err(code) => return code,
                },
                None => leadscore::event::input::InputDecoder::Json,
            };
            score(&rules, decoder, &input, &output, state_out.as_deref(), partitions)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_rules(path: &Path) -> Result<Rules, ExitCode> {
    Rules::load(path).map_err(|err| {
        eprintln!("error: {err}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let rules = match load_rules(path) {
        Ok(rules) => rules,
        Err(code) => return Ok(code),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok, rules version {}", path.display(), rules.version)?;
    writeln!(out, "groups ({}):", rules.groups.len())?;
    for group in &rules.groups {
        writeln!(out, "  {:<14} {}..{}  weight {}  {}", group.name, group.min, group.max, group.weight, group.decay)?;
    }
    let disqualifying = rules.rules.iter().filter(|rule| matches!(rule.effect, Effect::Disqualify(_))).count();
    let negative =
        rules.rules.iter().filter(|rule| matches!(rule.effect, Effect::Points(points) if points < 0.0)).count();
    let mut types: Vec<&str> = rules.rules.iter().map(|rule| rule.event_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    writeln!(
        out,
        "rules ({}): {} positive, {negative} negative, {disqualifying} disqualifying, over {} event types",
        rules.rules.len(),
        rules.rules.len() - negative - disqualifying,
        types.len()
    )?;
    writeln!(out, "  event types: {}", types.join(", "))?;
    writeln!(out, "thresholds ({}):", rules.thresholds.len())?;
    for threshold in &rules.thresholds {
        let target = rules.target_name(threshold.target);
        let advance = threshold.advance_to.map(|p| format!(" → {}", rules.phases[p].name)).unwrap_or_default();
        writeln!(
            out,
            "  {:<14} {target} ≥ {} (down below {}){advance}",
            threshold.name,
            threshold.at,
            threshold.down_level()
        )?;
    }
    let phases: Vec<&str> = rules.phases.iter().map(|phase| phase.name.as_str()).collect();
    writeln!(out, "phases: {}", phases.join(" → "))?;
    if let Some(grades) = rules.grades {
        writeln!(
            out,
            "grades on {}: A ≥ {}, B ≥ {}, C ≥ {}, else D",
            rules.groups[grades.group].name, grades.a, grades.b, grades.c
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn score(
    rules: &Path,
    decoder: leadscore::event::input::InputDecoder,
    input: &str,
    output: &str,
    state_out: Option<&Path>,
    partitions: u32,
) -> anyhow::Result<ExitCode> {
    let rules = match load_rules(rules) {
        Ok(rules) => rules,
        Err(code) => return Ok(code),
    };
    let reader: Box<dyn Read> = if input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(input).map_err(|err| anyhow::anyhow!("cannot open {input}: {err}"))?)
    };
    let mut writer: Box<dyn Write> = if output == "-" {
        Box::new(BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(BufWriter::new(File::create(output).map_err(|err| anyhow::anyhow!("cannot create {output}: {err}"))?))
    };
    let mut scorer = OfflineScorer::new(&rules, partitions).with_decoder(decoder);
    let summary = scorer.score_all(BufReader::new(reader), &mut writer, &mut std::io::stderr().lock())?;
    match state_out {
        Some(path) => {
            let mut file = BufWriter::new(File::create(path)?);
            scorer.write_states(&mut file)?;
            file.flush()?;
        }
        None => scorer.write_states(&mut writer)?,
    }
    writer.flush()?;
    eprintln!(
        "{} lines: {} scored, {} ignored, {} duplicates, {} malformed; {} outputs; {} contacts",
        summary.lines,
        summary.scored,
        summary.ignored,
        summary.duplicates,
        summary.malformed,
        summary.outputs,
        scorer.store().contacts().len()
    );
    Ok(ExitCode::SUCCESS)
}

fn replay(request: &ReplayRequest) -> anyhow::Result<ExitCode> {
    match leadscore::replay::run(request, &mut std::io::stdout().lock()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) if err.is_bad_input() => {
            eprintln!("error: {err}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
        Err(err) => Err(err.into()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Runs an instance's `future` on a new runtime, which then ends without waiting for blocking work: a Kafka
/// client left closing after a clean stop (see `app::run_instance`) must not keep the process.
fn run_to_end<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = runtime()?;
    let output = runtime.block_on(future);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(output)
}

/// Resolves on SIGTERM (drain) or Ctrl-C/SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Loads a config file, or prints why it is bad (file:line:column) and gives the exit status.
/// The decoder of an input topic of a config file (the only one when `topic` is not given).
fn topic_decoder(
    config_path: &Path,
    topic: Option<String>,
) -> Result<(leadscore::event::input::InputDecoder, Config, String), ExitCode> {
    let config = load_config(config_path)?;
    let topic = match topic {
        Some(topic) => topic,
        None if config.topics.inputs.len() == 1 => config.topics.inputs[0].clone(),
        None => {
            eprintln!("error: the config has input topics {:?}; name one with --topic", config.topics.inputs);
            return Err(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    if !config.topics.inputs.contains(&topic) {
        eprintln!("error: {topic:?} is not one of the config's input topics {:?}", config.topics.inputs);
        return Err(ExitCode::from(EXIT_BAD_INPUT));
    }
    match leadscore::event::input::InputDecoder::for_topic(&config.input.topic(&topic)) {
        Ok(decoder) => Ok((decoder, config, topic)),
        Err(err) => {
            eprintln!("error: input.topics.{topic:?}: {err}");
            Err(ExitCode::from(EXIT_BAD_INPUT))
        }
    }
}

fn check_sample(config: Option<&Path>, sample: Option<&Path>, topic: Option<String>) -> anyhow::Result<ExitCode> {
    let (Some(config_path), Some(sample_path)) = (config, sample) else {
        eprintln!("error: --sample needs --config");
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    };
    let (decoder, config, topic) = match topic_decoder(config_path, topic) {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let sample = std::fs::read(sample_path)?;
    let limits = leadscore::event::DecodeLimits { max_bytes: config.input.max_bytes as usize, ..Default::default() };
    let file = sample_path.display().to_string();
    let mut out = std::io::stdout().lock();
    let format = config.input.topic(&topic).format.name();
    writeln!(out, "{file}: records of topic {topic:?}, format {format} (keys are not checked: a sample has none)")?;
    let summary = leadscore::event::sample::report(&decoder, &file, &sample, &limits, &mut out)?;
    writeln!(out, "{} events, {} skipped, {} dead letters", summary.events, summary.skipped, summary.dead_letters)?;
    Ok(ExitCode::SUCCESS)
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|err| {
        eprintln!("error: {err}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    tracing::info!(config = %config.redacted(), "starting leadscore");
    let result = run_to_end(leadscore::app::run(config, shutdown_signal()))?;
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(leadscore::app::AppError::Rules(err)) => {
            eprintln!("error: {err}");
            Ok(ExitCode::from(EXIT_BAD_INPUT))
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn inspect(path: &Path, contact: &str, at: Option<&str>) -> anyhow::Result<ExitCode> {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let at_ms = match at.map(leadscore::event::parse_rfc3339) {
        None => leadscore::runtime::now_ms(),
        Some(Ok(ms)) => ms,
        Some(Err(err)) => {
            eprintln!("error: --at: {err}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    match leadscore::inspect::inspect(&config, contact, at_ms)? {
        Some(found) => {
            println!("{}", serde_json::to_string_pretty(&found)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("contact {contact} is not in {}", config.state.dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn topics_create(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let provisioned = runtime()?.block_on(leadscore::app::provision_topics(&config))?;
    print!("{provisioned}");
    if provisioned.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {} topic problem(s); `leadscore run` would refuse to start", provisioned.problems.len());
        Ok(ExitCode::FAILURE)
    }
}

fn demo(options: DemoOptions) -> anyhow::Result<ExitCode> {
    run_to_end(leadscore::demo::run(options, shutdown_signal()))??;
    Ok(ExitCode::SUCCESS)
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = leadscore::bench::BenchOptions {
        brokers: args.brokers,
        events: args.events,
        contacts: args.contacts,
        partitions: args.partitions,
        threads: leadscore::config::ProcessingConfig { threads: args.threads, ..Default::default() }.thread_count()
            as u32,
        rate: args.rate,
        latency_seconds: args.latency_seconds,
        restore_contacts: args.restore_contacts,
        format: if args.format == "protobuf" {
            leadscore::config::Format::Protobuf
        } else {
            leadscore::config::Format::Json
        },
        exactly_once: !args.no_exactly_once,
        seed: args.seed,
        executable: std::env::current_exe()?,
        progress: !args.json && std::io::stderr().is_terminal(),
    };
    let report = leadscore::bench::run(&options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

fn pipe(path: &Path, to: &str) -> anyhow::Result<ExitCode> {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let copier = {
        let stop = stop.clone();
        let to = to.to_owned();
        std::thread::spawn(move || leadscore::bench::pipe::run(&config, &to, &stop))
    };
    runtime()?.block_on(async {
        let finished = async {
            while !copier.is_finished() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = finished => {}
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let copied = copier.join().map_err(|_| anyhow::anyhow!("the pipe thread panicked"))??;
    eprintln!("copied {copied} records to {to}");
    Ok(ExitCode::SUCCESS)
}
