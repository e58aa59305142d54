//! The mapping as the config file writes it, and the built-in formats as presets of it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::source::Sources;

/// The format of one input topic's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// leadscore's own JSON events.
    #[default]
    #[serde(alias = "leadscore")]
    Json,
    /// leadscore's `leadscore.v1.Event` protobuf messages.
    Protobuf,
    /// Segment's (and RudderStack's) track, page, identify and alias calls.
    Segment,
    /// CloudEvents over Kafka, structured or binary mode.
    Cloudevents,
    /// Snowplow enriched events, as TSV or as the analytics SDKs' JSON.
    Snowplow,
    /// Debezium change events (Kafka Connect's JSON converter, with or without schemas).
    Debezium,
    /// No preset: every field comes from the topic's own mapping.
    Mapping,
}

impl InputFormat {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Json => "json",
            InputFormat::Protobuf => "protobuf",
            InputFormat::Segment => "segment",
            InputFormat::Cloudevents => "cloudevents",
            InputFormat::Snowplow => "snowplow",
            InputFormat::Debezium => "debezium",
            InputFormat::Mapping => "mapping",
        }
    }
}

/// How a mapped `ts` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 text, or `YYYY-MM-DD HH:MM:SS[.fff]` in UTC as SQL databases and Snowplow write it.
    Rfc3339,
    /// Epoch seconds, a number or numeric text (fractions kept to the millisecond).
    Seconds,
    /// Epoch milliseconds.
    Millis,
    /// Epoch microseconds.
    Micros,
}

/// What happens to a record whose type the `types` table does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmappedTypes {
    /// The source type is the event type.
    Keep,
    /// The record is skipped (counted, not dead-lettered).
    Drop,
}

/// One input topic's format and mapping: `[input.topics."NAME"]`. Every field left out comes from the
/// format's preset; `format = "mapping"` has none, so `id`, `contact`, `type` and `ts` are required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicInput {
    /// The format, and with it the preset the other fields override.
    pub format: InputFormat,
    /// Whether a record's key must equal its contact id (else it is dead-lettered); on for every format.
    /// A contact's state lives in the partition its records reach, so records of one contact must carry
    /// the same key in every input topic. Turn the check off only for a topic that is the sole source of
    /// its contacts and is keyed by another value stable per contact (a table's primary key, say).
    pub key_is_contact: Option<bool>,
    /// A root member read as the root itself when present: `payload` for Kafka Connect with schemas.
    pub unwrap: Option<String>,
    /// The event id (duplicates are dropped by it).
    pub id: Option<Sources>,
    /// The contact id.
    pub contact: Option<Sources>,
    /// The source event type, looked up in `types`.
    #[serde(rename = "type")]
    pub kind: Option<Sources>,
    /// The event time.
    pub ts: Option<Sources>,
    /// How `ts` is written.
    pub ts_format: Option<TimeFormat>,
    /// The form, asset, page or email id, or a URL.
    pub item: Option<Sources>,
    /// Named attributes; added to (and overriding) the preset's.
    pub attrs: BTreeMap<String, Sources>,
    /// Objects whose scalar members all become attributes (after the named ones).
    pub attrs_from: Option<Vec<Sources>>,
    /// An object holding earlier values: members of `attrs_from` equal to the same member here are left
    /// out, so that a change event carries only what changed (Debezium's `/before`).
    pub attrs_changed_from: Option<Sources>,
    /// Source event type → leadscore event type; added to (and overriding) the preset's.
    pub types: BTreeMap<String, String>,
    /// What happens to a type that `types` does not name.
    pub unmapped_types: Option<UnmappedTypes>,
    /// Source event types whose records are skipped.
    pub drop_types: Vec<String>,
    /// `phase` of a `phase_change` event.
    pub phase: Option<Sources>,
    /// `points` of a `manual_adjustment` event.
    pub points: Option<Sources>,
    /// `reason` of a `manual_adjustment` event.
    pub reason: Option<Sources>,
}

/// A topic's mapping with its preset filled in: what [`super::Mapping::compile`] builds from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub format: InputFormat,
    pub key_is_contact: bool,
    pub unwrap: Option<String>,
    pub id: Sources,
    pub contact: Sources,
    pub kind: Sources,
    pub ts: Sources,
    pub ts_format: TimeFormat,
    pub item: Sources,
    pub attrs: BTreeMap<String, Sources>,
    pub attrs_from: Vec<Sources>,
    pub attrs_changed_from: Option<Sources>,
    pub types: BTreeMap<String, String>,
    pub unmapped_types: UnmappedTypes,
    pub drop_types: Vec<String>,
    pub phase: Sources,
    pub points: Sources,
    pub reason: Sources,
}

