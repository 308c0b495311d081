//! The PEFT export and import against the row orders the real tools use.
//!
//! A tiny llama is built the way llama.cpp's converter builds one: q/k
//! weights drawn in Hugging Face's order, then permuted with the converter's
//! formula (transcribed here from `convert_hf_to_gguf.py`, independently of
//! the code under test). A LoRA set in the trainer's (GGUF) rows is exported;
//! the PEFT delta applied to the HF weights must equal the trainer's adapted
//! weights mapped back with transformers' formula (`_reverse_permute_weights`).
//! The import goes the other way and must give our own GGUF back bit-exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use her_core::rng::SplitMix64;
use her_gguf::{GgufWriter, tiny_bpe_vocab};
use her_train::lora::read_lora_gguf;
use her_train::peft::import::import_peft;
use her_train::run::RunDir;
use her_train::settings::TrainConfig;
use her_train::train_loop::trainer::Trainer;

const E: usize = 64;
const N_HEAD: usize = 4;
const N_KV: usize = 2;
const HD: usize = 16;
const FF: usize = 128;
const LAYERS: usize = 2;

/// `w.reshape(dims).swapaxes(1, 2).reshape(w.shape)`, as numpy writes it.
fn swap_axes_1_2(w: &Tensor, dims: (usize, usize, usize, usize)) -> Tensor {
    w.reshape(dims)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape(w.shape())
        .unwrap()
}

/// `LlamaModel.permute` of convert_hf_to_gguf.py:
/// `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
fn converter_permute(w: &Tensor, n_head: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    swap_axes_1_2(w, (n_head, 2, rows / n_head / 2, cols))
}

/// transformers' `LlamaTensorProcessor._reverse_permute_weights`:
/// `w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(2, 1).reshape(rows, cols)`.
fn transformers_reverse(w: &Tensor, n_head: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    swap_axes_1_2(w, (n_head, rows / n_head / 2, 2, cols))
}

