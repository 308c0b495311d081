//! Parity of the trainer's forward with llama.cpp over every position and
//! the full vocabulary: the tiny Qwen3 (f32) with and without the fixture
//! LoRA, and SmolLM2-135M Q4_1 (llama arch, quantized base) with and
//! without an adapter we export ourselves — which llama.cpp must load and
//! read the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Mutex;

use candle_core::{Device, Tensor};
use her_core::rng::SplitMix64;
use her_train::lora::{LoraSpec, Target, write_lora_gguf};
use her_train::model::{BaseMode, TrainModel};
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

/// One llama.cpp (2 threads) or candle run at a time: they slow each other.
static HEAVY: Mutex<()> = Mutex::new(());

const SMOL_TEXT: &str = "<|im_start|>system\nYou are Elizabeth Bennet of Longbourn, quick-witted and fond of a good laugh.<|im_end|>\n<|im_start|>user\nWhat did you think of Mr. Darcy at the Meryton assembly?<|im_end|>\n<|im_start|>assistant\nHe declared me tolerable, but not handsome enough to tempt him, and then he";

/// llama.cpp's `LLAMA_FLASH_ATTN_TYPE_{AUTO,DISABLED}`.
const FA_AUTO: i32 = -1;
const FA_DISABLED: i32 = 0;

/// llama.cpp context settings of a reference run.
#[derive(Debug, Clone, Copy)]
struct Settings {
    kv: KvCacheType,
    flash_attn: i32,
}

/// What the chat runs: flash attention chosen by llama.cpp (on, on CPU), F16 KV cache.
const CHAT: Settings = Settings {
    kv: KvCacheType::F16,
    flash_attn: FA_AUTO,
};
/// Plain f32 attention. llama.cpp's CPU flash-attention kernel rounds through
/// f16: on the tiny f32 model it alone moves log-softmax by up to 1.3e-2
/// (measured), while with it off candle and llama.cpp differ by 7e-6.
const F32_ATTN: Settings = Settings {
    kv: KvCacheType::F32,
    flash_attn: FA_DISABLED,
};

/// Token ids and full-vocab logits of every position from llama.cpp.
fn llama_logits(
    model_path: &Path,
    adapter: Option<&Path>,
    text: &str,
    max_tokens: usize,
    settings: Settings,
) -> (Vec<i32>, Vec<Vec<f32>>) {
    let backend = her_engine::local::backend().unwrap();
    let mut model =
        LlamaModel::load_from_file(backend, model_path, &LlamaModelParams::default()).unwrap();
    let mut tokens = model.vocab().tokenize(text.as_bytes(), false, true);
    tokens.truncate(max_tokens);
    let n = tokens.len();
    // Adapters need &mut model, so before any context exists.
    let mut adapter = adapter.map(|p| model.lora_adapter_init(p).unwrap());
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n as u32 + 64))
        .with_n_batch(n as u32)
        .with_n_ubatch(n as u32)
        .with_n_threads(2)
        .with_n_threads_batch(2)
        .with_type_k(settings.kv)
        .with_type_v(settings.kv)
        .with_flash_attention_policy(settings.flash_attn);
    let mut ctx = model.new_context(backend, params).unwrap();
    if let Some(a) = adapter.as_mut() {
        ctx.lora_adapter_set(a, 1.0).unwrap();
    }
    let mut batch = LlamaBatch::new(n, 1);
    for (i, &t) in tokens.iter().enumerate() {
        batch.add(t, i as i32, &[0], true).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let logits = (0..n)
        .map(|i| ctx.get_logits_ith(i as i32).to_vec())
        .collect();
    (tokens.iter().map(|t| t.0).collect(), logits)
}

fn candle_logits(model: &TrainModel, ids: &[i32]) -> Vec<Vec<f32>> {
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let ids = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
    model
        .logits(&ids)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let lse = max
        + row
            .iter()
            .map(|&v| (f64::from(v) - max).exp())
            .sum::<f64>()
            .ln();
    row.iter().map(|&v| f64::from(v) - lse).collect()
}

/// A top-1 choice is "clear" when the reference's top two log-probs are at
/// least this far apart; below it, rounding noise may swap them.
const CLEAR_MARGIN: f64 = 0.5;

