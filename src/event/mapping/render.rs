//! leadscore events written as other systems write them: for the benches, the tests and anyone who wants
//! sample records of a format from a generated stream. Each function gives one record value.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::snowplow::COLUMNS;
use super::{InputFormat, Mapped, Position, SourceRecord, Sources, TopicInput};
use crate::event::input::InputDecoder;
use crate::event::{AttrValue, DecodeLimits, Event, format_rfc3339, json, protobuf};

fn attr_json(value: &AttrValue) -> Value {
    match value {
        AttrValue::Text(text) => Value::from(text.as_str()),
        AttrValue::Number(number) => Value::from(*number),
        AttrValue::Flag(flag) => Value::from(*flag),
    }
}

/// The event's attributes, with `item`, `phase`, `points` and `reason` among them where it has them.
fn properties(event: &Event) -> Map<String, Value> {
    let mut properties: Map<String, Value> =
        event.attrs.iter().map(|(name, value)| (name.clone(), attr_json(value))).collect();
    if let Some(item) = &event.item {
        properties.insert("item".into(), Value::from(item.as_str()));
    }
    if let Some(phase) = &event.phase {
        properties.insert("phase".into(), Value::from(phase.as_str()));
    }
    if let Some(adjustment) = &event.adjustment {
        properties.insert("points".into(), Value::from(adjustment.points));
        properties.insert("reason".into(), Value::from(adjustment.reason.as_str()));
    }
    properties
}

/// A Segment `track` call (a `page` call for page visits, with the item as `properties.url`), with the
/// context a browser library sends.
pub fn segment(event: &Event) -> String {
    let mut properties = properties(event);
    let mut record = json!({
        "messageId": event.id,
        "userId": event.contact,
        "anonymousId": format!("anon-{}", event.contact),
        "timestamp": format_rfc3339(event.ts_ms),
        "context": {
            "library": {"name": "analytics.js", "version": "2.11.1"},
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0",
        },
    });
    if event.kind == "page_visit" {
        if let Some(url) = properties.remove("item") {
            properties.insert("url".into(), url);
        }
        record["type"] = "page".into();
        record["name"] = "Home".into();
    } else {
        record["type"] = "track".into();
        record["event"] = Value::from(event.kind.as_str());
    }
    record["properties"] = Value::Object(properties);
    record.to_string()
}

/// A CloudEvent in structured mode: the contact as `subject`, the properties as `data`.
pub fn cloudevent(event: &Event) -> String {
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": "/web/tracker",
        "type": event.kind,
        "subject": event.contact,
        "time": format_rfc3339(event.ts_ms),
        "datacontenttype": "application/json",
        "data": Value::Object(properties(event)),
    })
    .to_string()
}

/// The columns of a Snowplow structured event (`se_action` the type, `se_label` the item).
fn snowplow_columns(event: &Event) -> Vec<(&'static str, String)> {
    let time = format_rfc3339(event.ts_ms).replace('T', " ").replace('Z', "");
    let mut columns = vec![
        ("app_id", "web".to_owned()),
        ("platform", "web".to_owned()),
        ("collector_tstamp", time.clone()),
        ("derived_tstamp", time),
        ("event", "struct".to_owned()),
        ("event_id", event.id.clone()),
        ("name_tracker", "sp".to_owned()),
        ("v_tracker", "js-3.23.0".to_owned()),
        ("v_collector", "ssc-3.2.0-kafka".to_owned()),
        ("v_etl", "snowplow-enrich-kafka-5.1.0".to_owned()),
        ("domain_userid", event.contact.clone()),
        ("geo_country", "DE".to_owned()),
        ("se_category", "web".to_owned()),
        ("se_action", event.kind.clone()),
        ("useragent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/122.0".to_owned()),
    ];
    if let Some(item) = &event.item {
        columns.push(("se_label", item.clone()));
    }
    if let Some(phase) = &event.phase {
        columns.push(("se_property", phase.clone()));
    }
    if let Some(adjustment) = &event.adjustment {
        columns.push(("se_label", adjustment.reason.clone()));
        columns.push(("se_value", zmij::Buffer::new().format(adjustment.points).to_owned()));
    }
    columns
}

/// A Snowplow enriched event as a TSV line of 131 columns.
pub fn snowplow_tsv(event: &Event) -> String {
    let columns = snowplow_columns(event);
    let cell = |name: &str| columns.iter().find(|(column, _)| *column == name).map_or("", |(_, value)| value.as_str());
    COLUMNS.iter().map(|name| cell(name)).collect::<Vec<_>>().join("\t")
}

/// A Snowplow enriched event as the analytics SDKs' JSON transform writes it.
pub fn snowplow_json(event: &Event) -> String {
    let object: Map<String, Value> = snowplow_columns(event)
        .into_iter()
        .map(|(name, value)| match name {
            "collector_tstamp" | "derived_tstamp" => (name.to_owned(), Value::from(format_rfc3339(event.ts_ms))),
            "se_value" => (name.to_owned(), value.parse::<f64>().map_or(Value::Null, Value::from)),
            _ => (name.to_owned(), Value::from(value)),
        })
        .collect();
    Value::Object(object).to_string()
}

/// A CRM table of contacts whose rows change with each event: Debezium's change events for it.
#[derive(Debug, Default)]
pub struct ChangeLog {
    rows: HashMap<String, Map<String, Value>>,
    lsn: u64,
}

