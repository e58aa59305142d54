//! `leadscore inspect`: one contact read straight from a state directory, the way the API's
//! `GET /v1/contacts/{id}` shows it. For a stopped instance, a backup or a copy of a volume: a running
//! instance holds its directory's lock, and its API answers instead.

use std::path::PathBuf;

use serde::Serialize;

use crate::app::{load_rules, open_store};
use crate::config::Config;
use crate::rules::RulesError;
use crate::runtime::record::StoredContact;
use crate::scoring::ContactView;
use crate::store::StoreError;

/// A contact found in a state directory.
#[derive(Debug, Serialize)]
pub struct InspectedContact {
    /// The partition whose state holds it.
    pub partition: i32,
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

/// Looks `contact` up in every partition the config's state directory holds, and reads it at `at_ms`.
/// `Ok(None)`: no partition knows the contact.
pub fn inspect(config: &Config, contact: &str, at_ms: i64) -> Result<Option<InspectedContact>, InspectError> {
    let rules = load_rules(config)?;
    let store = open_store(config).map_err(|err| match err {
        // RocksDB's LOCK file: another process has the directory open.
        StoreError::Open { dir, reason } if reason.contains("lock") => InspectError::InUse(dir),
        other => InspectError::Store(other),
    })?;
    for partition in store.partitions().map_err(InspectError::Store)? {
        let Some(bytes) = store.get(partition, contact).map_err(InspectError::Store)? else {
            continue;
        };
        let corrupt = |reason: String| InspectError::Corrupt { partition, reason };
        let stored = StoredContact::decode(&rules, contact, &bytes).map_err(|err| corrupt(err.to_string()))?;
        // An erased contact keeps a stateless record until its erase is committed.
        let Some(state) = stored.state else {
            continue;
        };
        return Ok(Some(InspectedContact { partition, view: ContactView::new(&rules, &state, at_ms) }));
    }
    Ok(None)
}