fn random(rng: &mut SplitMix64, shape: (usize, usize), std: f64) -> Tensor {
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| (rng.normal() * std) as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (values(a), values(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// A tiny llama GGUF whose q/k were converted from HF order; returns the
/// HF-order q/k weights per layer.
fn tiny_llama(path: &Path, seed: u64) -> Vec<(Tensor, Tensor)> {
    let n_vocab = tiny_bpe_vocab().tokens.len();
    let mut rng = SplitMix64::new(seed);
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", "llama")
        .add_string("general.name", "tiny llama (random weights)")
        .add_u32("general.file_type", 0)
        .add_u32("llama.block_count", LAYERS as u32)
        .add_u32("llama.context_length", 512)
        .add_u32("llama.embedding_length", E as u32)
        .add_u32("llama.feed_forward_length", FF as u32)
        .add_u32("llama.attention.head_count", N_HEAD as u32)
        .add_u32("llama.attention.head_count_kv", N_KV as u32)
        .add_u32("llama.rope.dimension_count", HD as u32)
        .add_f32("llama.rope.freq_base", 10_000.0)
        .add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    common::add_tiny_tokenizer(&mut w);
    let add = |w: &mut GgufWriter, name: &str, t: &Tensor| {
        let (rows, cols) = t.dims2().unwrap();
        w.add_tensor_f32(name, &[cols as u64, rows as u64], values(t));
    };
    let emb = random(&mut rng, (n_vocab, E), 0.2);
    add(&mut w, "token_embd.weight", &emb);
    let ones = |n: usize| vec![1.0f32; n];
    let mut hf = Vec::new();
    for b in 0..LAYERS {
        w.add_tensor_f32(&format!("blk.{b}.attn_norm.weight"), &[E as u64], ones(E));
        w.add_tensor_f32(&format!("blk.{b}.ffn_norm.weight"), &[E as u64], ones(E));
        let std = 1.0 / (E as f64).sqrt();
        let q_hf = random(&mut rng, (N_HEAD * HD, E), std);
        let k_hf = random(&mut rng, (N_KV * HD, E), std);
        add(
            &mut w,
            &format!("blk.{b}.attn_q.weight"),
            &converter_permute(&q_hf, N_HEAD),
        );
        add(
            &mut w,
            &format!("blk.{b}.attn_k.weight"),
            &converter_permute(&k_hf, N_KV),
        );
        hf.push((q_hf, k_hf));
        for (name, rows, cols) in [
            ("attn_v", N_KV * HD, E),
            ("attn_output", E, N_HEAD * HD),
            ("ffn_gate", FF, E),
            ("ffn_up", FF, E),
            ("ffn_down", E, FF),
        ] {
            let t = random(&mut rng, (rows, cols), 1.0 / (cols as f64).sqrt());
            add(&mut w, &format!("blk.{b}.{name}.weight"), &t);
        }
    }
    w.add_tensor_f32("output_norm.weight", &[E as u64], ones(E));
    w.write(path).unwrap();
    hf
}

fn settings(targets: &[&str]) -> TrainConfig {
    TrainConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        base: "dequantized".into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        ..TrainConfig::default()
    }
}

/// A trainer on `model` with random (non-zero) B, as if trained, exported;
/// returns it and its run folder.
fn trained_and_exported(model: &Path, run: &Path, targets: &[&str]) -> Trainer {
    let s = settings(targets);
    let trainer = Trainer::new(
        model,
        &s,
        None,
        RunDir::create(run).unwrap(),
        1,
        "test".into(),
    )
    .unwrap();
    for (i, p) in trainer.lora.iter().enumerate() {
        let b = random(
            &mut SplitMix64::new(500 + i as u64),
            p.b.dims2().unwrap(),
            0.3,
        );
        p.b.set(&b).unwrap();
    }
    trainer.export(model).unwrap();
    trainer
}

fn peft_tensors(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu).unwrap()
}

fn peft_key(layer: usize, module: &str, factor: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{module}.lora_{factor}.weight")
}

#[test]
fn peft_delta_on_hf_weights_equals_the_trainers_delta_mapped_back() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama.gguf");
    let hf = tiny_llama(&model, 3);
    let trainer = trained_and_exported(&model, &dir.path().join("run"), &["q", "k", "v"]);
    let peft = peft_tensors(&trainer.run.peft_dir());
    let scale = 8.0 / 4.0;

    // The fixture is what the converter makes: its GGUF q/k are HF's permuted,
    // and transformers' reverse formula gets HF's back.
    for (q_hf, _) in &hf {
        assert_eq!(
            values(&transformers_reverse(
                &converter_permute(q_hf, N_HEAD),
                N_HEAD
            )),
            values(q_hf)
        );
    }
    let mut checked = 0;
    for p in &trainer.lora {
        let module = p.target.peft_name();
        let heads = match module {
            "self_attn.q_proj" => N_HEAD,
            "self_attn.k_proj" => N_KV,
            _ => {
                // v is not permuted: exported as trained.
                assert_eq!(
                    values(&peft[&peft_key(p.layer, module, "B")]),
                    values(p.b.as_tensor())
                );
                continue;
            }
        };
        let w_hf = if heads == N_HEAD {
            &hf[p.layer].0
        } else {
            &hf[p.layer].1
        };
        let (a, b) = (p.a.as_tensor(), p.b.as_tensor());
        // What the trainer (and llama.cpp) computes with: GGUF rows.
        let w_gguf = converter_permute(w_hf, heads);
        let trained = (&w_gguf + (b.matmul(a).unwrap() * scale).unwrap()).unwrap();
        // What PEFT computes with: HF rows plus its own delta.
        let (pa, pb) = (
            &peft[&peft_key(p.layer, module, "A")],
            &peft[&peft_key(p.layer, module, "B")],
        );
        assert_eq!(values(pa), values(a), "lora_A is never reordered");
        let peft_w = (w_hf + (pb.matmul(pa).unwrap() * scale).unwrap()).unwrap();
        let gap = max_abs_diff(&peft_w, &transformers_reverse(&trained, heads));
        assert!(
            gap <= 1e-6,
            "layer {} {module}: PEFT's weight differs by {gap}",
            p.layer
        );
        // Not vacuous: the delta is large next to that tolerance.
        let effect = max_abs_diff(&peft_w, w_hf);
        assert!(effect > 0.1, "layer {} {module}: effect {effect}", p.layer);
        checked += 1;
    }
    assert_eq!(checked, 2 * LAYERS);
}

