//! `leadscore inspect`: one contact read straight from a state directory, the way the API's
//! `GET /v1/contacts/{id}` shows it. For a stopped instance, a backup or a copy of a volume: a running
//! instance holds its directory's lock, and its API answers instead.

use std::path::PathBuf;

use serde::Serialize;

use crate::app::{load_rules, open_store};
use crate::config::Config;
use crate::rules::RulesError;
use crate::runtime::record::StoredContact;
use crate::scoring::{ContactView, MAX_ALIAS_HOPS};
use crate::store::StoreError;

/// A contact found in a state directory.
#[derive(Debug, Serialize)]
pub struct InspectedContact {
    /// The partition whose state holds it.
    pub partition: i32,
    /// The ids followed to get to it: the contact asked for, and any it was merged into on the way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    /// What the API would show, decayed to the time asked for.
    #[serde(flatten)]
    pub view: ContactView,
}

/// Why a contact could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The rules file is invalid.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// A running instance holds the state directory.
    #[error("the state directory {0} is in use by a running instance; ask its API instead: GET /v1/contacts/{{id}}")]
    InUse(PathBuf),
    /// The state directory cannot be read.
    #[error("state directory: {0}")]
    Store(StoreError),
    /// The stored record cannot be decoded with these rules.
    #[error("partition {partition}: {reason}")]
    Corrupt {
        /// The partition.
        partition: i32,
        /// What is wrong.
        reason: String,
    },
}

/// Looks `contact` up in every partition the config's state directory holds, and reads it at `at_ms`; a
/// merged contact is read where it was merged into. `Ok(None)`: no partition knows the contact.
pub fn inspect(config: &Config, contact: &str, at_ms: i64) -> Result<Option<InspectedContact>, InspectError> {
    let rules = load_rules(config)?;
    let store = open_store(config).map_err(|err| match err {
        // RocksDB's LOCK file: another process has the directory open.
        StoreError::Open { dir, reason } if reason.contains("lock") => InspectError::InUse(dir),
        other => InspectError::Store(other),
    })?;
    let partitions = store.partitions().map_err(InspectError::Store)?;
    let mut id = contact.to_owned();
    let mut via = Vec::new();
    'follow: while via.len() <= MAX_ALIAS_HOPS as usize {
        for &partition in &partitions {
            let Some(bytes) = store.get(partition, &id).map_err(InspectError::Store)? else {
                continue;
            };
            let corrupt = |reason: String| InspectError::Corrupt { partition, reason };
            let stored = StoredContact::decode(&rules, &id, &bytes).map_err(|err| corrupt(err.to_string()))?;
            if let Some(state) = stored.state {
                let view = ContactView::new(&rules, &state, at_ms);
                return Ok(Some(InspectedContact { partition, via, view }));
            }
            // A merged contact's record names the contact that holds its state.
            if let Some(survivor) = stored.merged_into {
                via.push(std::mem::replace(&mut id, survivor));
                continue 'follow;
            }
            // An erased contact keeps a stateless record until its erase is committed.
            return Ok(None);
        }
        return Ok(None);
    }
    Ok(None)
}
