//! Where a replay starts and ends: `earliest`, an RFC 3339 time (Kafka record timestamps), or explicit
//! offsets per partition such as `0:1200,1:300` (every input topic) or `web.events:0:1200` (one topic).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::ReplayError;

/// A position in the input topics, as the user gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The oldest retained record (for `--to`: the end of the log).
    Edge,
    /// The first record with a Kafka timestamp at or after this time, epoch ms.
    Time(i64),
    /// Offsets per partition; `None` as topic means every input topic.
    Offsets(Vec<(Option<String>, i32, i64)>),
}

impl Position {
    /// Parses `earliest`/`latest`, an RFC 3339 time or an offset list.
    pub fn parse(text: &str) -> Result<Position, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("earliest") || text.eq_ignore_ascii_case("latest") {
            return Ok(Position::Edge);
        }
        if let Ok(time) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
            return Ok(Position::Time((time.unix_timestamp_nanos() / 1_000_000) as i64));
        }
        let mut offsets = Vec::new();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let mut parts = item.rsplitn(3, ':');
            let (offset, partition, topic) = (parts.next(), parts.next(), parts.next());
            let number = |part: Option<&str>| part.and_then(|part| part.trim().parse::<i64>().ok());
            match (number(partition), number(offset)) {
                (Some(partition), Some(offset))
                    if partition >= 0 && offset >= 0 && partition <= i64::from(i32::MAX) =>
                {
                    offsets.push((topic.map(str::to_owned), partition as i32, offset));
                }
                _ => {
                    return Err(format!(
                        "{item:?} is not a position: use earliest, an RFC 3339 time such as \
                         2026-03-01T00:00:00Z, or offsets such as 0:1200,1:300 or topic:0:1200"
                    ));
                }
            }
        }
        if offsets.is_empty() {
            return Err(format!("{text:?} is not a position"));
        }
        Ok(Position::Offsets(offsets))
    }
}

/// The offset range of one input partition to replay: `start..end`, `end` `None` for "until the end
/// of the log when the replay reaches it".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First offset replayed.
    pub start: i64,
    /// First offset not replayed.
    pub end: Option<i64>,
}

/// Resolves `from` and `to` to offset ranges for every partition of every input topic.
pub fn resolve<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    inputs: &[String],
    partitions: i32,
    from: &Position,
    to: Option<&Position>,
    timeout: Duration,
) -> Result<BTreeMap<(String, i32), Range>, ReplayError> {
    let kafka = |err| ReplayError::Kafka(format!("resolving positions: {err}"));
    let mut ranges = BTreeMap::new();
    for topic in inputs {
        for partition in 0..partitions {
            let (low, _) = consumer.fetch_watermarks(topic, partition, timeout).map_err(kafka)?;
            let start = match from {
                Position::Edge => low,
                Position::Time(ms) => time_offset(consumer, topic, partition, *ms, timeout)?.unwrap_or(i64::MAX),
                Position::Offsets(list) => given(list, topic, partition)?.max(low),
            };
            let end = match to {
                None | Some(Position::Edge) => None,
                Some(Position::Time(ms)) => time_offset(consumer, topic, partition, *ms, timeout)?,
                Some(Position::Offsets(list)) => Some(given(list, topic, partition)?),
            };
            tracing::debug!(topic = %topic, partition, low, start, end, "replay range");
            ranges.insert((topic.clone(), partition), Range { start, end });
        }
    }
    Ok(ranges)
}

fn given(list: &[(Option<String>, i32, i64)], topic: &str, partition: i32) -> Result<i64, ReplayError> {
    list.iter()
        .filter(|(named, listed, _)| *listed == partition && named.as_deref().is_none_or(|named| named == topic))
        .map(|(_, _, offset)| *offset)
        .next_back()
        .ok_or_else(|| ReplayError::Usage(format!("no offset given for {topic} partition {partition}")))
}

/// The first offset with a timestamp at or after `ms`; `None` when every record is older.
fn time_offset<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    ms: i64,
    timeout: Duration,
) -> Result<Option<i64>, ReplayError> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(ms))
        .map_err(|err| ReplayError::Kafka(err.to_string()))?;
    let found = consumer.offsets_for_times(list, timeout).map_err(|err| ReplayError::Kafka(err.to_string()))?;
    Ok(found.find_partition(topic, partition).and_then(|element| match element.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(Position::parse("earliest"), Ok(Position::Edge));
        assert_eq!(Position::parse("2026-03-01T12:00:00Z"), Ok(Position::Time(1_772_366_400_000)));
        assert_eq!(
            Position::parse("0:1200, 1:300,web.events:2:7"),
            Ok(Position::Offsets(vec![(None, 0, 1200), (None, 1, 300), (Some("web.events".into()), 2, 7)]))
        );
        for bad in ["", "yesterday", "0:x", "-1:4", "0:-4"] {
            assert!(Position::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_topic_specific_offset_wins_over_a_general_one_given_after_it() {
        let list = vec![(None, 0, 10), (Some("b".to_owned()), 0, 20)];
        assert_eq!(given(&list, "a", 0).ok(), Some(10));
        assert_eq!(given(&list, "b", 0).ok(), Some(20));
        assert!(given(&list, "a", 1).is_err());
    }
}
