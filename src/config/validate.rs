//! The rules that no single key can check on its own.

use super::Config;

/// A broken cross-field rule; [`ConfigError::Invalid`](super::ConfigError::Invalid) adds the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

/// Kafka's limit on the length of a topic name.
const MAX_TOPIC_NAME: usize = 249;

fn ensure(holds: bool, message: impl FnOnce() -> String) -> Result<(), InvalidConfig> {
    if holds { Ok(()) } else { Err(InvalidConfig(message())) }
}

impl Config {
    /// Checks what only makes sense across keys, so that a deployment fails at start-up with a reason
    /// instead of at the first broker connection or, worse, by writing one kind of record to another's
    /// topic. [`Config::load`] calls it; call it again after changing a config in code.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let (kafka, topics) = (&self.kafka, &self.topics);
        ensure(!topics.inputs.is_empty(), || "topics.inputs is empty; list at least one input topic".into())?;
        let changelog = topics.changelog_topic(&kafka.group_id);
        let internal_merge = topics.internal_merge_topic(&kafka.group_id);
        let internal_account = topics.internal_account_topic(&kafka.group_id);
        let roles = topics.inputs.iter().map(|topic| ("topics.inputs", topic.as_str())).chain([
            ("topics.score_changed", topics.score_changed.as_str()),
            ("topics.threshold_crossed", topics.threshold_crossed.as_str()),
            ("topics.phase_changed", topics.phase_changed.as_str()),
            ("topics.accounts", topics.accounts.as_str()),
            ("topics.dlq", topics.dlq.as_str()),
            ("topics.changelog", changelog.as_str()),
            ("topics.internal_merge", internal_merge.as_str()),
            ("topics.internal_account", internal_account.as_str()),
        ]);
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (key, topic) in roles {
            let legal = (1..=MAX_TOPIC_NAME).contains(&topic.len())
                && topic != "."
                && topic != ".."
                && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            ensure(legal, || {
                format!("{key}: {topic:?} is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-')")
            })?;
            if let Some((other, _)) = seen.iter().find(|(_, earlier)| *earlier == topic) {
                let message = format!("topic {topic:?} is used for both {other} and {key}; each needs its own topic");
                return Err(InvalidConfig(message));
            }
            seen.push((key, topic));
        }

        if kafka.security_protocol.uses_sasl() {
            let protocol = kafka.security_protocol.as_str();
            for (key, given) in [
                ("kafka.sasl_mechanism", kafka.sasl_mechanism.is_some()),
                ("kafka.sasl_username", kafka.sasl_username.is_some()),
                ("kafka.sasl_password", kafka.sasl_password.is_some()),
            ] {
                ensure(given, || format!("kafka.security_protocol = \"{protocol}\" needs {key}"))?;
            }
        }
        ensure(kafka.ssl_key_location.is_none() || kafka.ssl_certificate_location.is_some(), || {
            "kafka.ssl_key_location needs kafka.ssl_certificate_location: the key only proves the certificate".into()
        })?;
        ensure(kafka.ssl_certificate_location.is_none() || kafka.ssl_key_location.is_some(), || {
            "kafka.ssl_certificate_location needs kafka.ssl_key_location: a certificate alone proves nothing".into()
        })?;
        ensure(kafka.ssl_key_password.is_none() || kafka.ssl_key_location.is_some(), || {
            "kafka.ssl_key_password is set but kafka.ssl_key_location is not".into()
        })?;
        let secrets = [
            ("kafka.sasl_username", &kafka.sasl_username),
            ("kafka.sasl_password", &kafka.sasl_password),
            ("kafka.ssl_key_password", &kafka.ssl_key_password),
            ("http.token", &self.http.token),
        ];
        for (key, secret) in secrets {
            ensure(secret.as_ref().is_none_or(|secret| secret.is_resolved()), || {
                format!("{key} comes from a variable or file that was not read; load the config with Config::load")
            })?;
        }

        let ranges = [
            ("kafka.batch_size", u64::from(kafka.batch_size), 1, 100_000),
            ("topics.partitions", u64::from(topics.partitions), 1, i32::MAX as u64),
            ("topics.replication", u64::from(topics.replication), 1, i16::MAX as u64),
            ("timers.tick_ms", self.timers.tick_ms, 10, u64::MAX),
            // Well inside the producer's transaction.timeout.ms (60 s), after which the broker aborts.
            ("processing.commit_interval_ms", self.processing.commit_interval_ms, 0, 30_000),
            ("input.max_bytes", u64::from(self.input.max_bytes), 1, u64::MAX),
        ];
        let history = self.state.history.map(|history| ("state.history", u64::from(history), 1, 10_000));
        let threads = self.processing.threads.map(|threads| ("processing.threads", u64::from(threads), 1, 64));
        for (key, value, min, max) in ranges.into_iter().chain(history).chain(threads) {
            ensure((min..=max).contains(&value), || match max {
                u64::MAX => format!("{key} = {value} is too small; it must be at least {min}"),
                _ => format!("{key} = {value} is out of range; it must be between {min} and {max}"),
            })?;
        }
        if let Some(topic) = self.input.topics.keys().find(|topic| !topics.inputs.contains(topic)) {
            return Err(InvalidConfig(format!(
                "input.topics.{topic:?} names a topic that is not in topics.inputs {:?}",
                topics.inputs
            )));
        }
        self.input.decoders(&topics.inputs).map(drop).map_err(InvalidConfig)
    }
}