impl TopicInput {
    /// The preset of the format with this topic's fields laid over it.
    pub fn resolve(&self) -> Resolved {
        let mut base = preset(self.format);
        let pick = |given: &Option<Sources>, preset: &mut Sources| {
            if let Some(given) = given {
                *preset = given.clone();
            }
        };
        pick(&self.id, &mut base.id);
        pick(&self.contact, &mut base.contact);
        pick(&self.kind, &mut base.kind);
        pick(&self.ts, &mut base.ts);
        pick(&self.item, &mut base.item);
        pick(&self.phase, &mut base.phase);
        pick(&self.points, &mut base.points);
        pick(&self.reason, &mut base.reason);
        base.key_is_contact = self.key_is_contact.unwrap_or(base.key_is_contact);
        base.unwrap = self.unwrap.clone().or(base.unwrap);
        base.ts_format = self.ts_format.unwrap_or(base.ts_format);
        base.attrs.extend(self.attrs.clone());
        base.attrs.retain(|_, sources| !sources.0.is_empty());
        if let Some(from) = &self.attrs_from {
            base.attrs_from = from.clone();
        }
        if self.attrs_changed_from.is_some() {
            base.attrs_changed_from = self.attrs_changed_from.clone();
        }
        base.types.extend(self.types.clone());
        base.unmapped_types = self.unmapped_types.unwrap_or(base.unmapped_types);
        base.drop_types.extend(self.drop_types.iter().cloned());
        base
    }
}

fn attrs(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Sources> {
    pairs.iter().map(|(name, sources)| ((*name).to_owned(), Sources::of(sources))).collect()
}

/// The built-in formats, written as mappings. Each names the fields its spec publishes.
fn preset(format: InputFormat) -> Resolved {
    let empty = Resolved {
        format,
        key_is_contact: true,
        unwrap: None,
        id: Sources::default(),
        contact: Sources::default(),
        kind: Sources::default(),
        ts: Sources::default(),
        ts_format: TimeFormat::Rfc3339,
        item: Sources::default(),
        attrs: BTreeMap::new(),
        attrs_from: Vec::new(),
        attrs_changed_from: None,
        types: BTreeMap::new(),
        unmapped_types: UnmappedTypes::Keep,
        drop_types: Vec::new(),
        phase: Sources::default(),
        points: Sources::default(),
        reason: Sources::default(),
    };
    match format {
        InputFormat::Json | InputFormat::Protobuf | InputFormat::Mapping => empty,
        // Segment's spec: the known user, else the anonymous one; the other kept as an attribute. The
        // Kafka destinations of Segment and RudderStack key records the same way.
        InputFormat::Segment => Resolved {
            id: Sources::of(&["/messageId"]),
            contact: Sources::of(&["/userId", "/anonymousId"]),
            kind: Sources::of(&["/event", "/type"]),
            ts: Sources::of(&["/timestamp", "/originalTimestamp", "/sentAt", "/receivedAt"]),
            item: Sources::of(&["/properties/url", "/properties/path", "/name"]),
            attrs: attrs(&[
                ("user_id", &["/userId"]),
                ("anonymous_id", &["/anonymousId"]),
                ("previous_id", &["/previousId"]),
            ]),
            attrs_from: vec![Sources::of(&["/properties"]), Sources::of(&["/traits"])],
            ..empty
        },
        // CloudEvents 1.0: structured mode reads the envelope, binary mode (a `ce_specversion` header)
        // reads the same attributes from `ce_` headers and the value as `data`.
        InputFormat::Cloudevents => Resolved {
            id: Sources::of(&["/id"]),
            contact: Sources::of(&["/subject"]),
            kind: Sources::of(&["/type"]),
            ts: Sources::of(&["/time"]),
            item: Sources::of(&["/data/item"]),
            attrs: attrs(&[("ce_source", &["/source"])]),
            attrs_from: vec![Sources::of(&["/data"])],
            ..empty
        },
        // Snowplow's canonical event: structured events by their action, others by their event name.
        InputFormat::Snowplow => Resolved {
            id: Sources::of(&["/event_id"]),
            contact: Sources::of(&["/user_id", "/domain_userid"]),
            kind: Sources::of(&["/se_action", "/event_name", "/event"]),
            ts: Sources::of(&["/derived_tstamp", "/collector_tstamp"]),
            item: Sources::of(&["/se_label", "/page_url"]),
            attrs: attrs(&[
                ("user_id", &["/user_id"]),
                ("domain_userid", &["/domain_userid"]),
                ("network_userid", &["/network_userid"]),
                ("category", &["/se_category"]),
                ("property", &["/se_property"]),
                ("value", &["/se_value"]),
                ("source", &["/mkt_source", "/refr_source"]),
                ("medium", &["/mkt_medium", "/refr_medium"]),
                ("campaign", &["/mkt_campaign"]),
                ("country", &["/geo_country"]),
                ("page_path", &["/page_urlpath"]),
            ]),
            ..empty
        },
        // Debezium: creates, snapshot reads and updates become profile updates with the changed columns;
        // deletes are skipped unless `types.d` names a type (such as `erase`).
        InputFormat::Debezium => Resolved {
            unwrap: Some("payload".to_owned()),
            // A change has no id of its own: Postgres's log position, else where the record was read.
            id: Sources::of(&["/source/lsn", "offset"]),
            contact: Sources::of(&["/after/id", "/before/id"]),
            kind: Sources::of(&["/op"]),
            // When the change was committed in the database, else when the connector read it.
            ts: Sources::of(&["/source/ts_ms", "/ts_ms"]),
            ts_format: TimeFormat::Millis,
            attrs_from: vec![Sources::of(&["/after"])],
            attrs_changed_from: Some(Sources::of(&["/before"])),
            types: [("c", "profile_update"), ("r", "profile_update"), ("u", "profile_update")]
                .into_iter()
                .map(|(from, to)| (from.to_owned(), to.to_owned()))
                .collect(),
            unmapped_types: UnmappedTypes::Drop,
            ..empty
        },
    }
}