#[derive(Debug)]
struct Parity {
    /// max |Δ log-softmax| over all positions and tokens.
    max_abs: f64,
    /// Share of positions with the same argmax.
    top1: f64,
    /// The same over positions whose reference top-2 margin ≥ CLEAR_MARGIN.
    clear_top1: f64,
    /// Mean over positions of KL(reference ‖ candidate).
    mean_kl: f64,
}

fn compare(reference: &[Vec<f32>], candidate: &[Vec<f32>]) -> Parity {
    assert_eq!(reference.len(), candidate.len());
    let (mut max_abs, mut same, mut kl) = (0f64, 0usize, 0f64);
    let (mut clear, mut clear_same) = (0usize, 0usize);
    for (r, c) in reference.iter().zip(candidate) {
        assert_eq!(r.len(), c.len(), "vocab sizes differ");
        let (lr, lc) = (log_softmax(r), log_softmax(c));
        let argmax = |v: &[f64]| {
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
        };
        let agree = argmax(&lr) == argmax(&lc);
        same += usize::from(agree);
        let mut top = lr.clone();
        top.sort_by(|a, b| b.total_cmp(a));
        if top[0] - top[1] >= CLEAR_MARGIN {
            clear += 1;
            clear_same += usize::from(agree);
        }
        for (a, b) in lr.iter().zip(&lc) {
            max_abs = max_abs.max((a - b).abs());
            kl += a.exp() * (a - b);
        }
    }
    let n = reference.len() as f64;
    Parity {
        max_abs,
        top1: same as f64 / n,
        clear_top1: clear_same as f64 / clear.max(1) as f64,
        mean_kl: kl / n,
    }
}

fn tiny_text() -> String {
    format!(
        "{}{}",
        common::CHATML_PROMPT,
        " Well, sir — café? 🙂 I think so."
    )
}

#[test]
fn tiny_qwen3_matches_llama_cpp_without_an_adapter() {
    let _guard = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let t = common::tiny();
    let (ids, reference) = llama_logits(&t.model, None, &tiny_text(), 64, F32_ATTN);
    assert!(ids.len() >= 48);
    for mode in [BaseMode::Quantized, BaseMode::Dequantized] {
        let model = TrainModel::load(&t.model, mode, &Device::Cpu).unwrap();
        let p = compare(&reference, &candle_logits(&model, &ids));
        println!(
            "tiny qwen3 {mode:?}, {} tokens, no adapter: {p:?}",
            ids.len()
        );
        assert!(p.max_abs <= 1e-3, "{p:?}");
    }
    // Against the chat's settings the gap is llama.cpp's f16 flash attention.
    let (_, chat) = llama_logits(&t.model, None, &tiny_text(), 64, CHAT);
    let model = TrainModel::load(&t.model, BaseMode::Quantized, &Device::Cpu).unwrap();
    let p = compare(&chat, &candle_logits(&model, &ids));
    println!("tiny qwen3 vs llama.cpp with flash attention: {p:?}");
    assert!(p.max_abs <= 5e-2 && p.top1 == 1.0, "{p:?}");
}

#[test]
fn tiny_qwen3_matches_llama_cpp_with_the_fixture_lora() {
    let _guard = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let t = common::tiny();
    let (ids, reference) = llama_logits(&t.model, Some(&t.lora), &tiny_text(), 64, F32_ATTN);
    let (_, base) = llama_logits(&t.model, None, &tiny_text(), 64, F32_ATTN);
    let mut model = TrainModel::load(&t.model, BaseMode::Quantized, &Device::Cpu).unwrap();
    let spec = model.load_lora_gguf(&t.lora).unwrap();
    assert_eq!((spec.rank, spec.alpha, spec.targets.len()), (4, 8.0, 7));
    let p = compare(&reference, &candle_logits(&model, &ids));
    let effect = compare(&base, &reference);
    println!(
        "tiny qwen3 with the fixture LoRA: {p:?}; the LoRA's own effect in llama.cpp: {effect:?}"
    );
    assert!(p.max_abs <= 1e-3, "{p:?}");
    // The adapter changes the output a lot, so the match is not the base's.
    assert!(effect.max_abs > 0.5, "{effect:?}");
}

