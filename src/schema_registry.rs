//! Schema ids of framed records, resolved against a Confluent-compatible Schema Registry.
//!
//! With `input.schema_registry` set, every record that carries Confluent framing has its schema id looked
//! up once (`GET /schemas/ids/{id}`) and remembered. A protobuf record must name `leadscore.v1.Event` by its
//! message indexes; a JSON record must have a JSON schema. A record whose id the registry does not know, or
//! whose schema is not what the topic's format reads, goes to the dead-letter topic with the reason. A
//! registry that cannot be reached is an external fault: the batch is not processed and is retried.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::framing::Payload;

/// The protobuf message that leadscore's protobuf input reads.
pub const EVENT_MESSAGE: &str = "leadscore.v1.Event";

/// How long an id the registry did not know is answered from memory before it is asked again.
const MISSING_TTL: Duration = Duration::from_secs(60);

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The registry could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema registry {url}: {reason}")]
pub struct RegistryUnavailable {
    /// The registry's base URL.
    pub url: String,
    /// What went wrong.
    pub reason: String,
}

#[derive(Debug, Clone)]
enum Known {
    Schema { kind: String, messages: Vec<(Vec<i64>, String)> },
    Missing { since: Instant },
}

/// A registry client with the ids it has resolved.
pub struct SchemaRegistry {
    url: String,
    agent: ureq::Agent,
    known: Mutex<HashMap<u32, Known>>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry").field("url", &self.url).finish_non_exhaustive()
    }
}

impl SchemaRegistry {
    /// A client of the registry at `url` (its Confluent-compatible base, such as `http://registry:8081`).
    pub fn new(url: &str) -> SchemaRegistry {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .tls_config(ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::NativeTls).build())
            .build();
        SchemaRegistry { url: url.trim_end_matches('/').to_owned(), agent: config.into(), known: Mutex::default() }
    }

    /// Checks a framed record's schema: `Ok(None)` to decode it, `Ok(Some(reason))` to dead-letter it.
    pub fn check(&self, id: u32, indexes: &[i64], payload: Payload) -> Result<Option<String>, RegistryUnavailable> {
        let known = self.known.lock().ok().and_then(|known| known.get(&id).cloned());
        let known = match known {
            Some(Known::Missing { since }) if since.elapsed() >= MISSING_TTL => self.fetch(id)?,
            Some(known) => known,
            None => self.fetch(id)?,
        };
        Ok(match (known, payload) {
            (Known::Missing { .. }, _) => Some(format!("schema id {id} is not in the schema registry")),
            (Known::Schema { kind, .. }, Payload::Json) if kind != "JSON" => {
                Some(format!("schema id {id} is a {kind} schema; this topic reads JSON"))
            }
            (Known::Schema { .. }, Payload::Json) => None,
            (Known::Schema { kind, .. }, Payload::Protobuf) if kind != "PROTOBUF" => {
                Some(format!("schema id {id} is a {kind} schema; this topic reads protobuf"))
            }
            (Known::Schema { messages, .. }, Payload::Protobuf) => {
                match messages.iter().find(|(path, _)| path == indexes) {
                    Some((_, name)) if name == EVENT_MESSAGE => None,
                    Some((_, name)) => Some(format!("schema id {id} names message {name}, not {EVENT_MESSAGE}")),
                    None => Some(format!("schema id {id} has no message at indexes {indexes:?}")),
                }
            }
        })
    }

    fn fetch(&self, id: u32) -> Result<Known, RegistryUnavailable> {
        let unavailable = |reason: String| RegistryUnavailable { url: self.url.clone(), reason };
        let mut response = self
            .agent
            .get(&format!("{}/schemas/ids/{id}", self.url))
            .call()
            .map_err(|err| unavailable(err.to_string()))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(|err| unavailable(err.to_string()))?;
        let known = match status {
            200 => {
                let value: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|err| unavailable(format!("schema id {id}: the answer is not JSON: {err}")))?;
                // Confluent leaves `schemaType` out for Avro, its first format.
                let kind = value.get("schemaType").and_then(|kind| kind.as_str()).unwrap_or("AVRO").to_owned();
                let text = value.get("schema").and_then(|schema| schema.as_str()).unwrap_or_default();
                let messages = if kind == "PROTOBUF" { proto_messages(text) } else { Vec::new() };
                Known::Schema { kind, messages }
            }
            404 => Known::Missing { since: Instant::now() },
            other => return Err(unavailable(format!("HTTP {other} for schema id {id}: {}", body.trim()))),
        };
        if let Ok(mut cache) = self.known.lock() {
            cache.insert(id, known.clone());
        }
        Ok(known)
    }
}

/// Every message of a `.proto` text with its index path (Confluent's message indexes) and full name.
pub fn proto_messages(text: &str) -> Vec<(Vec<i64>, String)> {
    let mut cleaned = String::with_capacity(text.len());
    for line in text.lines() {
        cleaned.push_str(line.split("//").next().unwrap_or_default());
        cleaned.push('\n');
    }
    let spaced = cleaned.replace('{', " { ").replace('}', " } ").replace(';', " ; ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut package = String::new();
    let mut messages = Vec::new();
    // Per open brace: the message it opens (its index path and name) or None for any other block.
    let mut open: Vec<Option<(Vec<i64>, String)>> = Vec::new();
    let mut next_index: Vec<i64> = vec![0];
    let mut index = 0;
    while index < tokens.len() {
        match tokens[index] {
            "package" if open.is_empty() => {
                package = tokens.get(index + 1).copied().unwrap_or_default().to_owned();
            }
            "message" if tokens.get(index + 2) == Some(&"{") => {
                let name = tokens[index + 1];
                let parent = open.iter().rev().find_map(|block| block.as_ref());
                let slot = next_index.last_mut().map_or(0, |next| {
                    *next += 1;
                    *next - 1
                });
                let (mut path, full) = match parent {
                    Some((path, full)) => (path.clone(), format!("{full}.{name}")),
                    None if package.is_empty() => (Vec::new(), name.to_owned()),
                    None => (Vec::new(), format!("{package}.{name}")),
                };
                path.push(slot);
                messages.push((path.clone(), full.clone()));
                open.push(Some((path, full)));
                next_index.push(0);
                index += 3;
                continue;
            }
            "{" => open.push(None),
            "}" => {
                if let Some(Some(_)) = open.pop() {
                    next_index.pop();
                }
            }
            _ => {}
        }
        index += 1;
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_indexes_name_top_level_and_nested_messages() {
        let text = "syntax = \"proto3\";\n// message Commented {\npackage leadscore.v1;\n\
                    message Event { string id = 1; message Attr { oneof v { string text = 1; } } }\n\
                    enum Kind { A = 0; }\nmessage Output { message Score {} message Phase {} }";
        let messages = proto_messages(text);
        let names: Vec<(Vec<i64>, &str)> = messages.iter().map(|(path, name)| (path.clone(), name.as_str())).collect();
        assert_eq!(
            names,
            [
                (vec![0], "leadscore.v1.Event"),
                (vec![0, 0], "leadscore.v1.Event.Attr"),
                (vec![1], "leadscore.v1.Output"),
                (vec![1, 0], "leadscore.v1.Output.Score"),
                (vec![1, 1], "leadscore.v1.Output.Phase"),
            ]
        );
    }
}
