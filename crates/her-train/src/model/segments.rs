//! Samples packed into the rows of a batch.
//!
//! With packing, one row of a (b, t) batch holds several samples end to
//! end. Each must be computed as if it were alone: its tokens attend only
//! to earlier tokens of the same sample (a block-diagonal causal mask) and
//! its positions restart at 0 (what TRL's padding-free packing does with
//! position ids). A row's padding joins its last sample: causal attention
//! never lets a real token see it, and its labels are −100.

use crate::error::TrainError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    t: usize,
    /// Per row, the first position of each sample: 0 first, increasing, < t.
    starts: Vec<Vec<usize>>,
}

impl Segments {
    /// From each row's sample lengths (in positions). A row's lengths must
    /// be non-zero and sum to at most `t`; what is left is padding.
    pub fn from_lengths(t: usize, rows: &[Vec<usize>]) -> Result<Self, TrainError> {
        let bad = |detail: String| TrainError::Input {
            what: "segments",
            detail,
        };
        let mut starts = Vec::with_capacity(rows.len());
        for (r, lengths) in rows.iter().enumerate() {
            if lengths.contains(&0) {
                return Err(bad(format!("row {r} has a sample of length 0")));
            }
            let total: usize = lengths.iter().sum();
            if total > t {
                return Err(bad(format!(
                    "row {r}'s samples take {total} positions, the row has {t}"
                )));
            }
            let mut row = Vec::with_capacity(lengths.len().max(1));
            let mut at = 0;
            for &len in lengths {
                row.push(at);
                at += len;
            }
            if row.is_empty() {
                row.push(0);
            }
            starts.push(row);
        }
        Ok(Self { t, starts })
    }

    /// One sample per row, each from position 0 (no packing).
    pub fn whole(b: usize, t: usize) -> Self {
        Self {
            t,
            starts: vec![vec![0]; b],
        }
    }

    pub fn rows(&self) -> usize {
        self.starts.len()
    }

    /// Positions per row.
    pub fn row_len(&self) -> usize {
        self.t
    }

    /// (first position, length) of each sample of row `r`, covering 0..t
    /// (the last one includes the padding).
    pub fn spans(&self, r: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let starts = self.starts.get(r).map_or(&[][..], Vec::as_slice);
        starts.iter().enumerate().map(move |(i, &s)| {
            let end = starts.get(i + 1).copied().unwrap_or(self.t);
            (s, end - s)
        })
    }

    /// Each token's position inside its sample, row-major (b·t values).
    pub fn positions(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.rows() * self.t);
        for r in 0..self.rows() {
            for (_, len) in self.spans(r) {
                out.extend(0..len as u32);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_restart_per_sample_and_padding_joins_the_last() {
        let s = Segments::from_lengths(6, &[vec![2, 3], vec![6], vec![]]).unwrap_or_else(|e| {
            panic!("{e}");
        });
        assert_eq!(s.spans(0).collect::<Vec<_>>(), vec![(0, 2), (2, 4)]);
        assert_eq!(s.spans(2).collect::<Vec<_>>(), vec![(0, 6)]);
        assert_eq!(
            s.positions(),
            vec![0, 1, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            Segments::whole(3, 6).positions(),
            [0, 1, 2, 3, 4, 5].repeat(3)
        );
    }

    #[test]
    fn rows_that_do_not_fit_are_refused() {
        let err = Segments::from_lengths(4, &[vec![3, 2]]).map(|_| ());
        assert!(err.is_err_and(|e| e.to_string().contains("take 5 positions")));
        let err = Segments::from_lengths(4, &[vec![0, 2]]).map(|_| ());
        assert!(err.is_err_and(|e| e.to_string().contains("length 0")));
    }
}
