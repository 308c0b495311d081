//! The update of one RL step: the clipped policy-gradient objective with
//! its KL penalty over the step's rollouts, cut into micro-batches, for
//! `rl.updates_per_batch` passes, each one AdamW step (or a skipped one).

use super::RlError;
use super::objective::{ObjectiveInputs, ObjectiveSums, micro_batch_loss};
use super::step::StepContext;
use crate::config::RlConfig;
use crate::train::data::{Batch, Tokenized, batch};
use crate::train::optim::Accumulator;
use crate::train::train_loop::trainer::Trainer;

pub(super) struct UpdateStats {
    /// The first pass's objective (NaN when it was not finite).
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub grad_norm: f64,
    pub lr: f64,
}

/// Per-token log-prob values of every micro-batch (no graph kept).
fn logprob_values(
    trainer: &Trainer,
    batches: &[(Batch, Vec<f64>)],
) -> Result<Vec<Vec<f32>>, RlError> {
    batches
        .iter()
        .map(|(b, _)| -> Result<Vec<f32>, RlError> {
            let (ids, labels) = trainer.tensors(b)?;
            let lp = trainer.model.token_logprobs(&ids, &labels)?;
            Ok(lp.detach().flatten_all()?.to_vec1::<f32>()?)
        })
        .collect()
}

/// One gradient pass over a step's micro-batches.
pub(super) struct Pass {
    /// The objective's gradients, summed over the micro-batches.
    pub grads: Accumulator,
    pub sums: ObjectiveSums,
    /// The policy's per-token log-probs of each micro-batch in this pass.
    pub logp: Vec<Vec<f32>>,
    /// False: a micro-batch's loss was NaN or infinite (the rest were not run).
    pub finite: bool,
}

/// The objective over `batches` (micro-batches of `train.batch_size` rows
/// with their advantages) under the current policy. Every micro-batch
/// divides by the step's completion tokens, so how the rows are cut into
/// micro-batches does not change the loss or the gradients. `old` are the
/// sampling policy's log-probs; on the first pass (`None`) the current
/// policy is the one that sampled, and its own values are used: the ratio
/// is exactly 1, and they become `old` for the passes after.
pub(super) fn policy_pass(
    trainer: &Trainer,
    rl: &RlConfig,
    batches: &[(Batch, Vec<f64>)],
    old: Option<&[Vec<f32>]>,
    reference: &[Vec<f32>],
    step_tokens: usize,
) -> Result<Pass, RlError> {
    let mut pass = Pass {
        grads: Accumulator::new(trainer.params.len()),
        sums: ObjectiveSums::default(),
        logp: Vec::with_capacity(batches.len()),
        finite: true,
    };
    for (i, (b, advantages)) in batches.iter().enumerate() {
        let (ids, labels) = trainer.tensors(b)?;
        let logp = trainer.model.token_logprobs(&ids, &labels)?;
        let values = logp.detach().flatten_all()?.to_vec1::<f32>()?;
        let inputs = ObjectiveInputs {
            labels: &b.labels,
            old: old.map_or(&values, |old| &old[i]),
            reference: &reference[i],
            advantages,
            clip_epsilon: rl.clip_epsilon,
            kl_beta: rl.kl_beta,
            step_tokens,
        };
        let (loss, part) = micro_batch_loss(&logp, &inputs)?;
        pass.sums.add(&part);
        pass.logp.push(values);
        if !loss.to_scalar::<f32>()?.is_finite() {
            pass.finite = false;
            break;
        }
        let grads = trainer.model.backward(&loss)?;
        pass.grads.add(&trainer.params, &grads, 1.0)?;
    }
    Ok(pass)
}

/// The step's rollouts as micro-batches of `train.batch_size` rows, each
/// with its rows' advantages.
fn micro_batches(items: &[(Tokenized, f64, usize)], batch_size: usize) -> Vec<(Batch, Vec<f64>)> {
    items
        .chunks(batch_size.max(1))
        .map(|chunk| {
            let rows: Vec<&Tokenized> = chunk.iter().map(|(t, _, _)| t).collect();
            (batch(&rows, 0), chunk.iter().map(|(_, a, _)| *a).collect())
        })
        .collect()
}

