//! Round-trip and corruption tests for the reader, writer and fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use crate::tokenizer_bpe::HER_TAGS;
use crate::{
    GgmlType, GgufArray, GgufError, GgufValue, GgufWriter, TensorInfo, TinyModelSpec, inspect,
    write_tiny_lora, write_tiny_qwen3,
};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", "test")
        .add_u32("test.u32", 7)
        .add_i32("test.i32", -5)
        .add_f32("test.f32", 0.25)
        .add_bool("test.bool", true)
        .add_string_array("test.strs", vec!["a".into(), "bé".into(), String::new()])
        .add_i32_array("test.i32s", vec![1, -2, 3])
        .add_f32_array("test.f32s", vec![]) // empty arrays keep their type
        .add_u32_array("test.u32s", (0..100).collect())
        .set("test.u8", GgufValue::U8(200))
        .set("test.i64", GgufValue::I64(-1 << 40))
        .set("test.f64", GgufValue::F64(1.5))
        .set(
            "test.nested",
            GgufValue::Array(GgufArray::Array(vec![GgufArray::U16(vec![1, 2])])),
        );
    // 3 floats = 12 bytes → padded to 32; then 40 floats = 160 → 160.
    w.add_tensor_f32("a", &[3], vec![1.0, 2.0, 3.0]);
    w.add_tensor_f32("b", &[8, 5], (0..40).map(|i| i as f32).collect());
    w.add_tensor_f32("c", &[2, 1, 1, 2], vec![0.0; 4]);
    w
}

#[test]
fn round_trip_metadata_and_tensors() {
    let dir = tmp();
    let path = dir.path().join("rt.gguf");
    sample_writer().write(&path).unwrap();
    let f = inspect(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.architecture(), Some("test"));
    assert_eq!(f.get_u32("test.u32"), Some(7));
    assert_eq!(f.get_u32("test.u8"), Some(200));
    assert_eq!(f.get_u32("test.i32"), None, "negative does not fit u32");
    assert_eq!(f.get("test.i32"), Some(&GgufValue::I32(-5)));
    assert_eq!(f.get("test.i64"), Some(&GgufValue::I64(-1 << 40)));
    assert_eq!(f.get_f32("test.f32"), Some(0.25));
    assert_eq!(f.get_f32("test.f64"), Some(1.5));
    assert_eq!(f.get_bool("test.bool"), Some(true));
    assert_eq!(
        f.get_str_array("test.strs").unwrap(),
        &["a".to_string(), "bé".into(), String::new()]
    );
    assert_eq!(
        f.get_array("test.i32s"),
        Some(&GgufArray::I32(vec![1, -2, 3]))
    );
    assert_eq!(f.get_array("test.f32s"), Some(&GgufArray::F32(vec![])));
    assert_eq!(
        f.get("test.nested"),
        Some(&GgufValue::Array(GgufArray::Array(vec![GgufArray::U16(
            vec![1, 2]
        )])))
    );
    assert_eq!(f.metadata_len(), 13);
    assert_eq!(
        f.metadata().next().map(|(k, _)| k),
        Some("general.architecture")
    );

    let t = f.tensors();
    assert_eq!(t.len(), 3);
    assert_eq!(
        (t[0].name.as_str(), t[0].dims.as_slice()),
        ("a", &[3u64][..])
    );
    assert_eq!(t[1].dims, vec![8, 5]);
    assert_eq!(t[2].dims, vec![2, 1, 1, 2]);
    assert!(t.iter().all(|t| t.ggml_type == GgmlType::F32));
    assert_eq!(
        t.iter().map(|t| t.offset).collect::<Vec<_>>(),
        vec![0, 32, 192]
    );
    assert_eq!(t[1].n_bytes, 160);
    assert_eq!(f.parameter_count(), 3 + 40 + 4);
    assert_eq!(f.data_offset() % 32, 0);
    assert_eq!(f.data_len(), 192 + 16);
    // Padding after the last tensor too, as ggml writes it.
    assert_eq!(f.file_size(), f.data_offset() + 224);

    // Tensor data is where the header says it is.
    let bytes = fs::read(&path).unwrap();
    let at = (f.data_offset() + t[1].offset) as usize + 4 * 9;
    assert_eq!(&bytes[at..at + 4], &9.0f32.to_le_bytes());
}

#[test]
fn custom_alignment_round_trip() {
    let dir = tmp();
    let path = dir.path().join("a64.gguf");
    let mut w = sample_writer();
    w.set_alignment(64);
    w.write(&path).unwrap();
    let f = inspect(&path).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    let offs: Vec<u64> = f.tensors().iter().map(|t| t.offset).collect();
    assert_eq!(offs, vec![0, 64, 256]);
}

