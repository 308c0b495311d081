//! Packing and graph-free passes on real models: a batch of packed rows
//! gives the loss and LoRA gradients of its samples run one by one (on the
//! tiny Qwen3 and on SmolLM2's llama architecture, with and without
//! activation checkpointing), and the held-out / reference passes that keep
//! no graph give the values of the tracked ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use candle_core::{Device, Tensor};
use her_core::rng::SplitMix64;
use her_train::data::{Tokenized, batch, packed_batch};
use her_train::lora::{LoraSpec, Target};
use her_train::model::{BaseMode, Segments, TrainModel};

fn tensors(b: &her_train::data::Batch) -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    (
        Tensor::from_slice(&b.ids, (b.rows, b.cols), &dev).unwrap(),
        Tensor::from_slice(&b.labels, (b.rows, b.cols), &dev).unwrap(),
    )
}

/// A model with LoRA r 4 on every projection, B random (so A has
/// gradients too), no dropout: packing changes the layout that dropout
/// masks are drawn over, not the arithmetic.
fn model(path: &std::path::Path, mode: BaseMode) -> TrainModel {
    let mut m = TrainModel::load(path, mode, &Device::Cpu).unwrap();
    let spec = LoraSpec {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: Target::ALL.to_vec(),
    };
    m.attach_lora(&spec, 3).unwrap();
    for (i, p) in m.lora_params().iter().enumerate() {
        let mut rng = SplitMix64::new(500 + i as u64);
        let n = p.b.as_tensor().elem_count();
        let v: Vec<f32> = (0..n).map(|_| (rng.normal() * 0.05) as f32).collect();
        p.b.set(&Tensor::from_vec(v, p.b.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }
    m
}

/// Samples of these lengths with random ids; each learns its second half,
/// and one also an earlier span (as `loss_on = "all"` labels it).
fn samples(vocab: usize, lengths: &[usize]) -> Vec<Tokenized> {
    let mut rng = SplitMix64::new(77);
    lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let ids = (0..n).map(|_| (rng.next_u64() % vocab as u64) as u32);
            let mut t = Tokenized::new(ids.collect(), n / 2);
            if i == 0 {
                t.earlier_turns = std::iter::once(2..5).collect();
            }
            t
        })
        .collect()
}