fn smol_reference(adapter: Option<&Path>, settings: Settings) -> (Vec<i32>, Vec<Vec<f32>>) {
    llama_logits(&common::smollm2(), adapter, SMOL_TEXT, 64, settings)
}

/// Tolerances for the quantized model, from measurements on this text.
/// llama.cpp multiplies Q4_1/Q8_0 weights with activations it quantizes to
/// 8 bits; candle multiplies the dequantized weights in f32. That is noise of
/// the same size as llama.cpp's own attention kernels: llama.cpp with flash
/// attention vs without gives mean KL 0.0047–0.0055 and 63/64 same top-1,
/// and candle vs llama.cpp gives mean KL 0.0046 and 62/64. Both flips
/// are at near-ties (reference margins 0.08 and 0.33 nats), so top-1 must
/// agree on every position with a margin ≥ 0.5 nats and on ≥ 95% overall,
/// instead of 99% of 64 positions (which would allow no flip at all).
/// On a longer text (233 tokens of the same chat) the figures are top-1
/// 97.9% and mean KL 0.0024 for candle vs llama.cpp, and 97.0% and 0.0028
/// for llama.cpp vs itself: we match it as well as it matches itself.
/// With the weights dequantized to f32 in the GGUF, candle and llama.cpp
/// agree to 6e-5 (`smollm2_llama_arch_in_f32_matches_llama_cpp_exactly`).
fn assert_quantized_parity(p: &Parity) {
    assert!(p.mean_kl <= 0.01, "{p:?}");
    assert!(p.clear_top1 == 1.0, "{p:?}");
    assert!(p.top1 >= 0.95, "{p:?}");
}

#[test]
fn smollm2_q4_1_quantized_base_matches_llama_cpp() {
    let _guard = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let model = TrainModel::load(&common::smollm2(), BaseMode::Quantized, &Device::Cpu).unwrap();
    let (ids, chat) = smol_reference(None, CHAT);
    assert!(ids.len() >= 56);
    let ours = candle_logits(&model, &ids);
    let p = compare(&chat, &ours);
    let (_, plain) = smol_reference(None, F32_ATTN);
    let floor = compare(&chat, &plain);
    println!("smollm2 Q4_1, {} tokens, no adapter: {p:?}", ids.len());
    println!("  llama.cpp vs itself without flash attention: {floor:?}");
    println!(
        "  candle vs llama.cpp without flash attention: {:?}",
        compare(&plain, &ours)
    );
    assert_quantized_parity(&p);
}

