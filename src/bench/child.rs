//! Runs one measured process (`leadscore run` or `leadscore pipe`) as a child, so that its CPU time and
//! peak memory are its own and not the harness's or the embedded broker's. Progress is read from the
//! consumer group's committed offsets, which both processes only advance once their outputs are
//! acknowledged: a mode is done when every pre-loaded input is committed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// How often committed offsets are read.
const WATCH_PERIOD: Duration = Duration::from_millis(50);
/// A mode that commits nothing new for this long has failed.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child may take to drain and stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Linux reports process CPU time in USER_HZ ticks, 100 per second on every architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// A started child process with its log.
pub(crate) struct Measured {
    child: Child,
    log: PathBuf,
}

/// What a finished measurement saw, over the window from the first observed commit to the last.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Events committed inside the window.
    pub events: u64,
    /// Events committed in all when the mode finished.
    pub committed: u64,
    /// Length of the window.
    pub seconds: f64,
    /// CPU seconds (user + system) the child spent inside the window.
    pub cpu_seconds: f64,
    /// The child's peak resident set size, bytes.
    pub peak_rss_bytes: u64,
}

impl Measured {
    /// Starts `executable` with `args`, its standard error going to `log`.
    pub fn start(executable: &Path, args: &[&str], log: &Path) -> Result<Measured, String> {
        let stderr = std::fs::File::create(log).map_err(|err| format!("cannot create {}: {err}", log.display()))?;
        let child = Command::new(executable)
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", executable.display()))?;
        Ok(Measured { child, log: log.to_path_buf() })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the child has exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("exited with {status}: {}", self.log_tail())),
            Err(err) => Err(format!("cannot watch the process: {err}")),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    /// Waits until the group has committed `ends` (next offset per input partition), showing progress.
    /// With `metrics`, the processor's event counter counts too: the mock cluster keeps offsets committed
    /// through a transaction from other clients, and in exactly-once mode a batch is counted only after
    /// its transaction commits.
    pub fn watch(
        &mut self,
        bootstrap: &str,
        group: &str,
        topic: &str,
        ends: &[i64],
        metrics: Option<SocketAddr>,
        bar: &ProgressBar,
    ) -> Result<Window, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            // Read committed offsets as they are, not only stable ones: an exactly_once child nearly always
            // has a transaction with offsets open, and a stable read waits for it.
            .set("isolation.level", "read_uncommitted")
            .create()
            .map_err(|err| format!("offset reader: {err}"))?;
        let mut list = TopicPartitionList::new();
        for partition in 0..ends.len() {
            list.add_partition(topic, partition as i32);
        }
        let total: i64 = ends.iter().sum();
        bar.set_length(total as u64);
        let spawned = (Instant::now(), self.cpu_seconds());
        let mut first: Option<(Instant, f64, i64)> = None;
        let mut last_progress = (Instant::now(), -1);
        loop {
            self.check_alive()?;
            // A failed read (a coordinator still loading, a timeout) is read again; the stall check below
            // ends a child that never gets anywhere.
            let committed = match consumer.committed_offsets(list.clone(), Duration::from_secs(5)) {
                Ok(committed) => committed,
                Err(err) => {
                    tracing::debug!(error = %err, "reading committed offsets; trying again");
                    TopicPartitionList::new()
                }
            };
            let done: i64 = (0..ends.len())
                .map(|partition| match committed.find_partition(topic, partition as i32).map(|e| e.offset()) {
                    Some(Offset::Offset(next)) => next.min(ends[partition]),
                    _ => 0,
                })
                .sum::<i64>()
                .max(metrics.map_or(0, events_counted));
            let now = Instant::now();
            if done > 0 && first.is_none() {
                first = Some((now, self.cpu_seconds(), done));
            }
            bar.set_position(done as u64);
            if done >= total {
                let cpu = self.cpu_seconds();
                let peak_rss_bytes = self.peak_rss_bytes();
                // Everything committed at the first look (a tiny run): count from the start of the process.
                let (start, start_cpu, start_done) = match first {
                    Some(first) if first.2 < total => first,
                    _ => (spawned.0, spawned.1, 0),
                };
                return Ok(Window {
                    events: (total - start_done) as u64,
                    committed: done as u64,
                    seconds: now.duration_since(start).as_secs_f64(),
                    cpu_seconds: cpu - start_cpu,
                    peak_rss_bytes,
                });
            }
            if done > last_progress.1 {
                last_progress = (now, done);
            } else if now.duration_since(last_progress.0) > STALL_TIMEOUT {
                return Err(format!(
                    "no progress for {}s at {done} of {total} events: {}",
                    STALL_TIMEOUT.as_secs(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(WATCH_PERIOD);
        }
    }

    /// User + system CPU seconds of the child so far, from `/proc/<pid>/stat`.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at field 3, the state.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime are fields 14 and 15, so 11 and 12 after the state.
        (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
    }

    /// The child's peak resident set size (VmHWM), bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    /// Asks the child to drain and stop (SIGTERM), and kills it if it takes too long.
    pub fn stop(mut self) -> Result<(), String> {
        if self.child.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("stopped with {status}: {}", self.log_tail())),
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(err) => return Err(err.to_string()),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!("did not stop within {}s of SIGTERM: {}", STOP_TIMEOUT.as_secs(), self.log_tail()))
    }
}

impl Drop for Measured {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Events the processor at `address` has counted, from its Prometheus metrics (0 if unreachable).
fn events_counted(address: SocketAddr) -> i64 {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut text = String::new();
    if stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err()
        || stream.read_to_string(&mut text).is_err()
    {
        return 0;
    }
    text.lines()
        .filter(|line| line.starts_with(crate::telemetry::EVENTS_TOTAL))
        .filter_map(|line| line.rsplit(' ').next().and_then(|value| value.parse::<f64>().ok()))
        .sum::<f64>() as i64
}

/// A loopback address with a port free right now, for a child's HTTP server.
pub(crate) fn free_address() -> Result<SocketAddr, std::io::Error> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Bytes per contact of the state directory `dir` of a stopped instance, once the compactions its data
/// calls for have run (at most a minute): RocksDB rewrites flushed files into its bottommost level, in
/// that level's compression, in the background, so the size right after a flush is not the size the
/// directory keeps.
pub(crate) fn settled_bytes_per_contact(dir: &Path, contacts: u64) -> Result<f64, String> {
    let store = crate::store::RocksStore::open(dir, &crate::store::RocksOptions::default())
        .map_err(|err| format!("opening the state directory to measure it: {err}"))?;
    store.wait_for_compactions(std::time::Duration::from_secs(60)).map_err(|err| err.to_string())?;
    drop(store);
    Ok(dir_bytes(dir) as f64 / contacts.max(1) as f64)
}

/// Bytes of the files under `dir`, RocksDB's informational `LOG` files excluded.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => dir_bytes(&path),
                Ok(_) if name == "LOG" || name.starts_with("LOG.old") => 0,
                Ok(meta) => meta.len(),
                Err(_) => 0,
            }
        })
        .sum()
}