/// The summed token loss and its LoRA gradients for one batch, by name.
fn summed(m: &TrainModel, b: &her_train::data::Batch) -> (f64, usize, Vec<Vec<f32>>) {
    let (ids, labels) = tensors(b);
    let segments = b
        .is_packed()
        .then(|| Segments::from_lengths(b.cols, &b.sample_lens).unwrap());
    let (loss, n) = m
        .packed_loss(&ids, &labels, segments.as_ref(), true, 0)
        .unwrap();
    // The batch's loss is the mean over its labelled tokens: × n is the sum.
    let sum = (loss * n as f64).unwrap();
    let grads = m.backward(&sum).unwrap();
    let g = m
        .lora_params()
        .iter()
        .flat_map(|p| [p.a.clone(), p.b.clone()])
        .map(|v| {
            grads
                .get(&v)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect();
    (f64::from(sum.to_scalar::<f32>().unwrap()), n, g)
}

/// Packed rows against the same samples one per batch: summed token loss
/// and every LoRA gradient within 1e-5 (relative to the sum's scale).
fn assert_packing_is_exact(m: &mut TrainModel, lengths: &[usize], rows: &[Vec<usize>]) {
    let samples = samples(m.shape.n_vocab, lengths);
    let packed_rows: Vec<Vec<&Tokenized>> = rows
        .iter()
        .map(|r| r.iter().map(|&i| &samples[i]).collect())
        .collect();
    let packed = packed_batch(&packed_rows, 0);
    assert!(packed.is_packed());
    for checkpointing in [false, true] {
        m.set_activation_checkpointing(checkpointing);
        let (sum, n, grads) = summed(m, &packed);
        let (mut sum_alone, mut n_alone) = (0.0, 0);
        let mut grads_alone: Vec<Vec<f32>> = grads.iter().map(|g| vec![0.0; g.len()]).collect();
        for s in &samples {
            let (l, k, g) = summed(m, &batch(&[s], 0));
            sum_alone += l;
            n_alone += k;
            for (acc, g) in grads_alone.iter_mut().zip(g) {
                acc.iter_mut().zip(g).for_each(|(a, b)| *a += b);
            }
        }
        assert_eq!(n, n_alone);
        let loss_diff = (sum - sum_alone).abs() / sum_alone.abs().max(1.0);
        let scale = grads_alone
            .iter()
            .flatten()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(1.0);
        let grad_diff = grads
            .iter()
            .flatten()
            .zip(grads_alone.iter().flatten())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        println!(
            "checkpointing {checkpointing}: summed loss {sum:.4} vs {sum_alone:.4} (relative {loss_diff:.1e}), \
             gradients max |Δ| / max |g| = {grad_diff:.1e} (max |g| {scale:.3})"
        );
        assert!(loss_diff <= 1e-5, "loss {sum} vs {sum_alone}");
        assert!(grad_diff <= 1e-5, "gradients differ by {grad_diff}");
    }
    // The same rows read as one text each (no sample boundaries) give
    // another loss: the comparison above can fail.
    let mut unpacked = packed.clone();
    unpacked.sample_lens = vec![vec![packed.cols]; packed.rows];
    let (sum_unpacked, _, _) = summed(m, &unpacked);
    let (sum, _, _) = summed(m, &packed);
    assert!(
        (sum - sum_unpacked).abs() > 1e-3 * sum.abs(),
        "{sum} vs {sum_unpacked}"
    );
}

#[test]
fn a_packed_batch_equals_its_samples_run_one_by_one_on_the_tiny_qwen3() {
    let mut m = model(&common::tiny().model, BaseMode::Quantized);
    // 71 tokens (70 positions: two row blocks of attention) alone in a row;
    // three short samples in another, then padding.
    assert_packing_is_exact(&mut m, &[9, 23, 71, 14], &[vec![0, 1, 3], vec![2]]);
}

#[test]
fn a_packed_batch_equals_its_samples_run_one_by_one_on_smollm2() {
    // llama: adjacent-pair rope, 9 query heads over 3 KV heads, quantized base.
    let mut m = model(&common::smollm2(), BaseMode::Quantized);
    assert_packing_is_exact(&mut m, &[12, 30, 7, 20], &[vec![0, 2, 3], vec![1]]);
}

/// Held-out and reference passes without a graph: the same values as the
/// tracked pass, and nothing recorded (no op to back-propagate through).
#[test]
fn detached_passes_give_the_tracked_values_and_record_nothing() {
    let m = model(&common::tiny().model, BaseMode::Quantized);
    let samples = samples(m.shape.n_vocab, &[9, 23, 14]);
    let rows: Vec<Vec<&Tokenized>> = vec![vec![&samples[0], &samples[2]], vec![&samples[1]]];
    let b = packed_batch(&rows, 0);
    let (ids, labels) = tensors(&b);
    let segments = Segments::from_lengths(b.cols, &b.sample_lens).unwrap();

    let (loss, n) = m
        .packed_loss(&ids, &labels, Some(&segments), false, 0)
        .unwrap();
    assert!(loss.track_op());
    let (sum, count) = m.nll_sum_detached(&ids, &labels, Some(&segments)).unwrap();
    assert_eq!(count, n);
    let tracked = f64::from(loss.to_scalar::<f32>().unwrap()) * n as f64;
    assert!(
        (sum - tracked).abs() <= 1e-5 * tracked.abs(),
        "{sum} vs {tracked}"
    );

    let single = batch(&[&samples[0], &samples[1]], 0);
    let (ids, labels) = tensors(&single);
    let tracked = m.sequence_logprobs(&ids, &labels).unwrap();
    let detached = m.sequence_logprobs_detached(&ids, &labels).unwrap();
    assert!(tracked.track_op() && !detached.track_op());
    assert_eq!(
        tracked.to_vec1::<f32>().unwrap(),
        detached.to_vec1::<f32>().unwrap()
    );
    let tracked = m.token_logprobs(&ids, &labels).unwrap();
    let detached = m.token_logprobs_detached(&ids, &labels).unwrap();
    assert!(!detached.track_op());
    assert_eq!(
        tracked.to_vec2::<f32>().unwrap(),
        detached.to_vec2::<f32>().unwrap()
    );
    // The LoRA still trains through a tracked pass afterwards.
    let (loss, _) = m.loss(&ids, &labels, true, 0).unwrap();
    let grads = m.backward(&loss).unwrap();
    assert!(
        m.lora_params()
            .iter()
            .all(|p| grads.get(&p.a).is_some() && grads.get(&p.b).is_some())
    );
}