#[test]
fn adapter_config_names_a_base_and_records_the_lora() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama.gguf");
    tiny_llama(&model, 4);
    let trainer = trained_and_exported(&model, &dir.path().join("run"), &["q", "k"]);
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(trainer.run.peft_dir().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    // The fixture names no source: a placeholder that cannot resolve and says why.
    let base = json["base_model_name_or_path"].as_str().unwrap();
    assert!(
        base.starts_with("UNKNOWN") && base.contains("'tiny-llama.gguf'"),
        "{base}"
    );
    assert_eq!(json["r"], 4);
    assert_eq!(json["lora_alpha"], 8.0);
    assert_eq!(json["lora_dropout"], 0.0);
    assert_eq!(
        json["target_modules"],
        serde_json::json!(["k_proj", "q_proj"])
    );
    assert_eq!(json["peft_type"], "LORA");
    assert!(
        json.get("her_studio").is_none(),
        "PEFT warns on unknown keys"
    );
    // Our own fields ride in the safetensors metadata.
    let bytes = std::fs::read(trainer.run.peft_dir().join("adapter_model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["her_studio.base_gguf"], "tiny-llama.gguf");
    assert_eq!(meta["her_studio.architecture"], "llama");
    assert_eq!(meta["format"], "pt");

    // train.hf_base_model, when set, is what PEFT is told.
    let mut s = settings(&["q"]);
    s.hf_base_model = "HuggingFaceTB/SmolLM2-135M-Instruct".into();
    let run = dir.path().join("run2");
    let t = Trainer::new(
        &model,
        &s,
        None,
        RunDir::create(&run).unwrap(),
        1,
        "x".into(),
    )
    .unwrap();
    t.export(&model).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("peft/adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["base_model_name_or_path"],
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    );
}

#[test]
fn qwen3_rows_are_exported_as_trained() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny().model.clone();
    let trainer = trained_and_exported(&model, &dir.path().join("run"), &["q", "k"]);
    let peft = peft_tensors(&trainer.run.peft_dir());
    for p in &trainer.lora {
        let key = peft_key(p.layer, p.target.peft_name(), "B");
        assert_eq!(values(&peft[&key]), values(p.b.as_tensor()), "{key}");
    }
}

/// Every tensor of a LoRA GGUF, by name, as f32 bits.
fn gguf_bits(path: &Path) -> Vec<(String, Vec<u32>)> {
    let file = read_lora_gguf(path).unwrap();
    file.tensors
        .iter()
        .flat_map(|t| {
            let name = format!("blk.{}.{}", t.layer, t.target.gguf_name());
            let bits = |m: &Tensor| values(m).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            [
                (format!("{name}.a"), bits(&t.a)),
                (format!("{name}.b"), bits(&t.b)),
            ]
        })
        .collect()
}

#[test]
fn importing_our_own_export_gives_the_gguf_back_bit_exactly_and_llama_cpp_loads_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama.gguf");
    tiny_llama(&model, 5);
    let trainer = trained_and_exported(
        &model,
        &dir.path().join("run"),
        &["q", "k", "v", "o", "down"],
    );
    let out = dir.path().join("adapters/imported.gguf");
    let report = import_peft(&trainer.run.peft_dir(), &model, &out, false).unwrap();
    assert!(report.qk_reordered);
    assert_eq!(
        (report.pairs, report.layers, report.rank, report.alpha),
        (10, 2, 4, 8.0)
    );
    assert_eq!(gguf_bits(&out), gguf_bits(&trainer.run.adapter_gguf()));
    let (ours, theirs) = (
        read_lora_gguf(&out).unwrap(),
        read_lora_gguf(&trainer.run.adapter_gguf()).unwrap(),
    );
    assert_eq!(
        (ours.arch, ours.rank, ours.alpha),
        (theirs.arch, theirs.rank, theirs.alpha)
    );

    // llama.cpp checks an adapter's tensors against the model when it loads it.
    let backend = her_engine::local::backend().unwrap();
    let mut llama = llama_cpp_2::model::LlamaModel::load_from_file(
        backend,
        &model,
        &llama_cpp_2::model::params::LlamaModelParams::default(),
    )
    .unwrap();
    llama.lora_adapter_init(&out).unwrap();
}

/// A PEFT folder as PEFT writes it, for the tiny llama: HF-order factors
/// under PEFT's key names (bf16 where `bf16`), with `config` as its
/// adapter_config.json.
fn peft_folder(dir: &Path, config: &serde_json::Value, tensors: &[(String, Tensor)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_vec(config).unwrap(),
    )
    .unwrap();
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    candle_core::safetensors::save(&map, dir.join("adapter_model.safetensors")).unwrap();
    dir.to_path_buf()
}

fn lora_config(r: usize) -> serde_json::Value {
    serde_json::json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 16,
        "lora_dropout": 0.05, "bias": "none", "target_modules": ["q_proj", "k_proj", "v_proj"],
        "use_dora": false, "use_rslora": false, "rank_pattern": {}, "alpha_pattern": {},
        "modules_to_save": null, "fan_in_fan_out": false, "init_lora_weights": true,
        "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"
    })
}

