//! The trainer tests' fixtures: her-testkit's models (the tiny Qwen3 under
//! this test binary's scratch folder), a tiny Qwen2, a NaN-poisoned copy of
//! the tiny model, and readers of a run's metrics and checkpoints.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

pub use her_testkit::*;

pub fn tiny() -> &'static Tiny {
    tiny_in(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// A run of `model` with `settings` into the folder `run`, from fresh LoRA
/// factors.
pub fn spec(
    model: &Path,
    settings: her_train::settings::TrainConfig,
    run: PathBuf,
    resume: bool,
) -> her_train::train_loop::RunSpec {
    her_train::train_loop::RunSpec {
        model_fingerprint: her_engine::local::fingerprint(model).unwrap(),
        model: model.to_path_buf(),
        settings,
        run,
        resume,
        init_adapter: None,
    }
}

#[allow(unused_imports)]
pub use her_gguf::fixture::{add_tiny_tokenizer, tiny_qwen2_writer};

/// The marker whose token [`poisoned_tiny`] poisons: a control token that
/// no test text uses and that never enters a sequence when the clean model
/// samples it (it ends generation), so RL rollouts stay clean.
pub const POISON: &str = "<|endoftext|>";

/// A copy of the tiny model with its own (untied, clean) output head, in
/// which the input embeddings of [`POISON`]'s tokens are NaN: a sequence
/// that contains the marker gets a NaN loss and NaN gradients, every other
/// sequence is computed as in the tiny model. A NaN batch by construction,
/// with no hook in the trainers. `clean` texts must not share those tokens
/// (checked).
pub fn poisoned_tiny(clean: &[&str]) -> PathBuf {
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    use candle_core::{Device, Tensor};
    let tiny = tiny();
    let tokenizer = her_train::tokenizer::from_gguf(&tiny.model).unwrap();
    let encode = |t: &str| her_train::tokenizer::encode(&tokenizer, t).unwrap();
    let used: std::collections::HashSet<u32> = clean.iter().flat_map(|t| encode(t)).collect();
    let poisoned: Vec<u32> = encode(POISON)
        .into_iter()
        .filter(|id| !used.contains(id))
        .collect();
    assert!(
        !poisoned.is_empty(),
        "every token of the marker is in clean text"
    );
    let mut file = std::fs::File::open(&tiny.model).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|name| {
            let t = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            (name.clone(), t)
        })
        .collect();
    let embd = tensors
        .iter()
        .position(|(n, _)| n == "token_embd.weight")
        .unwrap();
    let clean_embd = tensors[embd].1.dequantize(&Device::Cpu).unwrap();
    let mut rows = clean_embd.to_vec2::<f32>().unwrap();
    for &id in &poisoned {
        rows[id as usize].iter_mut().for_each(|v| *v = f32::NAN);
    }
    let poisoned_embd = Tensor::new(rows, &Device::Cpu).unwrap();
    tensors[embd].1 = QTensor::quantize(&poisoned_embd, GgmlDType::F32).unwrap();
    tensors.push((
        "output.weight".into(),
        QTensor::quantize(&clean_embd, GgmlDType::F32).unwrap(),
    ));
    let path = fixture_dir(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .join(format!("tiny-qwen3-poisoned-{}.gguf", std::process::id()));
    let mut out = std::fs::File::create(&path).unwrap();
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    path
}

/// The lines of a run's metrics.jsonl.
pub fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The steps with a "skipped" line in a run's metrics.jsonl.
pub fn skipped_steps(run: &Path) -> Vec<u64> {
    metrics(run)
        .iter()
        .filter(|v| v["kind"] == "skipped")
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

/// Asserts that checkpoints `step-(k−1)` and `step-k` hold the same LoRA
/// weights and AdamW moments, bit for bit, for every skipped step k > 1
/// (a skipped step changes nothing); returns how many were compared.
pub fn assert_skipped_steps_changed_nothing(run: &Path) -> usize {
    use candle_core::Device;
    let load = |step: u64, file: &str| {
        let path = run.join(format!("checkpoints/step-{step:06}/{file}"));
        let mut named: Vec<(String, Vec<f32>)> =
            candle_core::safetensors::load(&path, &Device::Cpu)
                .unwrap()
                .into_iter()
                .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
                .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    };
    let mut compared = 0;
    for step in skipped_steps(run).into_iter().filter(|s| *s > 1) {
        for file in ["lora.safetensors", "optimizer.safetensors"] {
            let (before, after) = (load(step - 1, file), load(step, file));
            assert!(before == after, "step {step} changed {file}");
            assert!(after.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
        }
        compared += 1;
    }
    compared
}

/// A run ended by `train.max_nonfinite_steps`: its error names the first
/// skipped step, and no adapter was written. Returns that step.
pub fn assert_stopped_at_first_skip(err: &str, run: &Path) -> u64 {
    let step = skipped_steps(run)[0];
    assert!(
        err.starts_with(&format!("training stopped at step {step}:")),
        "{err}"
    );
    assert!(!run.join("adapter.gguf").exists());
    step
}

/// (loss, grad norm) of each step line of a run.
pub fn step_curve(run: &Path) -> Vec<(f64, f64)> {
    metrics(run)
        .iter()
        .filter(|v| v["kind"] == "step")
        .map(|v| {
            (
                v["loss"].as_f64().unwrap(),
                v["grad_norm"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Asserts two runs took the same steps: `steps` of them, losses within
/// 1e-5, gradient norms within 1e-5 relative.
pub fn assert_same_steps(a: &Path, b: &Path, steps: usize) {
    let (one, two) = (step_curve(a), step_curve(b));
    assert_eq!((one.len(), two.len()), (steps, steps));
    for ((l1, g1), (l2, g2)) in one.iter().zip(&two) {
        assert!((l1 - l2).abs() < 1e-5, "{one:?} vs {two:?}");
        assert!((g1 - g2).abs() <= 1e-5 * g1.max(1.0), "{one:?} vs {two:?}");
    }
}

/// Runs the ignored test `probe` of this test binary once per variant, each
/// in its own child process (VmHWM is per process) with `env` set to the
/// variant, and prints the `PROBE` lines they print.
pub fn report_probes(probe: &str, env: &str, variants: &[&str]) {
    for (_, lines) in probe_lines(probe, env, variants) {
        for line in lines {
            println!("{line}");
        }
    }
}

/// [`report_probes`]' runs: each variant with the `PROBE` lines its child
/// printed (from `PROBE` on).
pub fn probe_lines(probe: &str, env: &str, variants: &[&str]) -> Vec<(String, Vec<String>)> {
    let exe = std::env::current_exe().unwrap();
    let mut out_lines = Vec::new();
    for which in variants {
        let out = std::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                probe,
                "--nocapture",
                "--test-threads=1",
            ])
            .env(env, which)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{which}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The harness prints the test name on the same line first.
        let lines = stdout
            .lines()
            .filter_map(|l| l.find("PROBE").map(|i| l[i..].to_owned()))
            .collect();
        out_lines.push(((*which).to_owned(), lines));
    }
    out_lines
}

/// Random ids (b, t) and labels = the next id, the last position masked.
pub fn next_token_batch(
    vocab: usize,
    b: usize,
    t: usize,
    seed: u64,
) -> (candle_core::Tensor, candle_core::Tensor) {
    her_train::parity::next_token_batch(vocab, b, t, seed).unwrap()
}

/// One chat message.
pub fn message(role: &str, content: &str) -> her_train::data::Message {
    her_train::data::Message {
        role: role.into(),
        content: content.into(),
    }
}

/// A system / user / assistant SFT sample for Elizabeth Bennet.
pub fn sample(user: &str, reply: &str) -> her_train::data::Sample {
    her_train::data::Sample {
        messages: vec![
            message("system", "You are Elizabeth Bennet."),
            message("user", user),
            message("assistant", reply),
        ],
    }
}

/// Trains twice with `train(run, batch_size, grad_accum)`: batches of four,
/// then two accumulated micro-batches of two; asserts both took the same
/// `steps` steps.
pub fn assert_accumulation_equals_a_larger_batch(steps: usize, train: impl Fn(&Path, u32, u32)) {
    let dir = tempfile::tempdir().unwrap();
    for (name, batch_size, grad_accum) in [("one", 4, 1), ("two", 2, 2)] {
        train(&dir.path().join(name), batch_size, grad_accum);
    }
    assert_same_steps(&dir.path().join("one"), &dir.path().join("two"), steps);
}

/// How far a bf16 run's step may lie from the f32 run's: 2% of the loss
/// and 10% of the gradient norm. bf16 keeps 8 significant bits (a relative
/// rounding of 2⁻⁹ ≈ 0.2% per value); a pass rounds every activation and
/// dequantized weight, and the error adds up over the layers and the
/// tokens (see tests/train_bf16.rs for the per-matrix figures).
pub const BF16_LOSS_TOL: f64 = 0.02;
pub const BF16_GRAD_NORM_TOL: f64 = 0.1;

/// Trains `steps` steps twice with `train(run, dtype)`: train.dtype
/// "f32", then "bf16" (which runs the portable ops), and asserts each
/// step's loss and gradient norm agree within the bf16 bounds.
pub fn assert_bf16_tracks_f32(steps: usize, train: impl Fn(&Path, &str)) {
    let dir = tempfile::tempdir().unwrap();
    for dtype in ["f32", "bf16"] {
        train(&dir.path().join(dtype), dtype);
    }
    let f32_steps = step_curve(&dir.path().join("f32"));
    let bf16_steps = step_curve(&dir.path().join("bf16"));
    assert_eq!(f32_steps.len(), steps, "{f32_steps:?}");
    assert_eq!(bf16_steps.len(), steps, "{bf16_steps:?}");
    eprintln!("f32 (loss, grad norm) {f32_steps:?}\nbf16 {bf16_steps:?}");
    for ((l32, g32), (l16, g16)) in f32_steps.iter().zip(&bf16_steps) {
        assert!(l16.is_finite() && g16.is_finite(), "{bf16_steps:?}");
        assert!(
            (l32 - l16).abs() <= BF16_LOSS_TOL * l32.abs().max(1.0),
            "loss: f32 {f32_steps:?} vs bf16 {bf16_steps:?}"
        );
        assert!(
            (g32 - g16).abs() <= BF16_GRAD_NORM_TOL * g32.abs().max(1e-3),
            "gradient norm: f32 {f32_steps:?} vs bf16 {bf16_steps:?}"
        );
    }
}
