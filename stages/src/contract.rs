//! The data contract: how the chain turns one data blob into model batches.
//!
//! Batches are produced lazily so that a blob of any size (for example a memory
//! map) is never expanded into token ids all at once.

/// Token id used for padding; its targets contribute nothing to the loss.
pub const PAD_TOKEN: i64 = 256;
/// Token id marking the end of the data, only ever in the final partial chunk.
pub const EOS_TOKEN: i64 = 257;
/// Sequence length of V1.
pub const SEQ_LEN: usize = 1024;
/// Number of sequences per scoring batch on the chain.
pub const BATCH_SIZE: usize = 16;

/// Row-major `[size, seq_len]` arrays ready to become tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub size: usize,
    pub seq_len: usize,
    pub token_ids: Vec<i64>,
    pub targets: Vec<i64>,
    pub positions: Vec<i64>,
}

/// Number of sequences a blob of `len` bytes is cut into.
pub fn num_sequences(len: usize, seq_len: usize) -> usize {
    len.div_ceil(seq_len)
}

/// Number of batches a blob of `len` bytes yields.
pub fn num_batches(len: usize, seq_len: usize, batch_size: usize) -> usize {
    num_sequences(len, seq_len).div_ceil(batch_size)
}

/// Appends sequence `index` of `data` to `batch`.
fn push_sequence(batch: &mut Batch, data: &[u8], index: usize) {
    let seq_len = batch.seq_len;
    let start = index * seq_len;
    let data_len = (data.len() - start).min(seq_len);
    let is_final = start + data_len == data.len();
    // Every non-data slot sits "just after" the last byte, as the chain feeds it.
    let after_last = (start + data_len) as i64;
    let first_token = batch.token_ids.len();

    for i in 0..seq_len {
        if i < data_len {
            batch.token_ids.push(i64::from(data[start + i]));
            batch.positions.push((start + i) as i64);
        } else {
            let token = if is_final && i == data_len {
                EOS_TOKEN
            } else {
                PAD_TOKEN
            };
            batch.token_ids.push(token);
            batch.positions.push(after_last);
        }
    }
    batch
        .targets
        .extend_from_slice(&batch.token_ids[first_token + 1..]);
    batch.targets.push(PAD_TOKEN);
    batch.size += 1;
}

impl Batch {
    /// A batch of chosen sequences, each `(blob, sequence index)` cut by the
    /// contract (positions global within its own blob).
    pub fn of_sequences<'a>(
        seq_len: usize,
        sequences: impl IntoIterator<Item = (&'a [u8], usize)>,
    ) -> Batch {
        let mut batch = Batch {
            size: 0,
            seq_len,
            token_ids: Vec::new(),
            targets: Vec::new(),
            positions: Vec::new(),
        };
        for (data, index) in sequences {
            push_sequence(&mut batch, data, index);
        }
        batch
    }

    /// Replaces positions with 0..seq_len in every sequence, as the reference
    /// Python training does (the chain feeds global offsets).
    pub fn with_local_positions(mut self) -> Batch {
        let seq_len = self.seq_len as i64;
        self.positions = (0..self.size as i64 * seq_len)
            .map(|i| i % seq_len)
            .collect();
        self
    }
}

/// Iterator over the chain's batches of one blob, in order.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    data: &'a [u8],
    seq_len: usize,
    batch_size: usize,
    next_sequence: usize,
}

