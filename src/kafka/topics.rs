//! Topic provisioning: create what is missing with the right partitions, replication and (for the
//! changelog) compaction, and check that what exists fits. Every topic config is set explicitly, because
//! some brokers report no defaults.
//!
//! `leadscore topics create` and `leadscore run` both go through [`create_missing`], so an operator who
//! provisions topics ahead of time gets the same verdict `run` would give at start-up.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{info, warn};

use super::FirstConnectionError;

/// What a topic is for, which decides its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    /// Events in.
    Input,
    /// Outputs and dead letters.
    Output,
    /// The compacted state changelog.
    Changelog,
}

/// A topic leadscore needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Role.
    pub role: TopicRole,
    /// Partitions to create it with.
    pub partitions: i32,
    /// Replication factor to create it with.
    pub replication: i32,
}

/// A problem with an existing topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicProblem {
    /// The topic.
    pub topic: String,
    /// What is wrong.
    pub problem: String,
}

/// What provisioning did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provisioned {
    /// Topics created.
    pub created: Vec<String>,
    /// Topics that already existed.
    pub existing: Vec<String>,
    /// Topics with the wrong settings, or missing and not creatable: `leadscore run` refuses to start.
    pub problems: Vec<TopicProblem>,
    /// Settings the broker would not describe, so they could not be checked (librdkafka's mock cluster
    /// has no DescribeConfigs); not a problem, but not a clean bill of health either.
    pub unverified: Vec<TopicProblem>,
    /// Partition count of every needed topic that exists after provisioning.
    pub partitions: BTreeMap<String, i32>,
}

impl Provisioned {
    /// The partition count of the inputs, which every task and API lookup is laid out by.
    pub fn input_partitions(&self, specs: &[TopicSpec]) -> Option<i32> {
        let first_input = specs.iter().find(|spec| spec.role == TopicRole::Input)?;
        self.partitions.get(&first_input.name).copied()
    }
}

/// One line per topic, then the problems and what could not be checked: what `leadscore topics create`
/// prints.
impl fmt::Display for Provisioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let partitions = |topic: &str| match self.partitions.get(topic) {
            Some(count) => format!("{count} partitions"),
            None => "missing".to_owned(),
        };
        for topic in &self.created {
            writeln!(f, "created   {topic} ({})", partitions(topic))?;
        }
        for topic in &self.existing {
            writeln!(f, "exists    {topic} ({})", partitions(topic))?;
        }
        for TopicProblem { topic, problem } in &self.problems {
            writeln!(f, "WRONG     {topic}: {problem}")?;
        }
        for TopicProblem { topic, problem } in &self.unverified {
            writeln!(f, "unchecked {topic}: {problem}")?;
        }
        Ok(())
    }
}

fn client_config(properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// A failed request for cluster metadata (or for topic creation), with the reason the client gave for
/// not reaching a broker, such as "SASL authentication error: … invalid-proof", when it gave one.
#[derive(Debug, thiserror::Error)]
#[error("{error}{}", connection.as_ref().map(|reason| format!("; the client reported: {reason}")).unwrap_or_default())]
pub struct ClusterError {
    /// The request's own error.
    #[source]
    pub error: KafkaError,
    /// What the client reported about its broker connections meanwhile.
    pub connection: Option<String>,
}

impl From<KafkaError> for ClusterError {
    fn from(error: KafkaError) -> ClusterError {
        ClusterError { error, connection: None }
    }
}

/// Partition counts of the topics that exist, from cluster metadata.
pub fn partition_counts(
    properties: &[(String, String)],
    timeout: Duration,
) -> Result<HashMap<String, i32>, ClusterError> {
    cluster_metadata(properties, timeout).map(|(counts, _)| counts)
}

/// Partition counts of the topics that exist, and the id of a broker.
fn cluster_metadata(
    properties: &[(String, String)],
    timeout: Duration,
) -> Result<(HashMap<String, i32>, Option<i32>), ClusterError> {
    let consumer: BaseConsumer<FirstConnectionError> =
        client_config(properties).create_with_context(FirstConnectionError::default())?;
    let metadata = match consumer.fetch_metadata(None, timeout) {
        Ok(metadata) => metadata,
        Err(error) => {
            // The connection errors wait in the client's queue until it is polled.
            for _ in 0..10 {
                let _ = consumer.poll(Duration::from_millis(10));
            }
            return Err(ClusterError { error, connection: consumer.context().reason() });
        }
    };
    let counts = metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none() && !topic.partitions().is_empty())
        .map(|topic| (topic.name().to_owned(), topic.partitions().len() as i32))
        .collect();
    Ok((counts, metadata.brokers().first().map(|broker| broker.id())))
}

/// The settings a topic of this role is created with. All explicit: a broker's defaults are not ours to
/// rely on, and some Kafka-compatible brokers report only the settings a topic was created with.
fn new_topic(spec: &TopicSpec, partitions: i32) -> NewTopic<'_> {
    let topic = NewTopic::new(&spec.name, partitions, TopicReplication::Fixed(spec.replication));
    match spec.role {
        TopicRole::Changelog => {
            topic.set("cleanup.policy", "compact").set("min.compaction.lag.ms", "0").set("segment.ms", "3600000")
        }
        TopicRole::Input | TopicRole::Output => topic.set("cleanup.policy", "delete").set("retention.ms", "604800000"),
    }
}

