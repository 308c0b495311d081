//! The update side of one RL step: the clipped policy-gradient objective
//! with its KL penalty over the step's rollouts, cut into micro-batches, for
//! `rl.updates_per_batch` passes (the loop runs the passes and the AdamW
//! steps; this keeps the log-probs and sums between them).

use std::time::Instant;

use candle_core::Tensor;

use super::RlError;
use super::loss::{ObjectiveInputs, ObjectiveSums, micro_batch_loss};
use crate::data::{Batch, Tokenized, batch};
use crate::settings::RlConfig;
use crate::train_loop::MicroLoss;
use crate::train_loop::trainer::Trainer;

/// A micro-batch of rollouts: the rows and each row's advantage.
pub type RlRows = (Batch, Vec<f64>);

/// Per-token log-prob values of every micro-batch (no graph kept).
fn logprob_values(trainer: &Trainer, batches: &[RlRows]) -> Result<Vec<Vec<f32>>, RlError> {
    batches
        .iter()
        .map(|(b, _)| -> Result<Vec<f32>, RlError> {
            let (ids, labels) = trainer.tensors(b)?;
            let lp = trainer.model.token_logprobs(&ids, &labels)?;
            Ok(lp.detach().flatten_all()?.to_vec1::<f32>()?)
        })
        .collect()
}

/// The step's rollouts as micro-batches of `train.batch_size` rows, each
/// with its rows' advantages.
fn micro_batches(items: &[(Tokenized, f64, usize)], batch_size: usize) -> Vec<RlRows> {
    items
        .chunks(batch_size.max(1))
        .map(|chunk| {
            let rows: Vec<&Tokenized> = chunk.iter().map(|(t, _, _)| t).collect();
            (batch(&rows, 0), chunk.iter().map(|(_, a, _)| *a).collect())
        })
        .collect()
}

/// What the passes of one step need and add up.
pub(super) struct RlUpdate {
    /// The reference policy's per-token log-probs of each micro-batch.
    reference: Vec<Vec<f32>>,
    /// The sampling policy's: the first pass's own values, for the passes after.
    old: Option<Vec<Vec<f32>>>,
    /// This pass's values so far.
    current: Vec<Vec<f32>>,
    /// Completion tokens of the step: every micro-batch divides by them, so
    /// how the rows are cut does not change the loss or the gradients.
    step_tokens: usize,
    pass: u32,
    sums: ObjectiveSums,
    first: ObjectiveSums,
    all: ObjectiveSums,
    /// The first pass's objective (NaN when it was not finite; 0 without rows).
    first_loss: f64,
    /// When the update phase began (tokenizing the rollouts).
    pub began: Instant,
}

/// The update's numbers for the step's line.
pub(super) struct UpdateStats {
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
}

impl RlUpdate {
    /// The micro-batches of the step's kept rollouts (tokens, advantage,
    /// index), and the reference's log-probs of them.
    pub(super) fn new(
        trainer: &Trainer,
        reference: &[Tensor],
        items: &[(Tokenized, f64, usize)],
        batch_size: usize,
        began: Instant,
    ) -> Result<(Self, Vec<RlRows>), RlError> {
        let batches = micro_batches(items, batch_size);
        let reference = match batches.is_empty() {
            true => Vec::new(),
            false => trainer.with_lora(reference, |t| logprob_values(t, &batches))?,
        };
        let update = Self {
            reference,
            old: None,
            current: Vec::new(),
            step_tokens: items.iter().map(|(t, _, _)| t.completion_len()).sum(),
            pass: 0,
            sums: ObjectiveSums::default(),
            first: ObjectiveSums::default(),
            all: ObjectiveSums::default(),
            first_loss: 0.0,
            began,
        };
        Ok((update, batches))
    }

    pub(super) fn begin_pass(&mut self, pass: u32) {
        if pass == 1 {
            self.old = Some(std::mem::take(&mut self.current));
        }
        self.current.clear();
        self.pass = pass;
        self.sums = ObjectiveSums::default();
    }

