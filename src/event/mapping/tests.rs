use super::*;
use crate::event::framing::frame;

fn topic(toml_text: &str) -> TopicInput {
    toml::from_str(toml_text).unwrap_or_else(|err| panic!("{err}"))
}

fn map_with(input: &TopicInput, payload: &str, headers: &[(String, Vec<u8>)]) -> Result<Mapped, DecodeError> {
    let mapping = Mapping::compile(input).unwrap_or_else(|err| panic!("{err}"));
    let position = Position::Kafka { topic: "t", partition: 3, offset: 17 };
    let record = SourceRecord { payload: payload.as_bytes(), key: None, headers, position };
    mapping.map(&record, &DecodeLimits::default())
}

fn event(input: &TopicInput, payload: &str) -> Event {
    match map_with(input, payload, &[]) {
        Ok(Mapped::Event(event)) => event,
        other => panic!("{payload}: {other:?}"),
    }
}

fn error(input: &TopicInput, payload: &str) -> String {
    match map_with(input, payload, &[]) {
        Err(err) => err.to_string(),
        other => panic!("{payload}: expected a dead letter, got {other:?}"),
    }
}

fn text(value: &str) -> AttrValue {
    AttrValue::Text(value.to_owned())
}

#[test]
fn segment_track_and_page_calls_map_with_the_known_user_first() {
    let input = topic(
        r#"format = "segment"
           types = { "Product Added" = "add_to_cart", page = "page_visit" }"#,
    );
    let track = event(
        &input,
        r#"{"type":"track","event":"Product Added","messageId":"m-1","userId":"u-1","anonymousId":"a-1",
            "timestamp":"2026-03-02T09:00:00.250Z","properties":{"sku":"X-1","price":99.5,"nested":{"a":1}},
            "context":{"ip":"10.0.0.1","page":{"url":"https://acme.io/cart"}}}"#,
    );
    assert_eq!((track.id.as_str(), track.contact.as_str(), track.kind.as_str()), ("m-1", "u-1", "add_to_cart"));
    assert_eq!(track.ts_ms, 1_772_442_000_250);
    assert_eq!(track.attr("anonymous_id"), Some(&text("a-1")));
    assert_eq!(track.attr("price"), Some(&AttrValue::Number(99.5)));
    assert_eq!(track.attr("nested"), None);
    let page = event(
        &input,
        r#"{"type":"page","name":"Pricing","messageId":"m-2","anonymousId":"a-1","userId":null,
            "originalTimestamp":"2026-03-02T09:01:00Z","properties":{"url":"https://acme.io/pricing","path":"/pricing"}}"#,
    );
    assert_eq!((page.contact.as_str(), page.kind.as_str()), ("a-1", "page_visit"));
    assert_eq!(page.item.as_deref(), Some("https://acme.io/pricing"));
    assert_eq!(page.attr("user_id"), None);
}

#[test]
fn an_override_replaces_one_field_of_a_preset_and_keeps_the_rest() {
    let input = topic(
        r#"format = "segment"
           item = ["/properties/form_id", "/properties/url"]
           attrs = { source = "/context/campaign/source", anonymous_id = [] }"#,
    );
    let form = event(
        &input,
        r#"{"type":"track","event":"Form Submitted","messageId":"m-3","userId":"u-2","timestamp":"2026-03-02T10:00:00Z",
            "properties":{"form_id":"demo-request"},"context":{"campaign":{"source":"google"}}}"#,
    );
    assert_eq!(form.item.as_deref(), Some("demo-request"));
    assert_eq!(form.attr("source"), Some(&text("google")));
    assert_eq!(form.kind, "Form Submitted");
}