/// Creates the missing topics, then checks every needed topic: inputs co-partitioned, the changelog
/// partitioned like the inputs and compacted. Idempotent: a second run creates nothing and finds the
/// same. A missing changelog or input is created with the partition count of the inputs that already
/// exist, so provisioning never builds the mismatch it would then report.
///
/// Brokers without CreateTopics (librdkafka's mock cluster) are reported in the log, not fatal: their
/// topics must then exist already, and the checks say so if they don't.
pub async fn create_missing(
    properties: &[(String, String)],
    specs: &[TopicSpec],
    max_record_bytes: usize,
    timeout: Duration,
) -> Result<Provisioned, ClusterError> {
    let existing = partition_counts(properties, timeout)?;
    let mut provisioned = Provisioned::default();
    let existing_inputs = specs.iter().filter(|spec| spec.role == TopicRole::Input);
    let input_partitions = existing_inputs.filter_map(|spec| existing.get(&spec.name).copied()).next();
    let missing: Vec<&TopicSpec> = specs.iter().filter(|spec| !existing.contains_key(&spec.name)).collect();
    provisioned.existing =
        specs.iter().filter(|spec| existing.contains_key(&spec.name)).map(|spec| spec.name.clone()).collect();
    let admin: AdminClient<DefaultClientContext> = client_config(properties).create()?;
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    if !missing.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|spec| match spec.role {
                TopicRole::Input | TopicRole::Changelog => new_topic(spec, input_partitions.unwrap_or(spec.partitions)),
                TopicRole::Output => new_topic(spec, spec.partitions),
            })
            .collect();
        match admin.create_topics(new_topics.iter(), &options).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(name) => {
                            info!(topic = %name, "created topic");
                            provisioned.created.push(name);
                        }
                        Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => provisioned.existing.push(name),
                        Err((name, code)) => {
                            warn!(topic = %name, error = %code, "could not create topic");
                            provisioned
                                .problems
                                .push(TopicProblem { topic: name, problem: format!("not created: {code}") });
                        }
                    }
                }
            }
            Err(err) => warn!(error = %err, "the broker does not create topics; they must exist already"),
        }
    }
    // A broker learns of topics just created a moment later than the controller: ask again until every
    // created topic is there, within the timeout.
    let deadline = std::time::Instant::now() + timeout;
    let (counts, broker) = loop {
        let (counts, broker) = cluster_metadata(properties, timeout)?;
        let known = provisioned.created.iter().all(|name| counts.contains_key(name));
        if known || std::time::Instant::now() >= deadline {
            break (counts, broker);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    provisioned.problems.extend(check(specs, &counts));
    provisioned.partitions =
        specs.iter().filter_map(|spec| counts.get(&spec.name).map(|count| (spec.name.clone(), *count))).collect();
    let written: Vec<(&str, TopicRole)> = specs
        .iter()
        .filter(|spec| spec.role != TopicRole::Input && counts.contains_key(&spec.name))
        .map(|spec| (spec.name.as_str(), spec.role))
        .collect();
    // Any broker answers DescribeConfigs for a topic. Naming one spares the controller lookup, which never ends on a cluster that reports no controller (the mock cluster).
    check_configs(&admin, &options.broker_id(broker), &written, max_record_bytes, &mut provisioned).await;
    Ok(provisioned)
}

/// Checks partition counts: every input the same, and the changelog as many as the inputs.
pub fn check(specs: &[TopicSpec], counts: &HashMap<String, i32>) -> Vec<TopicProblem> {
    let mut problems = Vec::new();
    let inputs: Vec<(&str, i32)> = specs
        .iter()
        .filter(|spec| spec.role == TopicRole::Input)
        .filter_map(|spec| counts.get(&spec.name).map(|count| (spec.name.as_str(), *count)))
        .collect();
    if let Some(&(first, partitions)) = inputs.first() {
        for (name, count) in &inputs[1..] {
            if *count != partitions {
                problems.push(TopicProblem {
                    topic: (*name).to_owned(),
                    problem: format!(
                        "has {count} partitions but {first} has {partitions}; inputs must be co-partitioned"
                    ),
                });
            }
        }
        for spec in specs.iter().filter(|spec| spec.role == TopicRole::Changelog) {
            match counts.get(&spec.name) {
                Some(count) if *count != partitions => problems.push(TopicProblem {
                    topic: spec.name.clone(),
                    problem: format!("changelog has {count} partitions but the inputs have {partitions}"),
                }),
                None => {
                    problems.push(TopicProblem { topic: spec.name.clone(), problem: "changelog does not exist".into() })
                }
                _ => {}
            }
        }
    }
    for spec in specs.iter().filter(|spec| spec.role == TopicRole::Input) {
        if !counts.contains_key(&spec.name) {
            problems.push(TopicProblem { topic: spec.name.clone(), problem: "input topic does not exist".into() });
        }
    }
    problems
}

/// The verdict on one changelog's `cleanup.policy` as the broker reports it (`None`: not reported).
/// Without compaction the broker deletes old segments, and with them the only durable copy of the state
/// of contacts that have been quiet for longer than the retention.
pub fn compaction_problem(cleanup_policy: Option<&str>) -> Option<String> {
    match cleanup_policy {
        Some(policy) if policy.split(',').any(|part| part.trim() == "compact") => None,
        Some(policy) => Some(format!(
            "changelog is not compacted (cleanup.policy={policy}); old state would be deleted: \
             set cleanup.policy=compact"
        )),
        None => Some(
            "changelog reports no cleanup.policy, so it is not known to be compacted: set cleanup.policy=compact"
                .to_owned(),
        ),
    }
}

/// The verdict on a written topic's `max.message.bytes` (`None`: not reported): a record the producer
/// accepts but the topic refuses would stop processing until the limit is raised.
pub fn size_problem(max_message_bytes: Option<&str>, max_record_bytes: usize) -> Option<String> {
    let limit: usize = max_message_bytes?.trim().parse().ok()?;
    (limit < max_record_bytes).then(|| {
        format!(
            "max.message.bytes={limit} is below the producer's message.max.bytes={max_record_bytes}, so records \
             leadscore may write would be refused: raise the topic's max.message.bytes or set \
             kafka.librdkafka.\"message.max.bytes\" to at most {limit}"
        )
    })
}

/// Asks the broker for the written topics' configs (DescribeConfigs): the changelogs' `cleanup.policy`
/// and every written topic's `max.message.bytes`. A broker that cannot answer leaves them unverified
/// rather than wrong.
async fn check_configs(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    topics: &[(&str, TopicRole)],
    max_record_bytes: usize,
    provisioned: &mut Provisioned,
) {
    if topics.is_empty() {
        return;
    }
    let resources: Vec<ResourceSpecifier<'_>> = topics.iter().map(|(name, _)| ResourceSpecifier::Topic(name)).collect();
    let unverified = |topic: &str, reason: String| TopicProblem {
        topic: topic.to_owned(),
        problem: format!("topic configs could not be read ({reason})"),
    };
    match admin.describe_configs(resources.iter(), options).await {
        Ok(results) => {
            for ((topic, role), result) in topics.iter().zip(results) {
                match result {
                    Ok(resource) => {
                        let value = |key: &str| resource.get(key).and_then(|entry| entry.value.as_deref());
                        let compaction = match role {
                            TopicRole::Changelog => compaction_problem(value("cleanup.policy")),
                            _ => None,
                        };
                        let size = size_problem(value("max.message.bytes"), max_record_bytes);
                        for problem in compaction.into_iter().chain(size) {
                            provisioned.problems.push(TopicProblem { topic: (*topic).to_owned(), problem });
                        }
                    }
                    Err(code) => provisioned.unverified.push(unverified(topic, code.to_string())),
                }
            }
        }
        Err(err) => {
            warn!(error = %err, "the broker does not describe topic configs; compaction and size limits are not checked");
            provisioned.unverified.extend(topics.iter().map(|(topic, _)| unverified(topic, err.to_string())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_limit_below_the_producers_is_a_problem() {
        assert_eq!(size_problem(Some("1048588"), 1_000_000), None);
        assert_eq!(size_problem(Some("1000000"), 1_000_000), None);
        assert_eq!(size_problem(None, 1_000_000), None, "not reported: nothing to say");
        let problem = size_problem(Some("1000"), 1_000_000).unwrap_or_default();
        assert!(problem.contains("max.message.bytes=1000") && problem.contains("1000000"), "{problem}");
    }

    #[test]
    fn only_a_compacting_policy_passes() {
        assert_eq!(compaction_problem(Some("compact")), None);
        assert_eq!(compaction_problem(Some("compact,delete")), None);
        assert_eq!(compaction_problem(Some("delete, compact")), None);
        let deleting = compaction_problem(Some("delete")).unwrap_or_default();
        assert!(deleting.starts_with("changelog is not compacted (cleanup.policy=delete)"), "{deleting}");
        let unreported = compaction_problem(None).unwrap_or_default();
        assert!(unreported.contains("reports no cleanup.policy"), "{unreported}");
    }

    #[test]
    fn the_report_names_every_topic_and_problem() {
        let provisioned = Provisioned {
            created: vec!["events".into()],
            existing: vec!["changelog".into()],
            problems: vec![TopicProblem { topic: "changelog".into(), problem: "has 3 partitions".into() }],
            unverified: vec![TopicProblem { topic: "other".into(), problem: "topic configs could not be read".into() }],
            partitions: [("events".to_owned(), 6), ("changelog".to_owned(), 3)].into_iter().collect(),
        };
        assert_eq!(
            provisioned.to_string(),
            "created   events (6 partitions)\nexists    changelog (3 partitions)\n\
             WRONG     changelog: has 3 partitions\nunchecked other: topic configs could not be read\n"
        );
    }
}
