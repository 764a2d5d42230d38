//! Kafka's default partitioner: murmur2 of the key bytes for keyed records, a sticky partition
//! for keyless ones.

/// Kafka's 32-bit murmur2 hash (seed `0x9747b28c`), identical to the Java client's
/// `Utils.murmur2`, so keyed records land on the same partition as with Kafka's producer.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Kafka computes the length as a Java int; lengths past i32::MAX cannot occur for keys.
    let len = data.len() as u32;
    let mut h: u32 = SEED ^ len;

    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    let tail = chunks.remainder();
    // Java sign-extends nothing here: it masks each byte with 0xff.
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

/// The partition Kafka's default partitioner picks for `key` among `num_partitions`
/// (`(murmur2(key) & 0x7fffffff) % num_partitions`). Returns 0 when `num_partitions` is 0.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % num_partitions
}

/// Chooses partitions for keyless records: stays on one partition for a whole batch, then
/// moves to the next (round-robin over batches), like Kafka's sticky partitioner.
#[derive(Debug, Clone)]
pub struct StickyPartitioner {
    current: i32,
}

impl StickyPartitioner {
    /// Starts at `start` (callers usually pass something time-derived to spread load).
    pub fn new(start: i32) -> StickyPartitioner {
        StickyPartitioner {
            current: start.max(0),
        }
    }

    /// The partition for the current batch.
    pub fn partition(&self, num_partitions: i32) -> i32 {
        if num_partitions <= 0 {
            0
        } else {
            self.current % num_partitions
        }
    }

    /// Moves on to the next partition (call when a batch is sent).
    pub fn next_batch(&mut self) {
        self.current = self.current.wrapping_add(1).max(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from Apache Kafka's own unit test of `Utils.murmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                *expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// Values published alongside other Kafka-compatible murmur2 ports (each tail length).
    #[test]
    fn murmur2_short_inputs() {
        assert_eq!(murmur2(b"1"), -1993445489);
        assert_eq!(murmur2(b"12"), 126087238);
        assert_eq!(murmur2(b"123"), -267702483);
        assert_eq!(murmur2(b"1234"), -1614185708);
        assert_eq!(murmur2(b"12345"), -1188365604);
        // Checked against org.apache.kafka.common.utils.Utils.murmur2 (kafka-clients 4.1.0).
        assert_eq!(murmur2(b"a"), -1563381124);
        assert_eq!(murmur2(b"d"), 284602193);
        assert_eq!(murmur2(b"hello"), 2132663229);
        assert_eq!(murmur2(b"key-12345"), -952703915);
        assert_eq!(partition_for_key(b"c", 4), 2);
        assert_eq!(partition_for_key(b"key-12345", 4), 1);
    }

    #[test]
    fn partition_is_positive_modulo() {
        // murmur2("21") = -973932308; & 0x7fffffff = 1173551340
        assert_eq!(partition_for_key(b"21", 3), 1173551340 % 3);
        assert_eq!(partition_for_key(b"21", 1), 0);
        assert_eq!(partition_for_key(b"21", 0), 0);
        for n in 1..20 {
            let p = partition_for_key(b"some-key", n);
            assert!((0..n).contains(&p));
        }
    }

    #[test]
    fn sticky_moves_per_batch() {
        let mut s = StickyPartitioner::new(5);
        assert_eq!(s.partition(3), 2);
        assert_eq!(s.partition(3), 2);
        s.next_batch();
        assert_eq!(s.partition(3), 0);
        s.next_batch();
        assert_eq!(s.partition(3), 1);
        assert_eq!(s.partition(0), 0);
    }
}