#[test]
fn cloudevents_map_the_same_in_structured_and_binary_mode() {
    let input = topic(r#"format = "cloudevents""#);
    let structured = event(
        &input,
        r#"{"specversion":"1.0","id":"ce-1","source":"/web","type":"com.acme.page","subject":"c-9",
            "time":"2026-03-02T09:00:00Z","datacontenttype":"application/json","data":{"item":"/pricing","visits":3}}"#,
    );
    let headers: Vec<(String, Vec<u8>)> = [
        ("ce_specversion", "1.0"),
        ("ce_id", "ce-1"),
        ("ce_source", "/web"),
        ("ce_type", "com.acme.page"),
        ("ce_subject", "c-9"),
        ("ce_time", "2026-03-02T09:00:00Z"),
        ("content-type", "application/json"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
    .collect();
    let binary = match map_with(&input, r#"{"item":"/pricing","visits":3}"#, &headers) {
        Ok(Mapped::Event(event)) => event,
        other => panic!("{other:?}"),
    };
    assert_eq!(structured, binary);
    assert_eq!(binary.item.as_deref(), Some("/pricing"));
    assert_eq!(binary.attr("visits"), Some(&AttrValue::Number(3.0)));
    assert_eq!(binary.attr("ce_source"), Some(&text("/web")));
    // Data is optional in binary mode: an empty value is an event with no data.
    let without_data = match map_with(&input, "", &headers) {
        Ok(Mapped::Event(event)) => event,
        other => panic!("{other:?}"),
    };
    assert_eq!((without_data.id.as_str(), without_data.item.as_deref(), without_data.attrs.len()), ("ce-1", None, 1));
    assert!(error(&input, "").contains("payload is empty"), "structured mode needs a value");
}

fn snowplow_line(columns: &[(&str, &str)]) -> String {
    snowplow::COLUMNS
        .iter()
        .map(|name| columns.iter().find(|(column, _)| column == name).map_or("", |(_, value)| *value))
        .collect::<Vec<_>>()
        .join("\t")
}

#[test]
fn snowplow_tsv_and_its_json_transform_map_alike() {
    let input = topic(
        r#"format = "snowplow"
           types = { page_view = "page_visit" }"#,
    );
    let line = snowplow_line(&[
        ("event", "page_view"),
        ("event_id", "e-1"),
        ("domain_userid", "d-1"),
        ("collector_tstamp", "2026-03-02 09:00:00.125"),
        ("page_url", "https://acme.io/pricing"),
        ("mkt_source", "google"),
        ("se_value", "2.5"),
    ]);
    let from_tsv = event(&input, &line);
    let from_json = event(
        &input,
        r#"{"event":"page_view","event_id":"e-1","domain_userid":"d-1","collector_tstamp":"2026-03-02T09:00:00.125Z",
            "page_url":"https://acme.io/pricing","mkt_source":"google","se_value":2.5,"contexts_com_acme_x_1":[{"a":1}]}"#,
    );
    assert_eq!(from_tsv, from_json);
    assert_eq!((from_tsv.contact.as_str(), from_tsv.kind.as_str()), ("d-1", "page_visit"));
    assert_eq!(from_tsv.ts_ms, 1_772_442_000_125);
    assert_eq!(from_tsv.attr("value"), Some(&AttrValue::Number(2.5)));
    let structured = event(
        &input,
        &snowplow_line(&[
            ("event", "struct"),
            ("event_id", "e-2"),
            ("user_id", "u-7"),
            ("domain_userid", "d-1"),
            ("derived_tstamp", "2026-03-02 09:00:01"),
            ("se_category", "asset"),
            ("se_action", "asset_download"),
            ("se_label", "whitepaper-kafka"),
        ]),
    );
    assert_eq!((structured.contact.as_str(), structured.kind.as_str()), ("u-7", "asset_download"));
    assert_eq!(structured.item.as_deref(), Some("whitepaper-kafka"));
    assert_eq!(structured.attr("domain_userid"), Some(&text("d-1")));
}

#[test]
fn debezium_changes_carry_only_changed_columns_and_deletes_follow_the_types_table() {
    let input = topic(
        r#"format = "debezium"
           contact = ["/after/email", "/before/email"]"#,
    );
    let update = r#"{"before":{"id":1,"email":"a@x.io","industry":"retail","employees":40},
                     "after":{"id":1,"email":"a@x.io","industry":"software","employees":40},
                     "source":{"connector":"postgresql","lsn":24023128,"table":"contacts"},"op":"u","ts_ms":1772442000000}"#;
    let changed = event(&input, update);
    assert_eq!(
        (changed.contact.as_str(), changed.kind.as_str(), changed.id.as_str()),
        ("a@x.io", "profile_update", "24023128")
    );
    assert_eq!(changed.attrs, vec![("industry".to_owned(), text("software"))]);
    // Columns in another order, `after` first, a column added and one repeated still compare by name.
    let reordered = r#"{"after":{"email":"a@x.io","employees":45,"id":1,"industry":"retail","plan":"pro"},
                        "before":{"id":1,"industry":"retail","industry":"x","email":"a@x.io","employees":40},
                        "source":{"lsn":1},"op":"u","ts_ms":1772442000000}"#;
    let attrs = event(&input, reordered).attrs;
    assert_eq!(attrs, vec![("employees".to_owned(), AttrValue::Number(45.0)), ("plan".to_owned(), text("pro"))]);
    let with_schema = format!(r#"{{"schema":{{"type":"struct","fields":[{{"field":"before"}}]}},"payload":{update}}}"#);
    assert_eq!(event(&input, &with_schema), changed);
    let delete = r#"{"before":{"id":1,"email":"a@x.io"},"after":null,"source":{},"op":"d","ts_ms":1772442000000}"#;
    assert_eq!(map_with(&input, delete, &[]).ok(), Some(Mapped::Skipped("type \"d\" is not in types".to_owned())));
    let erasing = topic(
        r#"format = "debezium"
           contact = ["/after/email", "/before/email"]
           types = { d = "erase" }"#,
    );
    let erase = event(&erasing, delete);
    assert_eq!((erase.kind.as_str(), erase.contact.as_str(), erase.id.as_str()), ("erase", "a@x.io", "t/3/17"));
    assert_eq!(
        map_with(&erasing, "", &[]).ok(),
        Some(Mapped::Skipped("a tombstone (a null value after a delete)".to_owned()))
    );
}

