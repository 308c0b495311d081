//! Corrupt, truncated and foreign files must give distinct errors, never panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use crate::{GgmlType, GgufError, inspect, write_tiny_qwen3};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn tiny_model_bytes(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("t.gguf");
    write_tiny_qwen3(&path, 5).unwrap();
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn truncated_tensor_data_is_detected() {
    let dir = tmp();
    let (path, bytes) = tiny_model_bytes(dir.path());
    let f = inspect(&path).unwrap();
    // The padding after the last tensor is optional; one more byte is not.
    let end = (f.data_offset() + f.data_len()) as usize;
    fs::write(&path, &bytes[..end]).unwrap();
    assert!(inspect(&path).is_ok());
    fs::write(&path, &bytes[..end - 1]).unwrap();
    let err = inspect(&path).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("t.gguf") && msg.contains("'1' bytes missing"),
        "{msg}"
    );
}

#[test]
fn every_header_cut_is_an_error_not_a_panic() {
    let dir = tmp();
    let (path, bytes) = tiny_model_bytes(dir.path());
    let header_end = inspect(&path).unwrap().data_offset() as usize;
    let cut_path = dir.path().join("cut.gguf");
    // The first 512 cut points, then a stride through the ~18 KB header
    // (vocab arrays), then its last bytes.
    let cuts = (0..512)
        .chain((512..header_end).step_by(7))
        .chain(header_end.saturating_sub(40)..header_end);
    for len in cuts {
        fs::write(&cut_path, &bytes[..len]).unwrap();
        match inspect(&cut_path) {
            Err(GgufError::NotGguf { .. }) if len < 4 => {}
            Err(GgufError::Truncated { .. }) if len >= 4 => {}
            other => panic!("cut at {len}: {other:?}"),
        }
    }
}

#[test]
fn wrong_magic_names_the_path_and_bytes() {
    let dir = tmp();
    let path = dir.path().join("model.whl");
    fs::write(&path, b"PK\x03\x04rest of a zip").unwrap();
    let err = inspect(&path).unwrap_err();
    assert!(matches!(err, GgufError::NotGguf { .. }));
    let msg = err.to_string();
    assert!(msg.contains("model.whl"), "{msg}");
    assert!(msg.contains("'50 4b 03 04'"), "{msg}");
    assert!(msg.contains("is not a GGUF file"), "{msg}");

    fs::write(&path, b"").unwrap();
    assert!(
        inspect(&path)
            .unwrap_err()
            .to_string()
            .contains("it is empty")
    );
}

#[test]
fn missing_file_and_directory_are_io_errors() {
    let dir = tmp();
    let missing = dir.path().join("nope.gguf");
    let err = inspect(&missing).unwrap_err();
    assert!(matches!(err, GgufError::Io(_)));
    assert!(err.to_string().contains("nope.gguf"), "{err}");
    assert_eq!(err.path(), missing);
    assert!(matches!(inspect(dir.path()), Err(GgufError::Io(_))));
}

/// A hand-made header: magic, version, counts, then `rest`.
fn header(version: u32, n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&n_tensors.to_le_bytes());
    v.extend_from_slice(&n_kv.to_le_bytes());
    v.extend_from_slice(rest);
    v
}

