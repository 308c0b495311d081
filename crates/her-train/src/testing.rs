//! Fixtures for the trainers' unit tests: a [`Trainer`] on the tiny random
//! Qwen3, and ways to compare what the objectives compute.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use candle_core::Tensor;

use super::data::{Message, Sample};
use super::optim::Accumulator;
use super::run::RunDir;
use super::train_loop::trainer::Trainer;
use crate::settings::TrainConfig;
use her_core::rng::SplitMix64;

pub struct TinyTrainer {
    /// Holds the model and run folder; removed on drop.
    pub _dir: tempfile::TempDir,
    pub model: PathBuf,
    pub trainer: Trainer,
}

/// Small LoRA settings on the dequantized tiny model, no dropout.
pub fn settings() -> TrainConfig {
    TrainConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        base: "dequantized".into(),
        warmup_steps: 0,
        ..TrainConfig::default()
    }
}

pub fn tiny_trainer(settings: &TrainConfig) -> TinyTrainer {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-qwen3.gguf");
    her_gguf::write_tiny_qwen3(&model, 1234).unwrap();
    let run = RunDir::create(&dir.path().join("run")).unwrap();
    let trainer = Trainer::new(&model, settings, None, run, 100, "test".into()).unwrap();
    TinyTrainer {
        _dir: dir,
        model,
        trainer,
    }
}

/// Sets every LoRA B (zero at a fresh start) to small seeded values, so
/// the policy moves away from where it started.
pub fn perturb(trainer: &Trainer, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for (name, var) in &trainer.params {
        if name.ends_with("lora_b") {
            let n = var.as_tensor().elem_count();
            let v: Vec<f32> = (0..n).map(|_| 0.05 * rng.normal() as f32).collect();
            var.set(&Tensor::from_vec(v, var.as_tensor().shape(), var.device()).unwrap())
                .unwrap();
        }
    }
}

/// A system / user / assistant conversation.
pub fn chat(user: &str, reply: &str) -> Sample {
    let m = |role: &str, content: &str| Message {
        role: role.into(),
        content: content.into(),
    };
    Sample {
        messages: vec![
            m("system", "You are Elizabeth Bennet."),
            m("user", user),
            m("assistant", reply),
        ],
    }
}

/// The largest |a − b| over all gradients, and the largest |a|.
pub fn grad_diff(a: &Accumulator, b: &Accumulator) -> (f32, f32) {
    let (mut diff, mut size) = (0f32, 0f32);
    for (ga, gb) in a.tensors().iter().zip(b.tensors()) {
        let (ga, gb) = (ga.as_ref().unwrap(), gb.as_ref().unwrap());
        let va = ga.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let vb = gb.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (x, y) in va.iter().zip(&vb) {
            diff = diff.max((x - y).abs());
            size = size.max(x.abs());
        }
    }
    (diff, size)
}

/// Asserts that two accumulations hold the same gradients to 1e-5 of the
/// largest one (and that there is a gradient to compare).
pub fn assert_same_gradients(a: &Accumulator, b: &Accumulator) {
    let (diff, size) = grad_diff(a, b);
    assert!(size > 1e-4, "no gradient to compare: {size}");
    assert!(
        diff <= 1e-5 * size.max(1.0),
        "max |Δgrad| {diff} (largest {size})"
    );
}