#[test]
fn a_custom_mapping_reads_times_in_every_format_and_filters_types() {
    let input = topic(
        r#"format = "mapping"
           id = "/event_id"
           contact = ["/lead/email", "header:contact"]
           type = ["/activity/kind", "=page_visit"]
           ts = "/occurred_at"
           ts_format = "seconds"
           item = "/activity/asset"
           attrs_from = ["/fields"]
           types = { download = "asset_download" }
           drop_types = ["heartbeat"]"#,
    );
    let download = event(
        &input,
        r#"{"event_id":7,"occurred_at":1772442000.5,"lead":{"email":"b@y.io"},
            "activity":{"kind":"download","asset":"ebook-1"},"fields":{"role":"cto","budget":true}}"#,
    );
    assert_eq!(
        (download.id.as_str(), download.kind.as_str(), download.ts_ms),
        ("7", "asset_download", 1_772_442_000_500)
    );
    assert_eq!(download.attr("budget"), Some(&AttrValue::Flag(true)));
    let defaulted = event(&input, r#"{"event_id":"8","occurred_at":"1772442000","lead":{"email":"b@y.io"}}"#);
    assert_eq!(defaulted.kind, "page_visit");
    let heartbeat = r#"{"event_id":"9","occurred_at":1,"lead":{"email":"b@y.io"},"activity":{"kind":"heartbeat"}}"#;
    assert!(matches!(map_with(&input, heartbeat, &[]), Ok(Mapped::Skipped(reason)) if reason.contains("drop_types")));
    for (format, value, expected) in [
        ("millis", "1772442000500", 1_772_442_000_500),
        ("micros", "1772442000500999", 1_772_442_000_500),
        ("rfc3339", "\"2026-03-02 09:00:00.5\"", 1_772_442_000_500),
    ] {
        let input = TopicInput {
            ts_format: Some(serde_json::from_str(&format!("\"{format}\"")).unwrap_or_else(|err| panic!("{err}"))),
            ..input.clone()
        };
        let payload = format!(r#"{{"event_id":"1","occurred_at":{value},"lead":{{"email":"b@y.io"}}}}"#);
        assert_eq!(event(&input, &payload).ts_ms, expected, "{format}");
    }
}

#[test]
fn malformed_records_are_dead_lettered_with_the_field_and_its_sources() {
    let segment = topic(r#"format = "segment""#);
    for (payload, expected) in [
        (
            r#"{"type":"track","event":"X","messageId":"m","timestamp":"2026-03-02T09:00:00Z"}"#,
            "missing field `contact`: none of /userId, /anonymousId",
        ),
        (
            r#"{"type":"track","event":"X","userId":"u","timestamp":"2026-03-02T09:00:00Z"}"#,
            "missing field `id`: none of /messageId",
        ),
        (
            r#"{"type":"track","event":"X","messageId":"m","userId":"u","timestamp":"yesterday"}"#,
            "ts (/timestamp, /originalTimestamp, /sentAt, /receivedAt)",
        ),
        (
            r#"{"type":"track","event":"X","messageId":"m","userId":true,"timestamp":"2026-03-02T09:00:00Z"}"#,
            "a bool where text is needed",
        ),
        (r#"{"type":"track","event":"X","messageId":"m","userId":"u","timestamp":1772442000}"#, "set ts_format"),
        (r#"{"type":"track","event":"X","messageId":"m","userId":"u""#, "not valid JSON"),
        ("\u{1}\u{0}\u{0}\u{0}\u{1}{}", "not framed"),
    ] {
        let err = error(&segment, payload);
        assert!(err.contains(expected), "{payload}: {err}");
    }
    let with_phase = topic(
        r#"format = "segment"
           phase = "/properties/stage""#,
    );
    let no_phase =
        r#"{"type":"track","event":"phase_change","messageId":"m","userId":"u","timestamp":"2026-03-02T09:00:00Z"}"#;
    assert!(error(&with_phase, no_phase).contains("missing field `phase`: none of /properties/stage"));
    assert!(error(&segment, no_phase).contains("missing field `phase`"), "without a source, the event's own check");
    let snowplow = topic(r#"format = "snowplow""#);
    assert!(error(&snowplow, "web\tpage_view\t2026").contains("3 columns; expected 131"));
    let bad_number = snowplow_line(&[
        ("event_id", "e"),
        ("domain_userid", "d"),
        ("event", "x"),
        ("collector_tstamp", "2026-03-02 09:00:00"),
        ("se_value", "many"),
    ]);
    assert!(error(&snowplow, &bad_number).contains("column se_value is not a number"));
}

#[test]
fn framed_json_is_read_under_its_framing() {
    let segment = topic(r#"format = "segment""#);
    let body = r#"{"type":"track","event":"X","messageId":"m","userId":"u","timestamp":"2026-03-02T09:00:00Z"}"#;
    let framed = frame(12, &[], body.as_bytes());
    let mapping = Mapping::compile(&segment).unwrap_or_else(|err| panic!("{err}"));
    let record =
        SourceRecord { payload: &framed, key: None, headers: &[], position: Position::Line { file: "f", line: 1 } };
    assert!(matches!(mapping.map(&record, &DecodeLimits::default()), Ok(Mapped::Event(event)) if event.contact == "u"));
}

#[test]
fn a_mapping_without_a_required_field_or_with_a_bad_source_is_refused() {
    let missing = Mapping::compile(&topic(r#"format = "mapping""#)).err().unwrap_or_default();
    assert!(missing.contains("`id` is required"), "{missing}");
    let bad: Result<TopicInput, _> = toml::from_str("format = \"segment\"\ncontact = \"userId\"\n");
    let err = bad.err().map(|err| err.to_string()).unwrap_or_default();
    assert!(err.contains("line 2") && err.contains("is not a source"), "{err}");
    let bucket = Mapping::compile(&topic(
        r#"format = "segment"
attrs_from = ["header:x"]"#,
    ))
    .err()
    .unwrap_or_default();
    assert!(bucket.contains("takes JSON pointers"), "{bucket}");
}