/// The update of step `step` on its kept rollouts (tokens, advantage, index).
pub(super) fn update(
    cx: &StepContext<'_>,
    trainer: &mut Trainer,
    items: &[(Tokenized, f64, usize)],
    step: u64,
) -> Result<UpdateStats, RlError> {
    let (s, rl) = (&cx.job.settings, &cx.job.rl);
    let passes = u64::from(rl.updates_per_batch.max(1));
    if items.is_empty() {
        return Ok(UpdateStats {
            loss: 0.0,
            kl: 0.0,
            clip_fraction: 0.0,
            grad_norm: 0.0,
            lr: trainer.schedule.lr(step * passes),
        });
    }
    let step_tokens: usize = items.iter().map(|(t, _, _)| t.completion_len()).sum();
    let batches = micro_batches(items, s.batch_size as usize);
    let reference = trainer.with_lora(cx.reference, |t| logprob_values(t, &batches))?;
    let mut old: Option<Vec<Vec<f32>>> = None;
    let mut first = ObjectiveSums::default();
    let mut all = ObjectiveSums::default();
    let (mut grad_norm, mut lr, mut loss) = (0.0, 0.0, f64::NAN);
    for pass in 0..passes {
        let mut p = policy_pass(
            trainer,
            rl,
            &batches,
            old.as_deref(),
            &reference,
            step_tokens,
        )?;
        let tokens = p.sums.tokens.max(1) as f64;
        let pass_loss = match p.finite {
            true => (-p.sums.surrogate + rl.kl_beta * p.sums.kl) / tokens,
            false => f64::NAN,
        };
        let update = trainer.update(&mut p.grads, step * passes + pass, step + 1, pass_loss)?;
        (grad_norm, lr) = (update.grad_norm, update.lr);
        all.add(&p.sums);
        if pass == 0 {
            (first, loss) = (p.sums, pass_loss);
            old = Some(p.logp);
        }
        if !update.applied {
            // The rest of this batch's passes would start from the same place.
            break;
        }
    }
    let tokens = first.tokens.max(1) as f64;
    Ok(UpdateStats {
        loss,
        kl: first.kl / tokens,
        clip_fraction: all.clipped as f64 / all.tokens.max(1) as f64,
        grad_norm,
        lr,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::train::testing::{assert_same_gradients, perturb, settings, tiny_trainer};

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
                let t = crate::train::data::tokenize(
                    tokenizer,
                    &crate::train::testing::chat(user, reply),
                )
                .unwrap();
                (t, *a, i)
            })
            .collect()
    }

    fn tokens(items: &[(Tokenized, f64, usize)]) -> usize {
        items.iter().map(|(t, _, _)| t.completion_len()).sum()
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
        let tokenizer = crate::train::tokenizer::from_gguf(&t.model).unwrap();
        let items = items(&tokenizer);
        let batches = micro_batches(&items, 2);
        let rl = RlConfig {
            kl_beta: 0.1,
            ..RlConfig::default()
        };
        // The reference: the policy before the perturbation's effect is
        // irrelevant here; any fixed values do.
        let reference = logprob_values(&t.trainer, &batches).unwrap();
        let first =
            policy_pass(&t.trainer, &rl, &batches, None, &reference, tokens(&items)).unwrap();
        assert!(first.finite);
        assert_eq!(first.sums.max_ratio_deviation, 0.0);
        // The values are log-softmax(logits / T) at each labelled position.
        for ((b, _), values) in batches.iter().zip(&first.logp) {
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
        let mut grads = first.grads;
        t.trainer.update(&mut grads, 0, 1, 0.0).unwrap();
        let second = policy_pass(
            &t.trainer,
            &rl,
            &batches,
            Some(&first.logp),
            &reference,
            tokens(&items),
        )
        .unwrap();
        assert!(second.sums.max_ratio_deviation > 1e-4, "{:?}", second.sums);
    }

    /// Micro-batches of two rows give the loss and gradients of one batch
    /// of all four (train.batch_size only cuts the work, as grad_accum does).
    #[test]
    fn micro_batches_equal_one_batch_of_all_rollouts() {
        let t = tiny_trainer(&settings());
        let tokenizer = crate::train::tokenizer::from_gguf(&t.model).unwrap();
        let items = items(&tokenizer);
        let reference_values = t.trainer.snapshot().unwrap();
        perturb(&t.trainer, 4);
        let rl = RlConfig {
            kl_beta: 0.2,
            ..RlConfig::default()
        };
        let run = |batch_size: usize| {
            let batches = micro_batches(&items, batch_size);
            let reference = t
                .trainer
                .with_lora(&reference_values, |tr| logprob_values(tr, &batches))
                .unwrap();
            let first =
                policy_pass(&t.trainer, &rl, &batches, None, &reference, tokens(&items)).unwrap();
            let loss =
                (-first.sums.surrogate + rl.kl_beta * first.sums.kl) / first.sums.tokens as f64;
            (first.grads, loss, first.sums.kl)
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
