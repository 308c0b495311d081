//! Cutting tokenized samples into micro-batches: each epoch's seeded order,
//! the micro-batches of an optimizer step, padded rows grouped by length,
//! or several samples packed into each row.

use std::collections::BTreeSet;

use her_core::rng::SplitMix64;

use super::{IGNORE, Tokenized};

/// The sample indices of optimizer step `step` when `n` samples are cut into
/// batches of `batch_size` in each epoch's seeded order.
pub fn step_indices(n: usize, batch_size: usize, seed: u64, step: u64) -> Vec<usize> {
    let batch_size = batch_size.max(1);
    let per_epoch = n.div_ceil(batch_size).max(1) as u64;
    let order = epoch_order(n, seed, step / per_epoch);
    let index = (step % per_epoch) as usize;
    order
        .chunks(batch_size)
        .nth(index)
        .map(<[usize]>::to_vec)
        .unwrap_or_default()
}

/// The micro-batches (sample indices) of optimizer step `step` when each
/// step accumulates `accum` batches of `batch_size`: batches `step · accum`
/// to `step · accum + accum − 1` of the seeded epoch orders.
pub fn step_micro_batches(
    n: usize,
    batch_size: usize,
    seed: u64,
    step: u64,
    accum: u64,
) -> Vec<Vec<usize>> {
    (0..accum.max(1))
        .map(|k| step_indices(n, batch_size, seed, step * accum.max(1) + k))
        .collect()
}

/// A seeded permutation of `0..n` for one epoch.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD90);
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut rng);
    order
}

/// One micro-batch, right-padded: causal attention never looks ahead, so
/// real tokens never see the padding, and padded labels are ignored. A row
/// holds one sample, or several packed end to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub cols: usize,
    /// rows × cols.
    pub ids: Vec<u32>,
    /// rows × cols; `labels[r][t]` is the token after `ids[r][t]` in the
    /// same sample, or IGNORE.
    pub labels: Vec<i64>,
    /// Labelled positions.
    pub tokens: usize,
    /// Positions holding a real token (not padding): what the model reads.
    pub positions: usize,
    /// Per row, the positions each of its samples takes, in order.
    pub sample_lens: Vec<Vec<usize>>,
}

impl Batch {
    /// Whether some row holds more than one sample.
    pub fn is_packed(&self) -> bool {
        self.sample_lens.iter().any(|row| row.len() > 1)
    }
}

/// One sample per row.
pub fn batch(samples: &[&Tokenized], pad: u32) -> Batch {
    let rows: Vec<Vec<&Tokenized>> = samples.iter().map(|s| vec![*s]).collect();
    packed_batch(&rows, pad)
}

/// Each row's samples end to end. A sample of n tokens takes n − 1
/// positions (its last token is only a label), so no position is labelled
/// with the next sample's first token.
pub fn packed_batch(rows: &[Vec<&Tokenized>], pad: u32) -> Batch {
    let width = |row: &Vec<&Tokenized>| row.iter().map(|s| s.positions()).sum::<usize>();
    let cols = rows.iter().map(width).max().unwrap_or(0).max(1);
    let mut ids = vec![pad; rows.len() * cols];
    let mut labels = vec![IGNORE; rows.len() * cols];
    let (mut tokens, mut positions) = (0, 0);
    let mut sample_lens = Vec::with_capacity(rows.len());
    for (r, row) in rows.iter().enumerate() {
        let mut at = r * cols;
        for s in row {
            for t in 0..s.positions() {
                ids[at + t] = s.ids[t];
                if s.is_learned(t + 1) {
                    labels[at + t] = i64::from(s.ids[t + 1]);
                    tokens += 1;
                }
            }
            at += s.positions();
            positions += s.positions();
        }
        sample_lens.push(row.iter().map(|s| s.positions()).collect());
    }
    Batch {
        rows: rows.len(),
        cols,
        ids,
        labels,
        tokens,
        positions,
        sample_lens,
    }
}

/// Samples packed into rows of at most `row_len` positions, best-fit
/// decreasing (TRL's default strategy): longest first, each into the row
/// it fills most tightly, a new row when none has room. Returns each row's
/// sample indices; a sample longer than a row gets one of its own.
pub fn pack_rows(samples: &[Tokenized], row_len: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    // Longest first; equal lengths in index order, so packing is stable.
    order.sort_by_key(|&i| (std::cmp::Reverse(samples[i].positions()), i));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    // (room left, row) of rows that still have room.
    let mut open: BTreeSet<(usize, usize)> = BTreeSet::new();
    for i in order {
        let need = samples[i].positions().max(1);
        match open.range((need, 0)..).next().copied() {
            Some((room, row)) => {
                open.remove(&(room, row));
                rows[row].push(i);
                if room > need {
                    open.insert((room - need, row));
                }
            }
            None => {
                rows.push(vec![i]);
                if row_len > need {
                    open.insert((row_len - need, rows.len() - 1));
                }
            }
        }
    }
    rows
}

/// How an epoch's samples become micro-batches (`train.packing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batching {
    /// `batch_size` samples per micro-batch, one per row, right-padded and
    /// grouped by length.
    Padded,
    /// Rows of several samples (each row's sample indices, packed once),
    /// shuffled each epoch; a micro-batch joins `batch_size` of them into
    /// one sequence without padding (TRL's padding-free packing).
    Packed(Vec<Vec<usize>>),
}

impl Batching {
    pub fn new(samples: &[Tokenized], packing: bool, row_len: usize) -> Self {
        if packing {
            Self::Packed(pack_rows(samples, row_len))
        } else {
            Self::Padded
        }
    }

    /// Micro-batches per epoch of `n` samples.
    pub fn batches_per_epoch(&self, n: usize, batch_size: usize) -> usize {
        let units = match self {
            Self::Padded => n,
            Self::Packed(rows) => rows.len(),
        };
        units.div_ceil(batch_size.max(1))
    }

    /// The micro-batches of one epoch: same (seed, epoch), same batches.
    pub fn epoch(
        &self,
        samples: &[Tokenized],
        batch_size: usize,
        seed: u64,
        epoch: u64,
    ) -> Vec<Batch> {
        match self {
            Self::Padded => epoch_batches(samples, batch_size, 0, seed, epoch),
            Self::Packed(rows) => {
                let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut order: Vec<&Vec<usize>> = rows.iter().collect();
                shuffle(&mut order, &mut rng);
                order
                    .chunks(batch_size.max(1))
                    .map(|group| {
                        let row: Vec<&Tokenized> = group
                            .iter()
                            .flat_map(|row| row.iter().map(|&i| &samples[i]))
                            .collect();
                        packed_batch(&[row], 0)
                    })
                    .collect()
            }
        }
    }
}

/// The batches of one epoch: a seeded shuffle, then samples of similar
/// length grouped (within windows of 16 batches) so little is padding, then
/// the batches shuffled again. Same (seed, epoch), same batches.
pub fn epoch_batches(
    samples: &[Tokenized],
    batch_size: usize,
    pad: u32,
    seed: u64,
    epoch: u64,
) -> Vec<Batch> {
    let batch_size = batch_size.max(1);
    let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..samples.len()).collect();
    shuffle(&mut order, &mut rng);
    let window = batch_size * 16;
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for chunk in order.chunks(window) {
        let mut chunk = chunk.to_vec();
        chunk.sort_by_key(|&i| samples[i].ids.len());
        groups.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
    }
    shuffle(&mut groups, &mut rng);
    groups
        .iter()
        .map(|g| batch(&g.iter().map(|&i| &samples[i]).collect::<Vec<_>>(), pad))
        .collect()
}

fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
