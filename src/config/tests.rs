//! Fixture tests in the manner of tikv's config tests: the empty file is the default, the example loads,
//! every mistake names its place or its rule, and secrets never show.

#![allow(clippy::panic, reason = "a failing test panics with the reason")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn load(name: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
    Config::load_with_env(&fixtures().join(name), &env)
}

fn loaded(name: &str, env: &[(&str, &str)]) -> Config {
    load(name, env).unwrap_or_else(|err| panic!("{err}"))
}

fn error(name: &str, env: &[(&str, &str)]) -> String {
    match load(name, env) {
        Ok(config) => panic!("{name} loaded: {config:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn an_empty_file_is_the_default() {
    let mut expected = Config::default();
    expected.state.dir = fixtures().join("leadscore-state");
    expected.rules.path = fixtures().join("rules.toml");
    assert_eq!(loaded("empty.toml", &[]), expected);
    assert_eq!(toml::from_str::<Config>("").unwrap_or_else(|err| panic!("{err}")), Config::default());
    assert_eq!(Config::default().validate(), Ok(()));
}

#[test]
fn the_example_loads_with_the_defaults_it_claims() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/leadscore.toml");
    let config = Config::load_with_env(&path, &[]).unwrap_or_else(|err| panic!("{err}"));
    let examples = path.parent().unwrap_or_else(|| panic!("{} has no directory", path.display()));
    assert!(config.rules.path.is_file(), "{} is not the example rules file", config.rules.path.display());
    assert_eq!(config.kafka.librdkafka.get("socket.keepalive.enable").map(String::as_str), Some("true"));

    let mut expected = Config::default();
    expected.state.dir = examples.join("leadscore-state");
    expected.rules.path = examples.join("rules.toml");
    expected.kafka.librdkafka = config.kafka.librdkafka.clone();
    assert_eq!(config, expected);

    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{err}"));
    for (key, _, _) in FIELDS {
        let (section, name) = key.split_once('.').unwrap_or_else(|| panic!("{key} has no section"));
        assert!(text.contains(&format!("\n[{section}]\n")), "the example has no [{section}]");
        let mentioned = text.lines().any(|line| {
            line.trim_start_matches(['#', ' ']).starts_with(&format!("{name} = ")) || line == format!("[{key}]")
        });
        assert!(mentioned, "the example does not mention {key}");
    }
}

#[test]
fn each_file_error_names_its_line_and_column() {
    // (fixture, line, column, part of the message)
    let cases = [
        ("unknown_key.toml", 3, 1, "unknown field `bootstrap_servers`, expected one of `brokers`"),
        ("wrong_type.toml", 2, 14, "invalid type: string \"a thousand\", expected u32"),
        ("bad_toml.toml", 3, 1, "missing comma between array elements"),
        ("bad_secret.toml", 2, 9, "one of `env` and `file`, not both"),
    ];
    for (name, line, column, reason) in cases {
        let message = error(name, &[]);
        let location = format!("{}:{line}:{column}: ", fixtures().join(name).display());
        assert!(message.starts_with(&location), "{name}: expected {location}…, got {message}");
        assert!(message.contains(reason), "{name}: expected {reason:?} in {message}");
    }
    let missing = error("missing.toml", &[]);
    assert!(
        missing.starts_with(&format!("{}: cannot read the config file: ", fixtures().join("missing.toml").display()))
    );
}

#[test]
fn environment_overrides_change_brokers_and_inputs() {
    let config = loaded(
        "empty.toml",
        &[
            ("LEADSCORE_KAFKA__BROKERS", "kafka-0:9092,kafka-1:9092"),
            ("LEADSCORE_TOPICS__INPUTS", "web.events, crm.events"),
            ("LEADSCORE_KAFKA__BATCH_SIZE", "500"),
            ("LEADSCORE_KAFKA__CLIENT_ID", "123"),
            ("LEADSCORE_TIMERS__CLOCK", "stream"),
            ("LEADSCORE_CONFIG", "not an override"),
            ("KAFKA__BROKERS", "not ours"),
        ],
    );
    assert_eq!(config.kafka.brokers, "kafka-0:9092,kafka-1:9092");
    assert_eq!(config.topics.inputs, ["web.events", "crm.events"]);
    assert_eq!(config.kafka.batch_size, 500);
    assert_eq!(config.kafka.client_id, "123");
    assert_eq!(config.timers.clock, Clock::Stream);

    let secrets = [("TEST_KAFKA_PASSWORD", "pw"), ("LEADSCORE_KAFKA__SASL_USERNAME", "from-env")];
    let config = loaded("secrets.toml", &secrets);
    assert_eq!(config.kafka.sasl_username.as_ref().map(Secret::expose), Some("from-env"));
}

#[test]
fn a_bad_override_names_its_variable() {
    let file = fixtures().join("empty.toml");
    let unknown = error("empty.toml", &[("LEADSCORE_KAFKA__BROKER", "kafka-0:9092")]);
    assert_eq!(
        unknown,
        format!(
            "{}: environment variable LEADSCORE_KAFKA__BROKER: there is no configuration key kafka.broker; \
             overrides are named like LEADSCORE_KAFKA__BROKERS",
            file.display()
        )
    );
    let wrong_type = error("empty.toml", &[("LEADSCORE_KAFKA__BATCH_SIZE", "1.5")]);
    assert!(wrong_type.starts_with(&format!("{}: environment variable LEADSCORE_KAFKA__BATCH_SIZE: ", file.display())));
    assert!(wrong_type.contains("invalid type: floating point `1.5`, expected u32"), "{wrong_type}");
    let out_of_range = error("empty.toml", &[("LEADSCORE_TIMERS__TICK_MS", "5")]);
    assert_eq!(out_of_range, format!("{}: timers.tick_ms = 5 is too small; it must be at least 10", file.display()));
}

#[test]
fn secrets_resolve_and_never_show() {
    let config = loaded("secrets.toml", &[("TEST_KAFKA_PASSWORD", "password-from-env")]);
    let kafka = &config.kafka;
    let exposed = |secret: &Option<Secret>| secret.as_ref().map(Secret::expose).map(str::to_owned);
    assert_eq!(exposed(&kafka.sasl_username).as_deref(), Some("scorer"));
    assert_eq!(exposed(&kafka.sasl_password).as_deref(), Some("password-from-env"));
    assert_eq!(exposed(&kafka.ssl_key_password).as_deref(), Some("key-password-from-file"));
    assert_eq!(exposed(&config.http.token).as_deref(), Some("token-from-file"));
    assert_eq!(kafka.ssl_ca_location, Some(fixtures().join("tls/ca.pem")));
    assert_eq!(kafka.ssl_key_location, Some(PathBuf::from("/etc/leadscore/client.key")));

    let shown = [format!("{config:?}"), config.redacted(), format!("{:?} {}", kafka.sasl_password, Secret::new("x"))];
    for text in &shown {
        for value in ["scorer", "password-from-env", "key-password-from-file", "token-from-file", "x"] {
            assert!(
                !text.contains(&format!("\"{value}\"")) && !text.contains(&format!(" {value}")),
                "{value} in {text}"
            );
        }
    }
    let redacted = config.redacted();
    assert!(redacted.contains("sasl_password = \"***\"") && redacted.contains("token = \"***\""), "{redacted}");

    let properties = kafka.client_config();
    let position = |key: &str, value: &str| properties.iter().position(|(k, v)| k == key && v == value);
    assert_eq!(position("bootstrap.servers", "127.0.0.1:9092"), Some(0));
    assert!(position("sasl.password", "password-from-env").is_some());
    assert!(position("sasl.mechanisms", "SCRAM-SHA-256").is_some());
    assert!(position("security.protocol", "sasl_ssl").is_some());
    let typed = position("sasl.username", "scorer").unwrap_or_else(|| panic!("{properties:?}"));
    let passed_through = position("sasl.username", "override").unwrap_or_else(|| panic!("{properties:?}"));
    assert!(typed < passed_through, "the pass-through map must come last so that it wins");
    let consumer = kafka.consumer_config();
    assert_eq!(consumer.last().map(|(key, _)| key.as_str()), Some("sasl.username"));
    assert!(consumer.contains(&("group.id".to_owned(), "leadscore".to_owned())));
    assert!(kafka.producer_config().contains(&("linger.ms".to_owned(), "5".to_owned())));
}

#[test]
fn a_missing_secret_source_names_the_key() {
    let file = fixtures().join("secrets.toml");
    let message = error("secrets.toml", &[]);
    let expected = "kafka.sasl_password: environment variable TEST_KAFKA_PASSWORD is not set";
    assert_eq!(message, format!("{}: {expected}", file.display()));
}

#[test]
fn the_redacted_config_reads_back() {
    let text = Config::default().redacted();
    let mut effective = Config::default();
    effective.topics.changelog = Some("leadscore.state-changelog".to_owned());
    effective.topics.internal_merge = Some("leadscore.internal.merge".to_owned());
    effective.topics.internal_account = Some("leadscore.internal.account".to_owned());
    assert_eq!(toml::from_str::<Config>(&text).unwrap_or_else(|err| panic!("{err}\n{text}")), effective);
}

#[test]
fn each_cross_field_rule_fails_with_its_reason() {
    fn sasl(config: &mut Config) {
        config.kafka.security_protocol = SecurityProtocol::SaslSsl;
        config.kafka.sasl_mechanism = Some(SaslMechanism::ScramSha512);
        config.kafka.sasl_username = Some(Secret::new("scorer"));
    }
    /// Breaks one rule in a default config.
    type Breakage = fn(&mut Config);
    let cases: &[(Breakage, &str)] = &[
        (|c| c.topics.inputs.clear(), "topics.inputs is empty; list at least one input topic"),
        (
            |c| c.topics.dlq = "leadscore.events".into(),
            "\"leadscore.events\" is used for both topics.inputs and topics.dlq",
        ),
        (|c| c.topics.inputs.push("leadscore.events".into()), "is used for both topics.inputs and topics.inputs"),
        (
            |c| c.topics.changelog = Some("leadscore.phase-changed".into()),
            "both topics.phase_changed and topics.changelog",
        ),
        (|c| c.kafka.group_id = "lead scorer".into(), "topics.changelog: \"lead scorer.state-changelog\" is not"),
        (|c| c.topics.phase_changed = "phase changed".into(), "topics.phase_changed: \"phase changed\" is not a Kafka"),
        (|c| c.topics.dlq = String::new(), "topics.dlq: \"\" is not a Kafka topic name"),
        (|c| c.kafka.security_protocol = SecurityProtocol::SaslSsl, "\"sasl_ssl\" needs kafka.sasl_mechanism"),
        (
            |c| c.kafka.security_protocol = SecurityProtocol::SaslPlaintext,
            "\"sasl_plaintext\" needs kafka.sasl_mechanism",
        ),
        (
            |c| {
                sasl(c);
                c.kafka.sasl_username = None;
            },
            "needs kafka.sasl_username",
        ),
        (sasl, "needs kafka.sasl_password"),
        (
            |c| c.kafka.ssl_key_location = Some("c.key".into()),
            "kafka.ssl_key_location needs kafka.ssl_certificate_location",
        ),
        (|c| c.kafka.ssl_certificate_location = Some("c.pem".into()), "needs kafka.ssl_key_location"),
        (|c| c.kafka.ssl_key_password = Some(Secret::new("pw")), "kafka.ssl_key_password is set but"),
        (|c| c.topics.partitions = 0, "topics.partitions = 0 is out of range; it must be between 1 and 2147483647"),
        (|c| c.topics.replication = 0, "topics.replication = 0 is out of range"),
        (|c| c.timers.tick_ms = 9, "timers.tick_ms = 9 is too small; it must be at least 10"),
        (|c| c.kafka.batch_size = 0, "kafka.batch_size = 0 is out of range; it must be between 1 and 100000"),
        (|c| c.kafka.batch_size = 100_001, "kafka.batch_size = 100001 is out of range"),
        (|c| c.state.history = Some(0), "state.history = 0 is out of range; it must be between 1 and 10000"),
        (|c| c.processing.threads = Some(0), "processing.threads = 0 is out of range; it must be between 1 and 64"),
        (|c| c.state.history = Some(10_001), "state.history = 10001 is out of range"),
        (|c| c.input.max_bytes = 0, "input.max_bytes = 0 is too small"),
        (
            |c| c.http = toml::from_str(r#"token = { env = "TOKEN" }"#).unwrap_or_else(|err| panic!("{err}")),
            "http.token comes from a variable or file that was not read",
        ),
    ];
    for (break_rule, reason) in cases {
        let mut config = Config::default();
        break_rule(&mut config);
        match config.validate() {
            Ok(()) => panic!("accepted a config that should fail with {reason:?}"),
            Err(InvalidConfig(message)) => assert!(message.contains(reason), "expected {reason:?} in {message:?}"),
        }
    }

    let mut config = Config::default();
    sasl(&mut config);
    config.kafka.sasl_password = Some(Secret::new("pw"));
    config.state.history = Some(10_000);
    config.timers.tick_ms = 10;
    assert_eq!(config.validate(), Ok(()));

    let file = fixtures().join("sasl_without_password.toml");
    let message = error("sasl_without_password.toml", &[]);
    let expected = "kafka.security_protocol = \"sasl_plaintext\" needs kafka.sasl_password";
    assert_eq!(message, format!("{}: {expected}", file.display()));
}

/// Every key a config serializes to, as `section.key`, with its value.
fn keys(config: &Config) -> BTreeMap<String, toml::Value> {
    let table = toml::Table::try_from(config).unwrap_or_else(|err| panic!("{err}"));
    let mut keys = BTreeMap::new();
    for (section, value) in table {
        let toml::Value::Table(section_keys) = value else { panic!("[{section}] is not a table") };
        keys.extend(section_keys.into_iter().map(|(key, value)| (format!("{section}.{key}"), value)));
    }
    keys
}

/// The default config with every optional key set.
fn fully_populated() -> Config {
    let mut config = Config::default();
    let kafka = &mut config.kafka;
    kafka.sasl_mechanism = Some(SaslMechanism::Plain);
    kafka.sasl_username = Some(Secret::new("user"));
    kafka.sasl_password = Some(Secret::new("password"));
    kafka.ssl_ca_location = Some("ca.pem".into());
    kafka.ssl_certificate_location = Some("client.pem".into());
    kafka.ssl_key_location = Some("client.key".into());
    kafka.ssl_key_password = Some(Secret::new("key password"));
    config.topics.changelog = Some("changelog".into());
    config.topics.internal_merge = Some("merges".into());
    config.topics.internal_account = Some("account-updates".into());
    config.state.history = Some(20);
    config.processing.threads = Some(3);
    config.http.token = Some(Secret::new("token"));
    config.input.schema_registry = Some("http://registry:8081".into());
    config
}

fn render(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(","),
        toml::Value::Table(table) if table.is_empty() => "{}".to_owned(),
        other => other.to_string(),
    }
}

#[test]
fn fields_lists_every_key_with_its_default() {
    let listed: BTreeSet<&str> = FIELDS.iter().map(|(key, _, _)| *key).collect();
    assert_eq!(listed.len(), FIELDS.len(), "a key is listed twice");
    let populated = keys(&fully_populated());
    assert_eq!(populated.keys().map(String::as_str).collect::<BTreeSet<_>>(), listed);

    let defaults = keys(&Config::default());
    for (key, default, description) in FIELDS {
        assert!(!description.is_empty(), "{key} has no description");
        if let Some(value) = defaults.get(*key) {
            assert_eq!(render(value), *default, "the listed default of {key} is not the real one");
        }
    }
}

/// The README's configuration reference, as it must read: one row per key of [`FIELDS`], in order.
fn reference_table() -> Vec<String> {
    let mut rows = vec!["| key | default | what it does |".to_owned(), "|---|---|---|".to_owned()];
    for (key, default, description) in FIELDS {
        let default = if default.is_empty() { "unset".to_owned() } else { format!("`{default}`") };
        rows.push(format!("| `{key}` | {default} | {description} |"));
    }
    rows
}

#[test]
fn the_readme_reference_has_every_key_and_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let heading = "### Configuration reference\n";
    let section = readme.split_once(heading).map(|(_, rest)| rest).unwrap_or_else(|| panic!("no {heading:?}"));
    let table: Vec<&str> =
        section.lines().skip_while(|line| !line.starts_with('|')).take_while(|line| line.starts_with('|')).collect();
    let expected = reference_table();
    assert!(
        table == expected,
        "the README's configuration reference differs from config::FIELDS; it should read:\n\n{}\n",
        expected.join("\n")
    );
}

/// The pass-through map serves every client, but the consumer does not get producer-only properties nor
/// the producer consumer-only ones, which librdkafka would warn about at every start.
#[test]
fn pass_through_properties_reach_only_the_clients_they_belong_to() {
    let librdkafka: BTreeMap<String, String> =
        [("max.poll.interval.ms", "60000"), ("compression.type", "zstd"), ("socket.timeout.ms", "9000")]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
    let kafka = KafkaConfig { librdkafka, ..KafkaConfig::default() };
    let keys = |properties: Vec<(String, String)>| -> BTreeSet<String> {
        properties.into_iter().map(|(key, _)| key).collect()
    };
    let consumer = keys(kafka.consumer_config());
    let producer = keys(kafka.producer_config());
    let client = keys(kafka.client_config());
    assert!(consumer.contains("max.poll.interval.ms") && !consumer.contains("compression.type"), "{consumer:?}");
    assert!(producer.contains("compression.type") && !producer.contains("max.poll.interval.ms"), "{producer:?}");
    assert!(consumer.contains("socket.timeout.ms") && producer.contains("socket.timeout.ms"));
    assert!(client.contains("max.poll.interval.ms") && client.contains("compression.type"), "{client:?}");
}