    /// The objective of micro-batch `index` under the current policy. On the
    /// first pass the current policy is the one that sampled, and its own
    /// values are `old`: the ratio is exactly 1.
    pub(super) fn loss(
        &mut self,
        trainer: &Trainer,
        rl: &RlConfig,
        (b, advantages): &RlRows,
        index: usize,
    ) -> Result<MicroLoss, RlError> {
        let (ids, labels) = trainer.tensors(b)?;
        let logp = trainer.model.token_logprobs(&ids, &labels)?;
        let values = logp.detach().flatten_all()?.to_vec1::<f32>()?;
        let inputs = ObjectiveInputs {
            labels: &b.labels,
            old: self.old.as_ref().map_or(&values, |old| &old[index]),
            reference: &self.reference[index],
            advantages,
            clip_epsilon: rl.clip_epsilon,
            kl_beta: rl.kl_beta,
            step_tokens: self.step_tokens,
        };
        let (loss, part) = micro_batch_loss(&logp, &inputs)?;
        self.sums.add(&part);
        self.current.push(values);
        Ok(MicroLoss {
            loss,
            positions: b.positions,
        })
    }

    /// The pass's objective per token (NaN when a micro-batch's was not finite).
    pub(super) fn pass_loss(&mut self, rl: &RlConfig, complete: bool) -> f64 {
        let tokens = self.sums.tokens.max(1) as f64;
        let loss = match complete {
            true => (-self.sums.surrogate + rl.kl_beta * self.sums.kl) / tokens,
            false => f64::NAN,
        };
        self.all.add(&self.sums);
        if self.pass == 0 {
            (self.first, self.first_loss) = (self.sums, loss);
        }
        loss
    }