impl ChangeLog {
    /// The change event of the contact's row after `event`'s attributes are written to it: a create the
    /// first time, an update (with the row as it was) after; every other record has the Kafka Connect
    /// schema envelope, as the JSON converter with schemas writes it.
    pub fn change(&mut self, event: &Event) -> String {
        self.lsn += 1;
        let next_id = self.rows.len() + 1;
        let before = self.rows.get(&event.contact).cloned();
        let mut after = before.clone().unwrap_or_default();
        after.entry("id").or_insert_with(|| Value::from(next_id));
        after.insert("email".into(), Value::from(event.contact.as_str()));
        for (name, value) in &event.attrs {
            after.insert(name.clone(), attr_json(value));
        }
        let change = json!({
            "before": before.clone().map_or(Value::Null, Value::Object),
            "after": Value::Object(after.clone()),
            "source": {"version": "2.7.0.Final", "connector": "postgresql", "name": "crm", "ts_ms": event.ts_ms,
                       "db": "crm", "schema": "public", "table": "contacts", "lsn": 24_000_000 + self.lsn},
            "op": if before.is_some() { "u" } else { "c" },
            "ts_ms": event.ts_ms + 250,
        });
        self.rows.insert(event.contact.clone(), after);
        match self.lsn % 2 {
            0 => json!({"schema": {"type": "struct", "optional": false, "name": "crm.public.contacts.Envelope"},
                        "payload": change})
            .to_string(),
            _ => change.to_string(),
        }
    }
}

/// One format's records of a stream, with the decoder of a topic in that format: what the format benches
/// and `examples/profile_formats.rs` decode.
pub struct FormatSample {
    /// The format's name in the bench output.
    pub name: &'static str,
    /// The topic decoder: the format's preset, told where this module writes phases and adjustments.
    pub decoder: InputDecoder,
    /// One record value per event.
    pub records: Vec<Vec<u8>>,
}

impl FormatSample {
    /// What each record maps to, written as leadscore JSON: the same events with the same attributes, so
    /// that decoding these instead of `records` leaves out what the mapping costs. An error names a record
    /// that maps to no event.
    pub fn as_leadscore_json(&self) -> Result<Vec<Vec<u8>>, String> {
        let limits = DecodeLimits::default();
        self.records
            .iter()
            .enumerate()
            .map(|(line, payload)| {
                let position = Position::Line { file: self.name, line };
                let record = SourceRecord { payload, key: None, headers: &[], position };
                match self.decoder.decode_value(&record, &limits) {
                    Ok(Mapped::Event(event)) => Ok(json::encode(&event)),
                    other => Err(format!("{} record {line} maps to no event: {other:?}", self.name)),
                }
            })
            .collect()
    }
}

/// The events written in every format, each with its decoder; an error names a preset that does not compile.
pub fn samples(events: &[Event]) -> Result<Vec<FormatSample>, String> {
    let topic = |format, fields: [(&str, &[&str]); 4]| {
        let [item, phase, points, reason] =
            fields.map(|(_, sources)| (!sources.is_empty()).then(|| Sources::of(sources)));
        let input = TopicInput { format, item, phase, points, reason, ..TopicInput::default() };
        InputDecoder::for_topic(&input)
    };
    let properties = [
        ("item", &["/properties/item", "/properties/url"][..]),
        ("phase", &["/properties/phase"][..]),
        ("points", &["/properties/points"][..]),
        ("reason", &["/properties/reason"][..]),
    ];
    let data = [
        ("item", &[][..]),
        ("phase", &["/data/phase"][..]),
        ("points", &["/data/points"][..]),
        ("reason", &["/data/reason"][..]),
    ];
    // Snowplow's structured events carry a phase in their property, an adjustment in their value and label.
    let structured = [
        ("item", &[][..]),
        ("phase", &["/se_property"][..]),
        ("points", &["/se_value"][..]),
        ("reason", &["/se_label"][..]),
    ];
    let mut debezium = TopicInput { format: InputFormat::Debezium, ..TopicInput::default() };
    debezium.contact = Some(Sources::of(&["/after/email", "/before/email"]));
    let mut table = ChangeLog::default();
    let text = |records: Vec<String>| records.into_iter().map(String::into_bytes).collect::<Vec<_>>();
    Ok(vec![
        FormatSample { name: "json", decoder: InputDecoder::Json, records: events.iter().map(json::encode).collect() },
        FormatSample {
            name: "protobuf",
            decoder: InputDecoder::Protobuf,
            records: events.iter().map(protobuf::encode).collect(),
        },
        FormatSample {
            name: "segment",
            decoder: topic(InputFormat::Segment, properties)?,
            records: text(events.iter().map(segment).collect()),
        },
        FormatSample {
            name: "cloudevents",
            decoder: topic(InputFormat::Cloudevents, data)?,
            records: text(events.iter().map(cloudevent).collect()),
        },
        FormatSample {
            name: "snowplow_tsv",
            decoder: topic(InputFormat::Snowplow, structured)?,
            records: text(events.iter().map(snowplow_tsv).collect()),
        },
        FormatSample {
            name: "snowplow_json",
            decoder: topic(InputFormat::Snowplow, structured)?,
            records: text(events.iter().map(snowplow_json).collect()),
        },
        FormatSample {
            name: "debezium",
            decoder: InputDecoder::for_topic(&debezium)?,
            records: text(events.iter().map(|event| table.change(event)).collect()),
        },
    ])
}