#[test]
fn writer_rejects_bad_tensors_naming_the_path() {
    let dir = tmp();
    let path = dir.path().join("bad.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor_f32("x", &[2, 2], vec![1.0; 3]);
    let err = w.write(&path).unwrap_err();
    assert!(matches!(err, GgufError::InvalidWrite { .. }));
    assert!(err.to_string().contains("bad.gguf"), "{err}");
    assert!(!path.exists());
    // No temp file left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn write_replaces_existing_file() {
    let dir = tmp();
    let path = dir.path().join("m.gguf");
    fs::write(&path, b"old").unwrap();
    sample_writer().write(&path).unwrap();
    assert!(inspect(&path).is_ok());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn tiny_qwen3_fixture_has_the_llama_cpp_layout() {
    let dir = tmp();
    let path = dir.path().join("tiny.gguf");
    let spec = write_tiny_qwen3(&path, 42).unwrap();
    let f = inspect(&path).unwrap();
    assert_eq!(f.architecture(), Some("qwen3"));
    assert_eq!(f.file_type_name(), Some("ALL_F32"));
    for (k, v) in [
        ("block_count", 2),
        ("context_length", 4096),
        ("embedding_length", 64),
        ("feed_forward_length", 128),
        ("attention.head_count", 4),
        ("attention.head_count_kv", 2),
        ("attention.key_length", 32),
        ("attention.value_length", 32),
    ] {
        assert_eq!(f.arch_u32(k), Some(v), "{k}");
    }
    assert_eq!(f.get_f32("qwen3.rope.freq_base"), Some(1e6));
    assert_eq!(
        f.get_f32("qwen3.attention.layer_norm_rms_epsilon"),
        Some(1e-6)
    );
    assert_eq!(f.get_str("tokenizer.ggml.model"), Some("gpt2"));
    assert_eq!(f.get_str("tokenizer.ggml.pre"), Some("qwen2"));
    assert_eq!(f.get_bool("tokenizer.ggml.add_bos_token"), Some(false));
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len() as u32, spec.n_vocab);
    assert_eq!(tokens[spec.eos_id as usize], "<|im_end|>");
    assert_eq!(tokens[spec.bos_id as usize], "<|endoftext|>");
    assert_eq!(
        f.get_u32("tokenizer.ggml.eos_token_id"),
        Some(spec.special.im_end)
    );
    assert_eq!(
        f.get_u32("tokenizer.ggml.padding_token_id"),
        Some(spec.pad_id)
    );
    assert!(f.get_str_array("tokenizer.ggml.merges").unwrap().len() >= 300);
    match f.get_array("tokenizer.ggml.token_type") {
        Some(GgufArray::I32(v)) => assert_eq!(v.len(), tokens.len()),
        other => panic!("token_type {other:?}"),
    }

    let (e, v) = (64u64, u64::from(spec.n_vocab));
    let dims = |n: &str| f.tensor(n).unwrap().dims.clone();
    assert_eq!(dims("token_embd.weight"), vec![e, v]);
    assert_eq!(dims("output_norm.weight"), vec![e]);
    assert!(f.tensor("output.weight").is_none(), "tied output");
    for b in 0..2 {
        let d = |s: &str| dims(&format!("blk.{b}.{s}.weight"));
        assert_eq!(d("attn_norm"), vec![e]);
        assert_eq!(d("ffn_norm"), vec![e]);
        assert_eq!(d("attn_q"), vec![e, 128]);
        assert_eq!(d("attn_k"), vec![e, 64]);
        assert_eq!(d("attn_v"), vec![e, 64]);
        assert_eq!(d("attn_q_norm"), vec![32]);
        assert_eq!(d("attn_k_norm"), vec![32]);
        assert_eq!(d("attn_output"), vec![128, e]);
        assert_eq!(d("ffn_gate"), vec![e, 128]);
        assert_eq!(d("ffn_up"), vec![e, 128]);
        assert_eq!(d("ffn_down"), vec![128, e]);
    }
    assert_eq!(f.tensors().len(), 2 + 2 * 11);
    assert_eq!(f.tensor_type_summary().get("F32"), Some(&24));
    assert!(f.file_size() < 1 << 20, "tiny: {}", f.file_size());
}

#[test]
fn tiny_qwen3_is_deterministic_per_seed() {
    let dir = tmp();
    let (a, b, c) = (
        dir.path().join("a.gguf"),
        dir.path().join("b.gguf"),
        dir.path().join("c.gguf"),
    );
    let sa = write_tiny_qwen3(&a, 1).unwrap();
    write_tiny_qwen3(&b, 1).unwrap();
    write_tiny_qwen3(&c, 2).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    assert_ne!(fs::read(&a).unwrap(), fs::read(&c).unwrap());
    assert_eq!(sa, TinyModelSpec::tiny_qwen3(1));
}

#[test]
fn lora_fixture_matches_the_model() {
    let dir = tmp();
    let spec = TinyModelSpec::tiny_qwen3(0);
    let path = dir.path().join("lora.gguf");
    write_tiny_lora(&path, &spec, 8, 16.0, 3).unwrap();
    let f = inspect(&path).unwrap();
    assert_eq!(f.architecture(), Some("qwen3"));
    assert_eq!(f.get_str("general.type"), Some("adapter"));
    assert_eq!(f.get_str("adapter.type"), Some("lora"));
    assert_eq!(f.get_f32("adapter.lora.alpha"), Some(16.0));
    assert_eq!(f.tensors().len(), 2 * 7 * 2);
    let dims = |n: &str| f.tensor(n).unwrap().dims.clone();
    assert_eq!(dims("blk.1.attn_q.weight.lora_a"), vec![64, 8]);
    assert_eq!(dims("blk.1.attn_q.weight.lora_b"), vec![8, 128]);
    assert_eq!(dims("blk.0.attn_k.weight.lora_b"), vec![8, 64]);
    assert_eq!(dims("blk.0.attn_output.weight.lora_a"), vec![128, 8]);
    assert_eq!(dims("blk.0.ffn_down.weight.lora_a"), vec![128, 8]);
    assert_eq!(dims("blk.0.ffn_down.weight.lora_b"), vec![8, 64]);

    // B is non-zero.
    let b = f.tensor("blk.0.attn_v.weight.lora_b").unwrap();
    let bytes = fs::read(&path).unwrap();
    let start = (f.data_offset() + b.offset) as usize;
    let vals: Vec<f32> = bytes[start..start + b.n_bytes as usize]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(vals.iter().filter(|v| **v != 0.0).count() == vals.len());
    let mut file = fs::File::open(&path).unwrap();
    assert_eq!(
        f.read_tensor_data(&mut file, b).unwrap(),
        bytes[start..start + b.n_bytes as usize]
    );
    // A tensor described beyond this file's data is refused, not read.
    let foreign = TensorInfo {
        offset: f.data_len(),
        ..b.clone()
    };
    assert!(matches!(
        f.read_tensor_data(&mut file, &foreign),
        Err(GgufError::Malformed { .. })
    ));

    assert!(matches!(
        write_tiny_lora(&path, &spec, 0, 1.0, 0),
        Err(GgufError::InvalidWrite { .. })
    ));
}

#[test]
fn value_display_summarises_arrays() {
    let big = GgufValue::Array(GgufArray::String(vec![String::new(); 49152]));
    assert_eq!(big.to_string(), "[49152 strings]");
    assert_eq!(
        GgufValue::Array(GgufArray::I32(vec![1, 2])).to_string(),
        "[1, 2]"
    );
    assert_eq!(
        GgufValue::Array(GgufArray::F32(vec![0.0; 100])).to_string(),
        "[100 f32]"
    );
    assert_eq!(GgufValue::from("llama").to_string(), "llama");
    assert_eq!(GgufValue::U32(30).to_string(), "30");
}

#[test]
fn her_tags_are_user_defined_tokens() {
    let v = crate::tiny_bpe_vocab();
    for tag in HER_TAGS {
        let id = v.token_id(tag).unwrap() as usize;
        assert_eq!(v.token_types[id], 4, "{tag}");
    }
}

/// The real SmolLM2 model, if it was unpacked (see toolchain.md).
#[test]
fn smollm2_real_model() {
    let path = Path::new("/tmp/smol/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        eprintln!("skipped: {} not present", path.display());
        return;
    }
    let f = inspect(path).unwrap();
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.arch_u32("block_count"), Some(30));
    assert_eq!(f.arch_u32("embedding_length"), Some(576));
    assert_eq!(f.file_type_name(), Some("Q4_1"));
    assert_eq!(f.file_size(), 98_362_432);
    assert!(f.data_offset() + f.data_len() <= f.file_size());
    assert_eq!(
        f.get("tokenizer.ggml.tokens").unwrap().to_string(),
        "[49152 strings]"
    );
    let summary = f.tensor_type_summary();
    assert!(
        summary.get("Q4_1").copied().unwrap_or(0) > 100,
        "{summary:?}"
    );
    let params = f.parameter_count();
    assert!((130_000_000..140_000_000).contains(&params), "{params}");
    eprintln!(
        "smollm2: v{} {} tensors {:?} params {} data_offset {} end {}",
        f.version(),
        f.tensors().len(),
        summary,
        params,
        f.data_offset(),
        f.data_offset() + f.data_len()
    );
}
