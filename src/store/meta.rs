//! A partition's bookkeeping ([`PartitionMeta`]) and its small versioned binary form.
//!
//! Format 1, all integers little-endian:
//!
//! ```text
//! u8 format (= 1)
//! u64 count, then count × { u64 length, length bytes of UTF-8 topic name, i64 next offset }
//! u8 0 | 1, then i64 changelog offset if 1
//! u8 0 | 1, then i64 stream time ms if 1
//! ```
//!
//! Lengths are 64-bit so encoding never truncates; the decoder checks every length against the bytes
//! that remain, so corrupt input is an error and never a panic or a huge allocation.

/// The meta encoding written by this build.
const META_FORMAT: u8 = 1;

/// Where a partition resumes after a restart or a rebalance, written in the same batch as the state it
/// accounts for, so the two never disagree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionMeta {
    /// Per input topic, the next offset to consume (last applied + 1) as of the last written batch.
    pub input_offsets: Vec<(String, i64)>,
    /// The next changelog offset already reflected locally, so a restore resumes there.
    pub changelog_offset: Option<i64>,
    /// The partition's stream time (largest event time seen), which drives timers in replay.
    pub stream_time_ms: Option<i64>,
}

/// Why stored bytes are not a [`PartitionMeta`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaDecodeError {
    /// The record has no bytes at all.
    #[error("the record is empty")]
    Empty,
    /// Written by an encoding this build does not read.
    #[error("the record has format {found}, but this build reads format {META_FORMAT}")]
    UnknownFormat {
        /// The format byte found.
        found: u8,
    },
    /// The record ends inside a field.
    #[error("the record ends inside {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A topic name is not UTF-8.
    #[error("input topic name {index} is not UTF-8")]
    InvalidTopic {
        /// Position of the topic in the list.
        index: usize,
    },
    /// An optional field's presence byte is neither 0 nor 1.
    #[error("{field} has presence byte {found}, expected 0 or 1")]
    InvalidPresence {
        /// The field.
        field: &'static str,
        /// The byte found.
        found: u8,
    },
    /// Bytes follow the last field.
    #[error("{count} unexpected bytes follow the record")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

impl PartitionMeta {
    /// The next offset to consume from `topic`, if this partition has consumed from it.
    pub fn input_offset(&self, topic: &str) -> Option<i64> {
        self.input_offsets.iter().find(|(name, _)| name == topic).map(|(_, offset)| *offset)
    }

