//! Non-finite steps. A step whose loss or gradient norm is NaN or infinite
//! is skipped — no AdamW update, its moments untouched, the gradients
//! dropped — and logged; `train.max_nonfinite_steps` such steps in a row
//! stop the run with [`Diverged`]. Clipping cannot help here (a NaN norm
//! compares false with the limit) and AdamW would write the NaN into every
//! weight it touches. Nothing non-finite is ever written to disk either:
//! checkpoints and adapters are checked before each write.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

/// A write refused because a tensor is not finite, or could not be read to
/// check it.
#[derive(Debug, thiserror::Error)]
pub enum NonFiniteWrite {
    #[error(
        "refusing to write '{}': tensor '{tensor}' holds NaN or infinite values (the weights diverged)",
        path.display()
    )]
    Tensor { path: PathBuf, tensor: String },
    #[error("cannot check tensor '{tensor}' before writing '{}': {detail}", path.display())]
    Read {
        path: PathBuf,
        tensor: String,
        detail: String,
    },
}

/// Checks every named tensor before `path` is written.
pub fn ensure_finite<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
) -> Result<(), NonFiniteWrite> {
    for (name, t) in tensors {
        let values = t
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| NonFiniteWrite::Read {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                detail: e.to_string(),
            })?;
        if !values.iter().all(|v| v.is_finite()) {
            return Err(NonFiniteWrite::Tensor {
                path: path.to_path_buf(),
                tensor: name.to_string(),
            });
        }
    }
    Ok(())
}

/// The run stops: too many non-finite steps in a row.
#[derive(Debug, thiserror::Error)]
#[error(
    "training stopped at step {step}: the loss or gradient norm was NaN or infinite in {in_a_row} steps in a row (train.max_nonfinite_steps = {limit}); those steps were skipped and did not change the adapter. {}. Lower train.learning_rate or check the samples of those steps ('skipped' lines in metrics.jsonl)",
    last_good.as_ref().map_or("No checkpoint was written yet".to_string(), |p| format!("Last good checkpoint: '{}'", p.display()))
)]
pub struct Diverged {
    /// The 1-based step that reached the limit.
    pub step: u64,
    pub in_a_row: u32,
    pub limit: u32,
    pub last_good: Option<PathBuf>,
}

/// Counts non-finite steps in a row.
#[derive(Debug, Clone, Copy)]
pub struct NonFiniteGuard {
    limit: u32,
    in_a_row: u32,
}

impl NonFiniteGuard {
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            in_a_row: 0,
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// A step that was applied ends the streak.
    pub fn finite(&mut self) {
        self.in_a_row = 0;
    }

    /// A skipped step: how many in a row now, and whether that is the limit.
    pub fn skipped(&mut self) -> (u32, bool) {
        self.in_a_row += 1;
        (self.in_a_row, self.in_a_row >= self.limit)
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepUpdate {
    /// The gradient's global norm before clipping (NaN or infinite when
    /// the step was skipped for it).
    pub grad_norm: f64,
    /// The schedule's learning rate for the step (used or not).
    pub lr: f64,
    /// False: the step was non-finite and skipped.
    pub applied: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_streak_counts_skips_in_a_row_and_resets_on_a_finite_step() {
        let mut g = NonFiniteGuard::new(2);
        assert_eq!(g.skipped(), (1, false));
        g.finite();
        assert_eq!(g.skipped(), (1, false));
        assert_eq!(g.skipped(), (2, true));
    }

    #[test]
    fn a_non_finite_tensor_is_named() {
        let ok = Tensor::from_slice(&[1.0f32, -2.0], 2, &Device::Cpu).unwrap();
        let bad = Tensor::from_slice(&[1.0f32, f32::NEG_INFINITY], 2, &Device::Cpu).unwrap();
        let path = Path::new("/tmp/x.gguf");
        assert!(ensure_finite(path, [("a", &ok)]).is_ok());
        let err = ensure_finite(path, [("a", &ok), ("b", &bad)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'/tmp/x.gguf'") && err.contains("'b'"),
            "{err}"
        );
    }

    #[test]
    fn the_stop_message_names_the_step_and_the_checkpoint() {
        let d = Diverged {
            step: 7,
            in_a_row: 3,
            limit: 3,
            last_good: Some(PathBuf::from("runs/r/checkpoints/step-000005")),
        };
        let msg = d.to_string();
        assert!(msg.starts_with("training stopped at step 7:"), "{msg}");
        assert!(msg.contains("'runs/r/checkpoints/step-000005'"), "{msg}");
        let none = Diverged {
            last_good: None,
            ..d
        };
        assert!(none.to_string().contains("No checkpoint was written yet"));
    }
}
