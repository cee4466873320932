//! Which partition a record goes to, as Kafka's Java producer decides it: an explicit
//! partition wins; a key picks `murmur2(key) & 0x7fffffff % partitions`; a record without
//! either sticks to one partition until that partition's batch is sent (KIP-480).

/// Kafka's murmur2 hash (MurmurHash2, 32 bits, seed `0x9747b28c`), as its Java client's
/// `Utils.murmur2` computes it: 4-byte little-endian blocks, then the tail.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    // Java computes `seed ^ length` on a 32-bit int.
    let mut h = SEED ^ (length as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner (Java and librdkafka's `murmur2_random`) gives
/// a record with key `key` on a topic of `partitions` partitions:
/// `(murmur2(key) & 0x7fffffff) % partitions`.
///
/// ```
/// let partition = weir_client::murmur2_partition(b"user-42", 6);
/// assert!((0..6).contains(&partition));
/// assert_eq!(partition, weir_client::murmur2_partition(b"user-42", 6));
/// ```
///
/// # Panics
///
/// If `partitions` is 0 or more than `i32::MAX`.
pub fn murmur2_partition(key: &[u8], partitions: usize) -> i32 {
    let partitions = i32::try_from(partitions)
        .ok()
        .filter(|&p| p > 0)
        .expect("a topic has between 1 and i32::MAX partitions");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// A small, fast source of random partition choices for sticky partitioning (not for
/// anything that needs unpredictability).
#[derive(Debug)]
pub(crate) struct Random(u64);

impl Random {
    /// Seeded from the standard library's per-process random hasher keys.
    pub(crate) fn new() -> Random {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Random(hasher.finish() | 1)
    }

    /// A number below `bound` (which must not be 0). xorshift64*.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let value = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (value % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn kafka_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
            // Kafka's rule: the hash made positive, modulo the partition count.
            for partitions in 1..=12 {
                let count = usize::try_from(partitions).unwrap();
                assert_eq!(
                    murmur2_partition(key, count),
                    (expected & 0x7fff_ffff) % partitions
                );
            }
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for key in 0..1000u32 {
            let key = key.to_string();
            let p = murmur2_partition(key.as_bytes(), 7);
            assert!((0..7).contains(&p));
            assert_eq!(p, (murmur2(key.as_bytes()) & 0x7fff_ffff) % 7);
        }
        assert_eq!(murmur2_partition(b"", 1), 0);
    }

    #[test]
    fn random_spreads() {
        let mut random = Random::new();
        let mut seen = [false; 5];
        for _ in 0..200 {
            seen[random.below(5)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