/// q (both factors bf16), k and v factors for every layer of the tiny llama, rank `r`.
fn hf_factors(r: usize, n_in: usize) -> Vec<(String, Tensor)> {
    let mut rng = SplitMix64::new(77);
    let mut out = Vec::new();
    for layer in 0..LAYERS {
        for (module, rows) in [
            ("self_attn.q_proj", N_HEAD * HD),
            ("self_attn.k_proj", N_KV * HD),
            ("self_attn.v_proj", N_KV * HD),
        ] {
            let mut a = random(&mut rng, (r, n_in), 0.1);
            let mut b = random(&mut rng, (rows, r), 0.1);
            if module == "self_attn.q_proj" {
                a = a.to_dtype(DType::BF16).unwrap();
                b = b.to_dtype(DType::BF16).unwrap();
            }
            out.push((peft_key(layer, module, "A"), a));
            out.push((peft_key(layer, module, "B"), b));
        }
    }
    out
}

#[test]
fn a_peft_folder_from_elsewhere_imports_with_q_k_permuted_into_gguf_rows() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama.gguf");
    tiny_llama(&model, 6);
    let factors = hf_factors(8, E);
    let mut config = lora_config(8);
    config["use_rslora"] = serde_json::json!(true);
    let folder = peft_folder(&dir.path().join("trl-lora"), &config, &factors);
    let out = dir.path().join("trl-lora.gguf");
    let report = import_peft(&folder, &model, &out, false).unwrap();
    // rsLoRA's lora_alpha/√r written as llama.cpp's alpha/r.
    assert!(
        (report.alpha / 8.0 - 16.0 / 8f64.sqrt()).abs() < 1e-6,
        "{}",
        report.alpha
    );
    assert!(
        report.notes.iter().any(|n| n.contains("rsLoRA")),
        "{:?}",
        report.notes
    );

    let file = read_lora_gguf(&out).unwrap();
    let by_key: HashMap<String, Tensor> = factors
        .into_iter()
        .map(|(k, t)| (k, t.to_dtype(DType::F32).unwrap()))
        .collect();
    assert_eq!(file.tensors.len(), 3 * LAYERS);
    for t in &file.tensors {
        let module = t.target.peft_name();
        let (a, b) = (
            &by_key[&peft_key(t.layer, module, "A")],
            &by_key[&peft_key(t.layer, module, "B")],
        );
        assert_eq!(values(&t.a), values(a), "{module}: lora_A unchanged");
        let want = match module {
            "self_attn.q_proj" => converter_permute(b, N_HEAD),
            "self_attn.k_proj" => converter_permute(b, N_KV),
            _ => b.clone(),
        };
        assert_eq!(values(&t.b), values(&want), "layer {} {module}", t.layer);
    }
    // The trainer reads it too (e.g. as DPO's --init-adapter).
    let mut m = her_train::model::TrainModel::load(
        &model,
        her_train::model::BaseMode::Dequantized,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(m.load_lora_gguf(&out).unwrap().rank, 8);
}

