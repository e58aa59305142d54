//! [`Secret`]: a credential given in the file, in an environment variable or in a file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret prints as, everywhere.
const REDACTED: &str = "***";

/// A credential. It may be written as a plain string, or as `{ env = "VAR" }` or `{ file = "/path" }` so
/// that the config file itself can be committed and mounted (a Kubernetes secret is a file). It is read
/// when the config is loaded, and its `Debug`, `Display` and `Serialize` all show `***`, so logging a
/// config never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The value; `None` until [`Config::load`](super::Config::load) has read the variable or the file.
    value: Option<String>,
    source: Source,
}

#[derive(Clone, PartialEq, Eq)]
enum Source {
    Inline,
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// A secret known in code, for configurations built without a file (the demo, tests).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret { value: Some(value.into()), source: Source::Inline }
    }

    /// The value, for the one place that needs it (librdkafka, the token check). The name makes every use
    /// easy to find. A secret that was deserialized without [`Config::load`](super::Config::load) has not
    /// been read yet and gives an empty string; [`Config::validate`](super::Config::validate) rejects it.
    pub fn expose(&self) -> &str {
        self.value.as_deref().unwrap_or_default()
    }

    pub(super) fn is_resolved(&self) -> bool {
        self.value.is_some()
    }

    /// Reads the variable or the file. A file's trailing line break is dropped, since `echo` and most
    /// editors add one that is never part of the credential.
    pub(super) fn resolve(&mut self, base: &Path, env: &[(String, String)]) -> Result<(), String> {
        let value = match &self.source {
            Source::Inline => return Ok(()),
            Source::Env(name) => match env.iter().find(|(key, _)| key == name) {
                Some((_, value)) => value.clone(),
                None => return Err(format!("environment variable {name} is not set")),
            },
            Source::File(path) => {
                let path = base.join(path);
                let text = std::fs::read_to_string(&path)
                    .map_err(|err| format!("cannot read the secret file {}: {err}", path.display()))?;
                text.trim_end_matches(['\n', '\r']).to_owned()
            }
        };
        self.value = Some(value);
        Ok(())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a secret: a string, { env = "VAR" } or { file = "/path" }"#)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let mut source = None;
        while let Some(key) = map.next_key::<String>()? {
            let next = match key.as_str() {
                "env" => Source::Env(map.next_value()?),
                "file" => Source::File(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, &["env", "file"])),
            };
            if source.replace(next).is_some() {
                return Err(de::Error::custom("a secret takes one of `env` and `file`, not both"));
            }
        }
        let source = source.ok_or_else(|| de::Error::custom("a secret table needs `env` or `file`"))?;
        Ok(Secret { value: None, source })
    }
}