fn kv_prefix(key: &str, ty: u32) -> Vec<u8> {
    let mut v = (key.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(&ty.to_le_bytes());
    v
}

fn inspect_bytes(bytes: &[u8]) -> Result<crate::GgufFile, GgufError> {
    let dir = tmp();
    let path = dir.path().join("h.gguf");
    fs::write(&path, bytes).unwrap();
    inspect(&path)
}

#[test]
fn unsupported_versions() {
    for v in [0u32, 1, 4, 99] {
        let err = inspect_bytes(&header(v, 0, 0, &[])).unwrap_err();
        assert!(
            matches!(err, GgufError::UnsupportedVersion { version, big_endian: false, .. } if version == v),
            "{err}"
        );
    }
    let err = inspect_bytes(&header(3u32.swap_bytes(), 0, 0, &[])).unwrap_err();
    assert!(matches!(
        err,
        GgufError::UnsupportedVersion {
            big_endian: true,
            ..
        }
    ));
    assert!(err.to_string().contains("big-endian"));
    // v2 with nothing in it is fine.
    assert_eq!(inspect_bytes(&header(2, 0, 0, &[])).unwrap().version(), 2);
}

#[test]
fn absurd_lengths_are_malformed_not_oom() {
    // String length 2^62.
    let mut rest = kv_prefix("general.name", 8);
    rest.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let err = inspect_bytes(&header(3, 0, 1, &rest)).unwrap_err();
    assert!(matches!(err, GgufError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("general.name"), "{err}");

    // Key length 2^40.
    let rest = (1u64 << 40).to_le_bytes();
    let err = inspect_bytes(&header(3, 0, 1, &rest)).unwrap_err();
    assert!(matches!(err, GgufError::Malformed { .. }), "{err}");

    // Array of 2^60 u64.
    let mut rest = kv_prefix("x", 9);
    rest.extend_from_slice(&10u32.to_le_bytes());
    rest.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let err = inspect_bytes(&header(3, 0, 1, &rest)).unwrap_err();
    assert!(matches!(err, GgufError::Malformed { .. }), "{err}");

    // A plausible array length that the file cannot hold: truncated.
    let mut rest = kv_prefix("x", 9);
    rest.extend_from_slice(&8u32.to_le_bytes());
    rest.extend_from_slice(&(1u64 << 20).to_le_bytes());
    let err = inspect_bytes(&header(3, 0, 1, &rest)).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");

    // Tensor and metadata counts.
    for (t, k) in [(u64::MAX, 0), (0, u64::MAX)] {
        let err = inspect_bytes(&header(3, t, k, &[])).unwrap_err();
        assert!(matches!(err, GgufError::Malformed { .. }), "{err}");
    }

    // Unknown value type and too many dims.
    let err = inspect_bytes(&header(3, 0, 1, &kv_prefix("x", 13))).unwrap_err();
    assert!(matches!(err, GgufError::Malformed { .. }), "{err}");
    let mut rest = 1u64.to_le_bytes().to_vec();
    rest.extend_from_slice(b"t");
    rest.extend_from_slice(&5u32.to_le_bytes());
    let err = inspect_bytes(&header(3, 1, 0, &rest)).unwrap_err();
    assert!(matches!(err, GgufError::Malformed { .. }), "{err}");
}

fn one_tensor(ty: u32, dims: &[u64], offset: u64) -> Vec<u8> {
    let mut rest = 1u64.to_le_bytes().to_vec();
    rest.extend_from_slice(b"t");
    rest.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        rest.extend_from_slice(&d.to_le_bytes());
    }
    rest.extend_from_slice(&ty.to_le_bytes());
    rest.extend_from_slice(&offset.to_le_bytes());
    header(3, 1, 0, &rest)
}

#[test]
fn tensor_types_and_sizes() {
    // Q4_1: 64 elements = 2 blocks of 20 bytes; file must hold 40 data bytes.
    let mut bytes = one_tensor(3, &[64, 2], 0);
    let data_offset = bytes.len().div_ceil(32) * 32;
    bytes.resize(data_offset + 80, 0);
    let f = inspect_bytes(&bytes).unwrap();
    let t = &f.tensors()[0];
    assert_eq!((t.ggml_type, t.n_bytes), (GgmlType::Q4_1, 80));
    assert_eq!(f.tensor_type_summary().get("Q4_1"), Some(&1));
    bytes.truncate(data_offset + 79);
    assert!(matches!(
        inspect_bytes(&bytes),
        Err(GgufError::Truncated { .. })
    ));

    let err = inspect_bytes(&one_tensor(4, &[32], 0)).unwrap_err();
    assert!(
        matches!(err, GgufError::UnknownTensorType { type_id: 4, .. }),
        "{err}"
    );
    // Row not a whole number of blocks; misaligned offset.
    assert!(matches!(
        inspect_bytes(&one_tensor(2, &[33], 0)),
        Err(GgufError::Malformed { .. })
    ));
    assert!(matches!(
        inspect_bytes(&one_tensor(0, &[1], 4)),
        Err(GgufError::Malformed { .. })
    ));
    assert_eq!(GgmlType::Q6_K.tensor_bytes(&[256, 3]), Some(630));
    assert_eq!(GgmlType::BF16.tensor_bytes(&[10]), Some(20));
}