/// Runs the import of a folder built from `config` and `tensors`; returns
/// the error text and checks nothing was written.
fn import_error(config: &serde_json::Value, tensors: &[(String, Tensor)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama.gguf");
    tiny_llama(&model, 7);
    let folder = peft_folder(&dir.path().join("lora"), config, tensors);
    let out = dir.path().join("out/lora.gguf");
    let err = import_peft(&folder, &model, &out, false)
        .unwrap_err()
        .to_string();
    assert!(!out.exists(), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !["tiny-llama.gguf", "lora", "out"].contains(&n.as_str()))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    err
}

#[test]
fn a_folder_for_another_base_is_refused_naming_the_tensor() {
    // Trained for a model with 128-wide hidden states.
    let err = import_error(&lora_config(8), &hf_factors(8, 2 * E));
    assert!(
        err.contains("adapter_model.safetensors")
            && err.contains("blk.0.attn_q.weight")
            && err.contains("128")
            && err.contains("another model"),
        "{err}"
    );
    // A layer the base does not have.
    let mut t = hf_factors(8, E);
    for (k, _) in t.iter_mut() {
        *k = k.replace("layers.1.", "layers.7.");
    }
    let err = import_error(&lora_config(8), &t);
    assert!(err.contains("layer 7") && err.contains("2 layers"), "{err}");
}

#[test]
fn unsupported_settings_and_tensors_are_refused_naming_the_file() {
    let ok = hf_factors(8, E);
    let with = |key: &str, value: serde_json::Value| {
        let mut c = lora_config(8);
        c[key] = value;
        c
    };
    use serde_json::json;
    for (config, says) in [
        (with("use_dora", json!(true)), "DoRA"),
        (with("rank_pattern", json!({"q_proj": 16})), "rank_pattern"),
        (
            with("alpha_pattern", json!({"q_proj": 32})),
            "alpha_pattern",
        ),
        (with("bias", json!("all")), "bias"),
        (with("fan_in_fan_out", json!(true)), "fan_in_fan_out"),
        (
            with("modules_to_save", json!(["lm_head"])),
            "modules_to_save",
        ),
        (
            with("target_modules", json!(["q_proj", "embed_tokens"])),
            "embed_tokens",
        ),
        (with("peft_type", json!("LOHA")), "LOHA"),
    ] {
        let err = import_error(&config, &ok);
        assert!(
            err.contains("adapter_config.json") && err.contains(says),
            "{says}: {err}"
        );
    }
    // Tensors: a head LoRA, a DoRA magnitude, a rank that is not r, a lone factor.
    let mut head = ok.clone();
    head.push((
        "base_model.model.lm_head.lora_A.weight".into(),
        Tensor::zeros((8, E), DType::F32, &Device::Cpu).unwrap(),
    ));
    let mut dora = ok.clone();
    dora.push((
        "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector".into(),
        Tensor::zeros((1, N_HEAD * HD), DType::F32, &Device::Cpu).unwrap(),
    ));
    let lone: Vec<_> = ok
        .iter()
        .filter(|(k, _)| !k.contains("layers.1.self_attn.k_proj.lora_B"))
        .cloned()
        .collect();
    for (tensors, says) in [
        (head, "output head"),
        (dora, "DoRA"),
        (hf_factors(4, E), "r = 8"),
        (lone, "layer 1 self_attn.k_proj needs both"),
    ] {
        let err = import_error(&lora_config(8), &tensors);
        assert!(
            err.contains("adapter_model.safetensors") && err.contains(says),
            "{says}: {err}"
        );
    }
}

#[test]
fn missing_or_oversized_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama.gguf");
    tiny_llama(&model, 8);
    let out = dir.path().join("out.gguf");
    let folder = peft_folder(&dir.path().join("lora"), &lora_config(8), &hf_factors(8, E));

    std::fs::remove_file(folder.join("adapter_model.safetensors")).unwrap();
    std::fs::write(folder.join("adapter_model.bin"), b"pickle").unwrap();
    let err = import_peft(&folder, &model, &out, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adapter_model.safetensors") && err.contains("safe_serialization"),
        "{err}"
    );

    std::fs::remove_file(folder.join("adapter_config.json")).unwrap();
    let err = import_peft(&folder, &model, &out, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adapter_config.json") && err.contains("missing"),
        "{err}"
    );

    // A config past the size limit is refused before it is read.
    let big = serde_json::json!({"peft_type": "LORA", "r": 8, "padding": "x".repeat(2 << 20)});
    std::fs::write(
        folder.join("adapter_config.json"),
        serde_json::to_vec(&big).unwrap(),
    )
    .unwrap();
    let err = import_peft(&folder, &model, &out, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adapter_config.json") && err.contains("limit"),
        "{err}"
    );

    let err = import_peft(&dir.path().join("nowhere"), &model, &out, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nowhere") && err.contains("not a folder"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn an_existing_output_is_replaced_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-llama.gguf");
    tiny_llama(&model, 9);
    let folder = peft_folder(&dir.path().join("lora"), &lora_config(8), &hf_factors(8, E));
    let out = dir.path().join("mine.gguf");
    std::fs::write(&out, b"my own file").unwrap();
    let err = import_peft(&folder, &model, &out, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mine.gguf") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"my own file");
    import_peft(&folder, &model, &out, true).unwrap();
    assert_eq!(read_lora_gguf(&out).unwrap().rank, 8);
}

#[test]
fn a_base_whose_row_order_is_unknown_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("gemma.gguf");
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", "gemma3")
        .add_u32("gemma3.block_count", 2)
        .add_u32("gemma3.attention.head_count", 4);
    w.write(&model).unwrap();
    let folder = peft_folder(&dir.path().join("lora"), &lora_config(8), &hf_factors(8, E));
    let err = import_peft(&folder, &model, &dir.path().join("o.gguf"), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gemma.gguf") && err.contains("'gemma3'"),
        "{err}"
    );
}