impl<'a> Batches<'a> {
    pub fn new(data: &'a [u8], seq_len: usize, batch_size: usize) -> Self {
        assert!(
            seq_len > 0 && batch_size > 0,
            "seq_len and batch_size must be positive"
        );
        Self {
            data,
            seq_len,
            batch_size,
            next_sequence: 0,
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let total = num_sequences(self.data.len(), self.seq_len);
        if self.next_sequence >= total {
            return None;
        }
        let end = (self.next_sequence + self.batch_size).min(total);
        let capacity = (end - self.next_sequence) * self.seq_len;
        let mut batch = Batch {
            size: 0,
            seq_len: self.seq_len,
            token_ids: Vec::with_capacity(capacity),
            targets: Vec::with_capacity(capacity),
            positions: Vec::with_capacity(capacity),
        };
        for index in self.next_sequence..end {
            push_sequence(&mut batch, self.data, index);
        }
        self.next_sequence = end;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let total = num_sequences(self.data.len(), self.seq_len);
        let left = total
            .saturating_sub(self.next_sequence)
            .div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// The chain's batches of `data` with V1's sequence length and batch size.
pub fn chain_batches(data: &[u8]) -> Batches<'_> {
    Batches::new(data, SEQ_LEN, BATCH_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8], seq_len: usize, batch: usize) -> Vec<Batch> {
        Batches::new(data, seq_len, batch).collect()
    }

    #[test]
    fn empty_blob_has_no_sequences() {
        assert!(chain_batches(&[]).next().is_none());
        assert_eq!(num_batches(0, SEQ_LEN, BATCH_SIZE), 0);
    }

    #[test]
    fn one_byte_gets_eos_then_pad() {
        let b = &all(&[7], SEQ_LEN, BATCH_SIZE)[0];
        assert_eq!(b.size, 1);
        assert_eq!(&b.token_ids[..3], &[7, EOS_TOKEN, PAD_TOKEN]);
        assert!(b.token_ids[2..].iter().all(|&t| t == PAD_TOKEN));
        assert_eq!(&b.targets[..2], &[EOS_TOKEN, PAD_TOKEN]);
        assert_eq!(b.targets[SEQ_LEN - 1], PAD_TOKEN);
        assert_eq!(b.positions[0], 0);
        assert!(b.positions[1..].iter().all(|&p| p == 1));
    }

    #[test]
    fn exactly_one_full_chunk_has_no_eos() {
        let data: Vec<u8> = (0..SEQ_LEN).map(|i| (i % 251) as u8).collect();
        let batches = all(&data, SEQ_LEN, BATCH_SIZE);
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert!(!b.token_ids.contains(&EOS_TOKEN));
        assert_eq!(b.positions, (0..SEQ_LEN as i64).collect::<Vec<_>>());
        assert_eq!(&b.targets[..SEQ_LEN - 1], &b.token_ids[1..]);
        assert_eq!(b.targets[SEQ_LEN - 1], PAD_TOKEN);
    }

    #[test]
    fn one_byte_past_a_chunk_starts_a_second_sequence_at_its_global_offset() {
        let data = vec![1u8; SEQ_LEN + 1];
        let b = &all(&data, SEQ_LEN, BATCH_SIZE)[0];
        assert_eq!(b.size, 2);
        let second = SEQ_LEN;
        assert!(!b.token_ids[..SEQ_LEN].contains(&EOS_TOKEN));
        assert_eq!(b.token_ids[second], 1);
        assert_eq!(b.token_ids[second + 1], EOS_TOKEN);
        assert_eq!(b.positions[second], SEQ_LEN as i64);
        assert!(b.positions[second + 1..]
            .iter()
            .all(|&p| p == SEQ_LEN as i64 + 1));
        // The first chunk's last target is PAD, not the next chunk's first byte.
        assert_eq!(b.targets[SEQ_LEN - 1], PAD_TOKEN);
    }

    #[test]
    fn sixteen_chunks_fill_one_batch_and_seventeen_spill_into_a_second() {
        let sixteen = all(&vec![3u8; 16 * SEQ_LEN], SEQ_LEN, BATCH_SIZE);
        assert_eq!(sixteen.len(), 1);
        assert_eq!(sixteen[0].size, 16);
        assert!(!sixteen[0].token_ids.contains(&EOS_TOKEN));

        let data = vec![3u8; 16 * SEQ_LEN + 5];
        let seventeen = all(&data, SEQ_LEN, BATCH_SIZE);
        assert_eq!(seventeen.len(), 2);
        assert_eq!(seventeen[1].size, 1);
        let last = &seventeen[1];
        assert_eq!(last.positions[0], 16 * SEQ_LEN as i64);
        assert_eq!(last.token_ids[5], EOS_TOKEN);
        assert_eq!(last.positions[5], 16 * SEQ_LEN as i64 + 5);
        assert_eq!(Batches::new(&data, SEQ_LEN, BATCH_SIZE).len(), 2);
    }

    #[test]
    fn small_shapes_follow_the_same_rules() {
        let b = all(b"abcde", 4, 1);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].token_ids, vec![97, 98, 99, 100]);
        assert_eq!(b[0].targets, vec![98, 99, 100, PAD_TOKEN]);
        assert_eq!(b[1].token_ids, vec![101, EOS_TOKEN, PAD_TOKEN, PAD_TOKEN]);
        assert_eq!(
            b[1].targets,
            vec![EOS_TOKEN, PAD_TOKEN, PAD_TOKEN, PAD_TOKEN]
        );
        assert_eq!(b[1].positions, vec![4, 5, 5, 5]);
    }
}