#[test]
fn smollm2_with_an_exported_adapter_matches_llama_cpp() {
    let _guard = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smol-lora.gguf");
    let mut model =
        TrainModel::load(&common::smollm2(), BaseMode::Quantized, &Device::Cpu).unwrap();
    let (ids, _) = smol_reference(None, CHAT);
    let base = candle_logits(&model, &ids);

    let spec = LoraSpec {
        rank: 8,
        alpha: 16.0,
        dropout: 0.05,
        targets: Target::ALL.to_vec(),
    };
    model.attach_lora(&spec, 42).unwrap();
    // A keeps PEFT's random init; B gets random values (PEFT's zero B would
    // make the adapter a no-op and the test vacuous).
    for (i, p) in model.lora_params().iter().enumerate() {
        let mut rng = SplitMix64::new(7_000 + i as u64);
        let v: Vec<f32> = (0..p.b.elem_count())
            .map(|_| (rng.normal() * B_STD) as f32)
            .collect();
        p.b.set(&Tensor::from_vec(v, p.b.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }
    write_lora_gguf(&path, "llama", &spec, &model.lora_params()).unwrap();
    let ours = candle_logits(&model, &ids);
    let effect = compare(&base, &ours);

    let (ids2, reference) = smol_reference(Some(&path), CHAT);
    assert_eq!(ids, ids2);
    let p = compare(&reference, &ours);
    println!("smollm2 Q4_1 with the exported LoRA: {p:?}");
    println!("  the LoRA's effect on candle's output: {effect:?}");
    assert_quantized_parity(&p);
    // The adapter moves the model far more than the parity gap: llama.cpp
    // read our file and applied it the same way.
    assert!(effect.mean_kl >= 10.0 * p.mean_kl, "{effect:?} vs {p:?}");
}

/// Std of the random B in the adapter test.
const B_STD: f64 = 0.05;

/// SmolLM2's first 4 blocks dequantized into an F32 GGUF: with the weights'
/// quantization out of the picture, llama.cpp and candle must agree as
/// closely as on the tiny model (llama arch: NORM rope, GQA 9/3, tied head).
fn smollm2_f32_prefix(path: &Path, n_layer: u32) {
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    let src = common::smollm2();
    let mut f = std::fs::File::open(&src).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut meta: Vec<(String, Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in meta.iter_mut() {
        if k == "llama.block_count" {
            *v = Value::U32(n_layer);
        }
        if k == "general.file_type" {
            *v = Value::U32(0);
        }
    }
    let keep = |name: &str| match name.strip_prefix("blk.") {
        Some(rest) => rest
            .split('.')
            .next()
            .and_then(|l| l.parse::<u32>().ok())
            .is_some_and(|l| l < n_layer),
        None => true,
    };
    let mut tensors = Vec::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().filter(|n| keep(n)).collect();
    names.sort();
    for name in names {
        let t = content
            .tensor(&mut f, name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        tensors.push((name.clone(), QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut out, &meta_refs, &tensor_refs).unwrap();
}

#[test]
fn smollm2_llama_arch_in_f32_matches_llama_cpp_exactly() {
    let _guard = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smol-f32-4.gguf");
    smollm2_f32_prefix(&path, 4);
    let (ids, reference) = llama_logits(&path, None, SMOL_TEXT, 64, F32_ATTN);
    let model = TrainModel::load(&path, BaseMode::Quantized, &Device::Cpu).unwrap();
    assert_eq!(model.shape.n_layer, 4);
    let p = compare(&reference, &candle_logits(&model, &ids));
    println!("smollm2 4 layers in f32: {p:?}");
    assert!(p.max_abs <= 1e-3, "{p:?}");
}

/// qwen2: q/k/v biases and an untied output head, with and without an
/// adapter we export.
#[test]
fn tiny_qwen2_with_biases_and_an_untied_head_matches_llama_cpp() {
    let _guard = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-qwen2.gguf");
    common::tiny_qwen2_writer(77).write(&path).unwrap();
    let (ids, reference) = llama_logits(&path, None, &tiny_text(), 64, F32_ATTN);
    let mut model = TrainModel::load(&path, BaseMode::Dequantized, &Device::Cpu).unwrap();
    assert!(model.shape.qkv_bias && !model.shape.tied_output && !model.shape.qk_norm);
    assert_eq!(model.shape.head_dim, 16);
    let p = compare(&reference, &candle_logits(&model, &ids));
    println!("tiny qwen2, no adapter: {p:?}");
    assert!(p.max_abs <= 1e-3, "{p:?}");

    let lora = dir.path().join("tiny-qwen2-lora.gguf");
    let spec = LoraSpec {
        rank: 4,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec![Target::Q, Target::K, Target::O, Target::Down],
    };
    model.attach_lora(&spec, 5).unwrap();
    for (i, p) in model.lora_params().iter().enumerate() {
        let mut rng = SplitMix64::new(9_000 + i as u64);
        let v: Vec<f32> = (0..p.b.elem_count())
            .map(|_| (rng.normal() * 0.3) as f32)
            .collect();
        p.b.set(&Tensor::from_vec(v, p.b.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }
    write_lora_gguf(&lora, "qwen2", &spec, &model.lora_params()).unwrap();
    let (_, with_lora) = llama_logits(&path, Some(&lora), &tiny_text(), 64, F32_ATTN);
    let p = compare(&with_lora, &candle_logits(&model, &ids));
    let effect = compare(&reference, &with_lora);
    println!("tiny qwen2 with an exported LoRA: {p:?}; its effect in llama.cpp: {effect:?}");
    assert!(p.max_abs <= 1e-3, "{p:?}");
    assert!(effect.max_abs > 0.1, "{effect:?}");
}
