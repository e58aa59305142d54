//! Stable hashes: names of groups, rules and phases in stored state, event-id fingerprints, and the
//! Kafka-compatible key partitioner. All are fixed algorithms, so stored state stays readable across
//! builds and Rust versions.

/// 32-bit FNV-1a of a name: how stored state refers to groups, rules, thresholds and phases.
pub const fn name_key(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}

/// 64-bit FNV-1a of an event id: the fingerprint kept to drop duplicate events.
pub fn id_fingerprint(id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The partition Kafka's Java client (and librdkafka's `murmur2_random`) picks for a key.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's murmur2 variant (seed 0x9747b28c), as in `org.apache.kafka.common.utils.Utils`.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Kafka's UtilsTest / DefaultPartitionerTest.
        assert_eq!(murmur2(b"21"), (-973_932_308i32) as u32);
        assert_eq!(murmur2(b"foobar"), (-790_332_482i32) as u32);
        assert_eq!(murmur2(b"a-little-bit-long-string"), (-985_981_536i32) as u32);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), (-1_486_304_829i32) as u32);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), (-58_897_971i32) as u32);
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(name_key(""), 0x811c_9dc5);
        assert_eq!(name_key("a"), 0xe40c_292c);
        assert_eq!(id_fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