    /// The record stored in the meta column family.
    pub fn encode(&self) -> Vec<u8> {
        let topics: usize = self.input_offsets.iter().map(|(topic, _)| 16 + topic.len()).sum();
        let mut out = Vec::with_capacity(1 + 8 + topics + 18);
        out.push(META_FORMAT);
        out.extend_from_slice(&(self.input_offsets.len() as u64).to_le_bytes());
        for (topic, offset) in &self.input_offsets {
            out.extend_from_slice(&(topic.len() as u64).to_le_bytes());
            out.extend_from_slice(topic.as_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        for value in [self.changelog_offset, self.stream_time_ms] {
            match value {
                Some(value) => {
                    out.push(1);
                    out.extend_from_slice(&value.to_le_bytes());
                }
                None => out.push(0),
            }
        }
        out
    }

    /// Reads a record written by [`PartitionMeta::encode`]; any corruption is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaDecodeError> {
        let (&format, rest) = bytes.split_first().ok_or(MetaDecodeError::Empty)?;
        if format != META_FORMAT {
            return Err(MetaDecodeError::UnknownFormat { found: format });
        }
        let mut reader = Reader { rest };
        let count = reader.u64("the topic count")?;
        // Each entry takes at least 16 bytes, which bounds the allocation by the input's size.
        let mut input_offsets = Vec::with_capacity(usize::try_from(count).unwrap_or(usize::MAX).min(rest.len() / 16));
        for index in 0..count {
            let len = reader.u64("a topic name length")?;
            let len = usize::try_from(len).map_err(|_| MetaDecodeError::Truncated { field: "a topic name" })?;
            let name = reader.take(len, "a topic name")?;
            let index = usize::try_from(index).unwrap_or(usize::MAX);
            let name = std::str::from_utf8(name).map_err(|_| MetaDecodeError::InvalidTopic { index })?;
            let offset = reader.i64("an input offset")?;
            input_offsets.push((name.to_owned(), offset));
        }
        let changelog_offset = reader.optional_i64("the changelog offset")?;
        let stream_time_ms = reader.optional_i64("the stream time")?;
        if !reader.rest.is_empty() {
            return Err(MetaDecodeError::TrailingBytes { count: reader.rest.len() });
        }
        Ok(PartitionMeta { input_offsets, changelog_offset, stream_time_ms })
    }
}

/// A cursor over a record that turns every short read into [`MetaDecodeError::Truncated`].
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], MetaDecodeError> {
        if len > self.rest.len() {
            return Err(MetaDecodeError::Truncated { field });
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn array(&mut self, field: &'static str) -> Result<[u8; 8], MetaDecodeError> {
        let (head, rest) = self.rest.split_first_chunk::<8>().ok_or(MetaDecodeError::Truncated { field })?;
        self.rest = rest;
        Ok(*head)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, MetaDecodeError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, MetaDecodeError> {
        self.array(field).map(i64::from_le_bytes)
    }

    fn optional_i64(&mut self, field: &'static str) -> Result<Option<i64>, MetaDecodeError> {
        let (&presence, rest) = self.rest.split_first().ok_or(MetaDecodeError::Truncated { field })?;
        self.rest = rest;
        match presence {
            0 => Ok(None),
            1 => self.i64(field).map(Some),
            found => Err(MetaDecodeError::InvalidPresence { field, found }),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> PartitionMeta {
        PartitionMeta {
            input_offsets: vec![("events".into(), 42), ("crm-ünïcode".into(), 0)],
            changelog_offset: Some(-1),
            stream_time_ms: Some(1_772_366_400_000),
        }
    }

    #[test]
    fn round_trips() {
        for meta in [sample(), PartitionMeta::default()] {
            assert_eq!(PartitionMeta::decode(&meta.encode()), Ok(meta));
        }
        assert_eq!(sample().input_offset("events"), Some(42));
        assert_eq!(sample().input_offset("other"), None);
    }

    #[test]
    fn names_each_corruption() {
        let bytes = sample().encode();
        assert_eq!(PartitionMeta::decode(&[]), Err(MetaDecodeError::Empty));
        assert_eq!(PartitionMeta::decode(&[2]), Err(MetaDecodeError::UnknownFormat { found: 2 }));
        assert!(matches!(PartitionMeta::decode(&bytes[..bytes.len() - 1]), Err(MetaDecodeError::Truncated { .. })));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(PartitionMeta::decode(&long), Err(MetaDecodeError::TrailingBytes { count: 1 }));
        let mut presence = PartitionMeta::default().encode();
        presence[9] = 7;
        assert_eq!(
            PartitionMeta::decode(&presence),
            Err(MetaDecodeError::InvalidPresence { field: "the changelog offset", found: 7 })
        );
        let mut huge_count = vec![META_FORMAT];
        huge_count.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(PartitionMeta::decode(&huge_count), Err(MetaDecodeError::Truncated { .. })));
        let mut bad_topic = vec![META_FORMAT];
        bad_topic.extend_from_slice(&1u64.to_le_bytes());
        bad_topic.extend_from_slice(&1u64.to_le_bytes());
        bad_topic.push(0xff);
        bad_topic.extend_from_slice(&[0; 10]);
        assert_eq!(PartitionMeta::decode(&bad_topic), Err(MetaDecodeError::InvalidTopic { index: 0 }));
    }

    fn any_meta() -> impl Strategy<Value = PartitionMeta> {
        (
            proptest::collection::vec((".{0,40}", any::<i64>()), 0..6),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(input_offsets, changelog_offset, stream_time_ms)| PartitionMeta {
                input_offsets,
                changelog_offset,
                stream_time_ms,
            })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(meta in any_meta()) {
            prop_assert_eq!(PartitionMeta::decode(&meta.encode()), Ok(meta));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = PartitionMeta::decode(&bytes);
        }

        #[test]
        fn decode_of_a_damaged_record_never_panics(meta in any_meta(), at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = meta.encode();
            let at = at % bytes.len();
            bytes[at] = byte;
            if let Ok(decoded) = PartitionMeta::decode(&bytes) {
                // A damaged byte can only land inside a value; the structure still round-trips.
                prop_assert_eq!(PartitionMeta::decode(&decoded.encode()), Ok(decoded));
            }
            let _ = PartitionMeta::decode(&bytes[..at]);
        }
    }
}
