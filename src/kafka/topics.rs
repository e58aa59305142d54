//! Topic provisioning: create what is missing with the right partitions, replication and (for the
//! changelog) compaction, and check that what exists fits. Every topic config is set explicitly, because
//! some brokers report no defaults.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{info, warn};

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

/// What provisioning did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provisioned {
    /// Topics created.
    pub created: Vec<String>,
    /// Topics that already existed.
    pub existing: Vec<String>,
    /// Existing topics with the wrong settings.
    pub problems: Vec<TopicProblem>,
}

fn client_config(properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// Partition counts of the topics that exist, from cluster metadata.
pub fn partition_counts(
    properties: &[(String, String)],
    timeout: Duration,
) -> Result<HashMap<String, i32>, KafkaError> {
    let consumer: BaseConsumer = client_config(properties).create()?;
    let metadata = consumer.fetch_metadata(None, timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none() && !topic.partitions().is_empty())
        .map(|topic| (topic.name().to_owned(), topic.partitions().len() as i32))
        .collect())
}

/// Creates the missing topics. Brokers without CreateTopics are reported in the log, not fatal: their
/// topics must then exist already.
pub async fn create_missing(
    properties: &[(String, String)],
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<Provisioned, KafkaError> {
    let existing = partition_counts(properties, timeout)?;
    let mut provisioned = Provisioned::default();
    let missing: Vec<&TopicSpec> = specs.iter().filter(|spec| !existing.contains_key(&spec.name)).collect();
    provisioned.existing =
        specs.iter().filter(|spec| existing.contains_key(&spec.name)).map(|s| s.name.clone()).collect();
    if !missing.is_empty() {
        let admin: AdminClient<DefaultClientContext> = client_config(properties).create()?;
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|spec| {
                let topic = NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(spec.replication));
                match spec.role {
                    TopicRole::Changelog => topic
                        .set("cleanup.policy", "compact")
                        .set("min.compaction.lag.ms", "0")
                        .set("segment.ms", "3600000"),
                    TopicRole::Input | TopicRole::Output => {
                        topic.set("cleanup.policy", "delete").set("retention.ms", "604800000")
                    }
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
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
    let counts = partition_counts(properties, timeout)?;
    provisioned.problems.extend(check(specs, &counts));
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