    /// The first pass's loss and KL, the clipped share over every pass.
    pub(super) fn stats(&self) -> UpdateStats {
        let tokens = self.first.tokens.max(1) as f64;
        UpdateStats {
            loss: self.first_loss,
            kl: self.first.kl / tokens,
            clip_fraction: self.all.clipped as f64 / self.all.tokens.max(1) as f64,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::optim::Accumulator;
    use crate::testing::{assert_same_gradients, perturb, settings, tiny_trainer};

    /// Rollout-like rows: a prompt and a completion of the tiny vocabulary,
    /// with an advantage each.
    fn items(tokenizer: &tokenizers::Tokenizer) -> Vec<(Tokenized, f64, usize)> {
        let replies = [
            ("Darcy: Do you dance?", "Not with you.", 1.0),
            ("Jane: Well?", "Quite well, thank you.", -0.5),
            ("Lydia: Look!", "A bonnet.", 0.7),
            ("Kitty: Where?", "Gone to Brighton, of course.", -1.2),
        ];
        replies
            .iter()
            .enumerate()
            .map(|(i, (user, reply, a))| {
                let t =
                    crate::data::tokenize(tokenizer, &crate::testing::chat(user, reply)).unwrap();
                (t, *a, i)
            })
            .collect()
    }

    /// Pass `pass` of `update` over `batches` as the loop runs it: each
    /// micro-batch's loss through the backward pass, the gradients summed.
    fn run_pass(
        update: &mut RlUpdate,
        trainer: &Trainer,
        rl: &RlConfig,
        batches: &[RlRows],
        pass: u32,
    ) -> Accumulator {
        update.begin_pass(pass);
        let mut grads = Accumulator::new(trainer.params.len());
        for (i, rows) in batches.iter().enumerate() {
            let micro = update.loss(trainer, rl, rows, i).unwrap();
            let g = trainer.model.backward(&micro.loss).unwrap();
            grads.add(&trainer.params, &g, 1.0).unwrap();
        }
        update.pass_loss(rl, true);
        grads
    }

    /// At a sampling temperature T ≠ 1 the trainer's log-probs are those of
    /// softmax(logits / T) — the distribution llama.cpp sampled — and the
    /// first update's ratio of new to old log-probs is exactly 1; after an
    /// update it is not.
    #[test]
    fn log_probs_are_at_the_sampling_temperature_and_the_first_ratio_is_one() {
        let mut t = tiny_trainer(&settings());
        perturb(&t.trainer, 3);
        let temperature = 0.7;
        t.trainer.model.set_logit_temperature(temperature).unwrap();
        let tokenizer = crate::tokenizer::from_gguf(&t.model).unwrap();
        let items = items(&tokenizer);
        let rl = RlConfig {
            kl_beta: 0.1,
            ..RlConfig::default()
        };
        // The reference: any fixed values do; the current policy's here.
        let reference = t.trainer.snapshot().unwrap();
        let (mut update, batches) =
            RlUpdate::new(&t.trainer, &reference, &items, 2, Instant::now()).unwrap();
        let mut grads = run_pass(&mut update, &t.trainer, &rl, &batches, 0);
        assert_eq!(update.sums.max_ratio_deviation, 0.0);
        // The values are log-softmax(logits / T) at each labelled position.
        for ((b, _), values) in batches.iter().zip(&update.current) {
            let (ids, _) = t.trainer.tensors(b).unwrap();
            let logits = t.trainer.model.logits(&ids).unwrap();
            let logits = logits.flatten_to(1).unwrap().to_vec2::<f32>().unwrap();
            let (mut checked, mut differs) = (0, false);
            for (pos, &label) in b.labels.iter().enumerate() {
                if label < 0 {
                    continue;
                }
                let row: Vec<f64> = logits[pos]
                    .iter()
                    .map(|l| f64::from(*l) / temperature)
                    .collect();
                let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + row.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
                let want = row[label as usize] - lse;
                let got = f64::from(values[pos]);
                assert!((got - want).abs() < 1e-4, "position {pos}: {got} vs {want}");
                let raw: Vec<f64> = logits[pos].iter().map(|l| f64::from(*l)).collect();
                let raw_max = raw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let raw_lse = raw_max + raw.iter().map(|l| (l - raw_max).exp()).sum::<f64>().ln();
                differs |= (got - (raw[label as usize] - raw_lse)).abs() > 1e-2;
                checked += 1;
            }
            assert!(checked > 0 && differs, "T = 1 log-probs would pass too");
        }
        // One update later the policy has moved: the ratio is no longer 1.
        t.trainer.update(&mut grads, 0, 1, 0.0).unwrap();
        run_pass(&mut update, &t.trainer, &rl, &batches, 1);
        assert!(update.sums.max_ratio_deviation > 1e-4, "{:?}", update.sums);
    }

    /// Micro-batches of two rows give the loss and gradients of one batch
    /// of all four (train.batch_size only cuts the work, as grad_accum does).
    #[test]
    fn micro_batches_equal_one_batch_of_all_rollouts() {
        let t = tiny_trainer(&settings());
        let tokenizer = crate::tokenizer::from_gguf(&t.model).unwrap();
        let items = items(&tokenizer);
        let reference = t.trainer.snapshot().unwrap();
        perturb(&t.trainer, 4);
        let rl = RlConfig {
            kl_beta: 0.2,
            ..RlConfig::default()
        };
        let run = |batch_size: usize| {
            let (mut update, batches) =
                RlUpdate::new(&t.trainer, &reference, &items, batch_size, Instant::now()).unwrap();
            let grads = run_pass(&mut update, &t.trainer, &rl, &batches, 0);
            let stats = update.stats();
            (grads, stats.loss, stats.kl)
        };
        let (one, loss1, kl1) = run(4);
        let (two, loss2, kl2) = run(2);
        assert!(kl1 > 0.0, "the policy has drifted from the reference");
        assert!(
            (loss1 - loss2).abs() < 1e-5 && (kl1 - kl2).abs() < 1e-5,
            "{loss1} {loss2}"
        );
        assert_same_gradients(&one, &two);
    }
}
