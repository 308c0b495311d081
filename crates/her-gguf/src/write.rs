//! Minimal GGUF v3 writer: typed metadata plus F32 tensors, written atomically.

use her_core::fsutil::IoError;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::GgmlType;
use crate::value::{GgufArray, GgufValue};
use crate::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufError, align_up};

const VERSION: u32 = 3;
const ALIGNMENT_KEY: &str = "general.alignment";

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    data: Vec<f32>,
}

/// Collects metadata and F32 tensors, then writes one GGUF v3 file.
///
/// Setting a key twice replaces the value (keys stay in first-set order).
/// Tensors are validated in [`GgufWriter::write`], so errors can name the file.
#[derive(Default)]
pub struct GgufWriter {
    kvs: Vec<(String, GgufValue)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set any metadata value.
    pub fn set(&mut self, key: &str, value: impl Into<GgufValue>) -> &mut Self {
        let value = value.into();
        match self.kvs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.kvs.push((key.to_owned(), value)),
        }
        self
    }

    pub fn add_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.set(key, GgufValue::U32(v))
    }

    pub fn add_i32(&mut self, key: &str, v: i32) -> &mut Self {
        self.set(key, GgufValue::I32(v))
    }

    pub fn add_f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.set(key, GgufValue::F32(v))
    }

    pub fn add_bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.set(key, GgufValue::Bool(v))
    }

    pub fn add_string(&mut self, key: &str, v: &str) -> &mut Self {
        self.set(key, GgufValue::String(v.to_owned()))
    }

    pub fn add_string_array(&mut self, key: &str, v: Vec<String>) -> &mut Self {
        self.set(key, GgufValue::Array(GgufArray::String(v)))
    }

    pub fn add_i32_array(&mut self, key: &str, v: Vec<i32>) -> &mut Self {
        self.set(key, GgufValue::Array(GgufArray::I32(v)))
    }

    pub fn add_u32_array(&mut self, key: &str, v: Vec<u32>) -> &mut Self {
        self.set(key, GgufValue::Array(GgufArray::U32(v)))
    }

    pub fn add_f32_array(&mut self, key: &str, v: Vec<f32>) -> &mut Self {
        self.set(key, GgufValue::Array(GgufArray::F32(v)))
    }

    /// Use a non-default data alignment (stored as `general.alignment`).
    pub fn set_alignment(&mut self, alignment: u32) -> &mut Self {
        self.add_u32(ALIGNMENT_KEY, alignment)
    }

    /// Add an F32 tensor; `dims` in GGUF `ne` order (a PyTorch (out, in)
    /// weight is `[in, out]`), `data` in row-major order of the reversed dims.
    pub fn add_tensor_f32(&mut self, name: &str, dims: &[u64], data: Vec<f32>) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            data,
        });
        self
    }

    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// Write the file atomically: a temp file in the same directory, fsync,
    /// rename over `path`.
    pub fn write(&self, path: &Path) -> Result<(), GgufError> {
        let invalid = |detail: String| GgufError::InvalidWrite {
            path: path.to_path_buf(),
            detail,
        };
        let alignment = self.alignment().map_err(&invalid)?;
        self.validate().map_err(&invalid)?;

        let file_name = path
            .file_name()
            .ok_or_else(|| invalid("the path has no file name".to_owned()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".{}.tmp.{}.{}",
            file_name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let io_err = |action: &'static str| {
            move |cause: io::Error| GgufError::Io(IoError::new(action, path.to_path_buf(), cause))
        };

        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err("create a temp file for"))?;
        let written = self
            .write_body(&mut BufWriter::new(&file), alignment)
            .and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write")(e));
        }
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("rename a temp file onto")(e));
        }
        // Persist the rename itself; not all filesystems allow syncing a dir.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn alignment(&self) -> Result<u64, String> {
        match self.kvs.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            None => Ok(DEFAULT_ALIGNMENT),
            // Capped: padding is written from a zero buffer of this size.
            Some((_, GgufValue::U32(a))) if a.is_power_of_two() && *a <= 1 << 16 => {
                Ok(u64::from(*a))
            }
            Some((_, v)) => Err(format!(
                "'{ALIGNMENT_KEY}' must be a u32 power of two up to 65536, got '{v}'"
            )),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        for t in &self.tensors {
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(format!("tensor name '{}' is empty or repeated", t.name));
            }
            if t.dims.is_empty() || t.dims.len() > 4 {
                return Err(format!(
                    "tensor '{}' has '{}' dims (need 1 to 4)",
                    t.name,
                    t.dims.len()
                ));
            }
            let n = t
                .dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| format!("tensor '{}' dims '{:?}' overflow", t.name, t.dims))?;
            if n != t.data.len() as u64 {
                return Err(format!(
                    "tensor '{}' has dims '{:?}' ('{n}' elements) but '{}' values",
                    t.name,
                    t.dims,
                    t.data.len()
                ));
            }
        }
        Ok(())
    }

    fn write_body(&self, w: &mut impl Write, alignment: u64) -> io::Result<()> {
        let overflow = || io::Error::other("tensor data size overflows");
        let mut pos = 0u64;
        let mut put = |w: &mut dyn Write, bytes: &[u8]| -> io::Result<()> {
            pos += bytes.len() as u64;
            w.write_all(bytes)
        };
        put(w, &GGUF_MAGIC)?;
        put(w, &VERSION.to_le_bytes())?;
        put(w, &(self.tensors.len() as u64).to_le_bytes())?;
        put(w, &(self.kvs.len() as u64).to_le_bytes())?;
        for (key, value) in &self.kvs {
            put(w, &encode_string(key))?;
            put(w, &value.type_id().to_le_bytes())?;
            let mut buf = Vec::new();
            encode_value(&mut buf, value);
            put(w, &buf)?;
        }
        // Offsets are relative to the data section; each tensor starts aligned.
        let mut offset = 0u64;
        for t in &self.tensors {
            put(w, &encode_string(&t.name))?;
            put(w, &(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                put(w, &d.to_le_bytes())?;
            }
            put(w, &GgmlType::F32.id().to_le_bytes())?;
            put(w, &offset.to_le_bytes())?;
            let n_bytes = (t.data.len() as u64).checked_mul(4).ok_or_else(overflow)?;
            offset = offset
                .checked_add(n_bytes)
                .and_then(|o| align_up(o, alignment))
                .ok_or_else(overflow)?;
        }
        let zeros = vec![0u8; alignment as usize];
        let pad = |pos: u64| align_up(pos, alignment).map(|a| (a - pos) as usize);
        let header_pad = pad(pos).ok_or_else(overflow)?;
        w.write_all(&zeros[..header_pad])?;
        // ggml pads after every tensor, including the last.
        for t in &self.tensors {
            let mut buf = Vec::with_capacity(t.data.len() * 4);
            for v in &t.data {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&buf)?;
            let p = pad(buf.len() as u64).ok_or_else(overflow)?;
            w.write_all(&zeros[..p])?;
        }
        w.flush()
    }
}

fn encode_string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + s.len());
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

fn encode_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(u8::from(*x)),
        GgufValue::String(s) => out.extend_from_slice(&encode_string(s)),
        GgufValue::Array(a) => encode_array(out, a),
    }
}

fn encode_array(out: &mut Vec<u8>, a: &GgufArray) {
    out.extend_from_slice(&a.elem_type_id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        GgufArray::U8(v) => each!(v),
        GgufArray::I8(v) => each!(v),
        GgufArray::U16(v) => each!(v),
        GgufArray::I16(v) => each!(v),
        GgufArray::U32(v) => each!(v),
        GgufArray::I32(v) => each!(v),
        GgufArray::U64(v) => each!(v),
        GgufArray::I64(v) => each!(v),
        GgufArray::F32(v) => each!(v),
        GgufArray::F64(v) => each!(v),
        GgufArray::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        GgufArray::String(v) => {
            for s in v {
                out.extend_from_slice(&encode_string(s));
            }
        }
        GgufArray::Array(v) => {
            for inner in v {
                encode_array(out, inner);
            }
        }
    }
}
