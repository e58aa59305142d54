//! Hot rules reload for `leadscore run`: the active rules, shared by the processor and the HTTP server,
//! and the watcher that replaces them when the rules file changes or the process gets SIGHUP.
//!
//! A new file is compiled first; an invalid one is rejected (logged with its file:line:column and
//! counted) and the rules in force stay. A valid one is published here at once, so the HTTP server reads
//! with it; the processor adopts it at the top of its next poll cycle, so a batch is always scored, written
//! and published under one rules version (see `runtime::Processor::adopt_rules`).
//!
//! Stored state needs no migration: contact records name groups, thresholds, phases and rules by hashes of
//! their names (`scoring::codec`), so a record written under one version reads under any other. The
//! README's "Changing rules" section says what that means for scores, limits, thresholds and timers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use metrics::counter;
use tracing::{info, warn};

use crate::hashing::id_fingerprint;
use crate::rules::{Rules, RulesError};
use crate::telemetry;

/// The rules in force, replaceable while readers hold on to the version they started with.
#[derive(Debug)]
pub struct ActiveRules {
    current: RwLock<Arc<Rules>>,
    /// Bumped by every replacement, so the processor's per-cycle check is one atomic load.
    generation: AtomicU64,
    /// When the rules in force were put in force, epoch ms.
    loaded_at_ms: AtomicI64,
}

impl ActiveRules {
    /// Starts with `rules`.
    pub fn new(rules: Arc<Rules>) -> Self {
        let loaded_at_ms = AtomicI64::new(crate::runtime::now_ms());
        ActiveRules { current: RwLock::new(rules), generation: AtomicU64::new(0), loaded_at_ms }
    }

    /// The rules in force now.
    pub fn get(&self) -> Arc<Rules> {
        // A writer cannot panic while holding the lock (it only swaps an Arc), so a poisoned lock still
        // holds a valid value.
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// When the rules in force were put in force, epoch ms.
    pub fn loaded_at_ms(&self) -> i64 {
        self.loaded_at_ms.load(Ordering::Acquire)
    }

    /// How many times the rules were replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts `rules` in force; returns the rules they replace.
    pub fn replace(&self, rules: Arc<Rules>) -> Arc<Rules> {
        let previous = match self.current.write() {
            Ok(mut current) => std::mem::replace(&mut *current, rules),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), rules),
        };
        self.loaded_at_ms.store(crate::runtime::now_ms(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        previous
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    /// The new rules are in force.
    Applied {
        /// Version replaced.
        from: String,
        /// Version now in force.
        to: String,
    },
    /// The file compiles to the version already in force.
    Unchanged,
    /// The file is invalid; the rules in force stay.
    Rejected(RulesError),
}

/// Where the rules file is and how `leadscore run` loads it.
#[derive(Debug, Clone)]
pub struct RulesSource {
    /// The rules file.
    pub path: PathBuf,
    /// `state.history` of the config, which overrides the file's `settings.history`.
    pub history: Option<u32>,
}

impl RulesSource {
    /// Compiles rules text as `leadscore run` would load the file.
    pub fn compile(&self, text: &str) -> Result<Rules, RulesError> {
        let mut rules = Rules::parse(text, &self.path)?;
        if let Some(history) = self.history {
            rules.history_limit = history as usize;
        }
        Ok(rules)
    }
}

/// Validates `text` as the new rules file and puts it in force if it is valid and a new version. Logs and
/// counts a rejection; the processor counts the switch when it adopts the rules.
pub fn reload_text(source: &RulesSource, text: &str, active: &ActiveRules) -> Reload {
    match source.compile(text) {
        Err(err) => {
            warn!(error = %err, "rules reload rejected; the rules in force stay");
            counter!(telemetry::RULES_RELOADS_TOTAL, "outcome" => "rejected").increment(1);
            Reload::Rejected(err)
        }
        Ok(rules) if rules.version == active.get().version => Reload::Unchanged,
        Ok(rules) => {
            let to = rules.version.clone();
            let from = active.replace(Arc::new(rules)).version.clone();
            info!(from = %from, to = %to, "rules file validated; the processor switches at its next batch");
            Reload::Applied { from, to }
        }
    }
}

/// What the watcher last saw of the file: a change of modification time leads to a read, and a change of
/// content to a reload (touching a file, or saving it unchanged, reloads nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    modified: Option<SystemTime>,
    content: Option<u64>,
}

async fn modified(path: &Path) -> Option<SystemTime> {
    tokio::fs::metadata(path).await.ok().and_then(|meta| meta.modified().ok())
}

/// Watches the rules file until the task is aborted: reloads on SIGHUP, and every `interval` (unless
/// zero) when the file's content changed.
pub async fn watch(source: RulesSource, interval: Duration, active: Arc<ActiveRules>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            warn!(error = %err, "cannot listen for SIGHUP; the rules file is reloaded on change only");
            None
        }
    };
    let mut poll = (!interval.is_zero()).then(|| tokio::time::interval(interval));
    let mut seen = Seen {
        modified: modified(&source.path).await,
        content: tokio::fs::read_to_string(&source.path).await.ok().map(|text| id_fingerprint(&text)),
    };
    loop {
        let signalled = tokio::select! {
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
            () = async {
                match poll.as_mut() {
                    Some(poll) => { poll.tick().await; }
                    None => std::future::pending().await,
                }
            } => false,
        };
        let now_modified = modified(&source.path).await;
        if !signalled && now_modified == seen.modified {
            continue;
        }
        let text = match tokio::fs::read_to_string(&source.path).await {
            Ok(text) => text,
            Err(err) => {
                // Reported once per change of modification time, not at every poll.
                seen.modified = now_modified;
                let err = RulesError {
                    file: source.path.clone(),
                    line: 1,
                    column: 1,
                    message: format!("cannot read the rules file: {err}"),
                };
                warn!(error = %err, "rules reload rejected; the rules in force stay");
                counter!(telemetry::RULES_RELOADS_TOTAL, "outcome" => "rejected").increment(1);
                continue;
            }
        };
        let content = Some(id_fingerprint(&text));
        let changed = content != seen.content;
        seen = Seen { modified: now_modified, content };
        if (signalled || changed) && matches!(reload_text(&source, &text, &active), Reload::Unchanged) {
            info!(version = %active.get().version, "rules reload: the file holds the version in force");
        }
    }
}

#[cfg(test)]
mod tests;
