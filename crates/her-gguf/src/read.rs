//! GGUF header reader. Reads metadata and tensor infos only; tensor data is
//! never read (models are GBs), its extent is checked against the file size.

use her_core::fsutil::IoError;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::file::{GgufFile, TensorInfo};
use crate::types::GgmlType;
use crate::value::{GgufArray, GgufValue, type_id};
use crate::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufError, align_up};

/// Caps so a corrupt header cannot make us allocate gigabytes.
const MAX_STRING_LEN: u64 = 64 << 20;
/// The spec limits keys to 65535 bytes.
const MAX_KEY_LEN: u64 = u16::MAX as u64;
const MAX_ARRAY_LEN: u64 = 1 << 26;
const MAX_TENSORS: u64 = 1 << 20;
const MAX_KVS: u64 = 1 << 20;
/// GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// llama.cpp does not support nested arrays at all; allow a little nesting
/// but stop a crafted file from recursing deep enough to overflow the stack.
const MAX_ARRAY_DEPTH: u32 = 4;
/// Upper bound for speculative `Vec::with_capacity`; vectors grow past it only
/// as real data is read.
const PREALLOC_MAX: u64 = 1 << 16;

/// Read the header of the GGUF file at `path` and check that the file is long
/// enough to hold all tensor data.
pub fn inspect(path: &Path) -> Result<GgufFile, GgufError> {
    let io_err = |action: &'static str, cause: io::Error| {
        GgufError::Io(IoError::new(action, path.to_path_buf(), cause))
    };
    // A FIFO or device would block or never end: only regular files.
    let (file, len) =
        her_core::fsutil::read::open_regular(path).map_err(|e| io_err("open", e.into()))?;
    let mut r = HeaderReader {
        inner: BufReader::with_capacity(1 << 16, file),
        pos: 0,
        len,
        path,
    };
    r.parse()
}

struct HeaderReader<'a> {
    inner: BufReader<File>,
    pos: u64,
    len: u64,
    path: &'a Path,
}

impl HeaderReader<'_> {
    fn truncated(&self, what: &str) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            detail: format!(
                "the header stops at byte '{}' in the middle of {what}",
                self.len
            ),
        }
    }

    fn malformed(&self, detail: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.to_path_buf(),
            detail,
        }
    }

    /// Fail before allocating if fewer than `n` bytes remain.
    fn ensure(&self, n: u64, what: &str) -> Result<(), GgufError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(self.truncated(what)),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), GgufError> {
        self.ensure(buf.len() as u64, what)?;
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            // The file shrank while we read it.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.truncated(what)),
            Err(cause) => Err(GgufError::Io(IoError::new(
                "read",
                self.path.to_path_buf(),
                cause,
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.read_exact(&mut b, what)?;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn to_usize(&self, n: u64, what: &str) -> Result<usize, GgufError> {
        usize::try_from(n).map_err(|_| self.malformed(format!("{what} is too large ('{n}')")))
    }

    fn string(&mut self, cap: u64, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if len > cap {
            return Err(self.malformed(format!(
                "{what} claims a string length of '{len}' bytes (limit '{cap}')"
            )));
        }
        self.ensure(len, what)?;
        let mut buf = vec![0u8; self.to_usize(len, what)?];
        self.read_exact(&mut buf, what)?;
        // Be lenient with bad UTF-8: this is an inspector, not a validator.
        Ok(String::from_utf8(buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Read `n` fixed-size elements in one go (after checking they fit).
    fn fixed_vec<T, const N: usize>(
        &mut self,
        n: u64,
        what: &str,
        conv: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, GgufError> {
        let total = n
            .checked_mul(N as u64)
            .ok_or_else(|| self.malformed(format!("{what} is too large")))?;
        self.ensure(total, what)?;
        let mut buf = vec![0u8; self.to_usize(total, what)?];
        self.read_exact(&mut buf, what)?;
        Ok(buf
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                conv(a)
            })
            .collect())
    }

    fn value(&mut self, ty: u32, depth: u32, what: &str) -> Result<GgufValue, GgufError> {
        Ok(match ty {
            type_id::U8 => GgufValue::U8(u8::from_le_bytes(self.array(what)?)),
            type_id::I8 => GgufValue::I8(i8::from_le_bytes(self.array(what)?)),
            type_id::U16 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            type_id::I16 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            type_id::U32 => GgufValue::U32(u32::from_le_bytes(self.array(what)?)),
            type_id::I32 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            type_id::U64 => GgufValue::U64(u64::from_le_bytes(self.array(what)?)),
            type_id::I64 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            type_id::F32 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            type_id::F64 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            type_id::BOOL => GgufValue::Bool(self.array::<1>(what)?[0] != 0),
            type_id::STRING => GgufValue::String(self.string(MAX_STRING_LEN, what)?),
            type_id::ARRAY => GgufValue::Array(self.array_value(depth, what)?),
            other => {
                return Err(self.malformed(format!("{what} has unknown value type '{other}'")));
            }
        })
    }

    fn array_value(&mut self, depth: u32, what: &str) -> Result<GgufArray, GgufError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.malformed(format!(
                "{what} nests arrays deeper than '{MAX_ARRAY_DEPTH}' levels"
            )));
        }
        let elem = self.u32(what)?;
        let n = self.u64(what)?;
        if n > MAX_ARRAY_LEN {
            return Err(self.malformed(format!(
                "{what} claims an array of '{n}' elements (limit '{MAX_ARRAY_LEN}')"
            )));
        }
        Ok(match elem {
            type_id::U8 => GgufArray::U8(self.fixed_vec(n, what, u8::from_le_bytes)?),
            type_id::I8 => GgufArray::I8(self.fixed_vec(n, what, i8::from_le_bytes)?),
            type_id::U16 => GgufArray::U16(self.fixed_vec(n, what, u16::from_le_bytes)?),
            type_id::I16 => GgufArray::I16(self.fixed_vec(n, what, i16::from_le_bytes)?),
            type_id::U32 => GgufArray::U32(self.fixed_vec(n, what, u32::from_le_bytes)?),
            type_id::I32 => GgufArray::I32(self.fixed_vec(n, what, i32::from_le_bytes)?),
            type_id::U64 => GgufArray::U64(self.fixed_vec(n, what, u64::from_le_bytes)?),
            type_id::I64 => GgufArray::I64(self.fixed_vec(n, what, i64::from_le_bytes)?),
            type_id::F32 => GgufArray::F32(self.fixed_vec(n, what, f32::from_le_bytes)?),
            type_id::F64 => GgufArray::F64(self.fixed_vec(n, what, f64::from_le_bytes)?),
            type_id::BOOL => GgufArray::Bool(self.fixed_vec(n, what, |b: [u8; 1]| b[0] != 0)?),
            type_id::STRING => {
                // Each string needs at least its 8-byte length.
                self.ensure(n.saturating_mul(8), what)?;
                let mut v = Vec::with_capacity(n.min(PREALLOC_MAX) as usize);
                for _ in 0..n {
                    v.push(self.string(MAX_STRING_LEN, what)?);
                }
                GgufArray::String(v)
            }
            type_id::ARRAY => {
                // Each nested array needs at least its type and length.
                self.ensure(n.saturating_mul(12), what)?;
                let mut v = Vec::with_capacity(n.min(PREALLOC_MAX) as usize);
                for _ in 0..n {
                    v.push(self.array_value(depth + 1, what)?);
                }
                GgufArray::Array(v)
            }
            other => {
                return Err(self.malformed(format!(
                    "{what} is an array of unknown value type '{other}'"
                )));
            }
        })
    }

    fn parse(&mut self) -> Result<GgufFile, GgufError> {
        let path = self.path.to_path_buf();
        let mut magic = [0u8; 4];
        let n = self.len.min(4) as usize;
        self.read_exact(&mut magic[..n], "the magic")?;
        if n < 4 || magic != GGUF_MAGIC {
            return Err(GgufError::NotGguf {
                path,
                found: describe_start(&magic[..n]),
            });
        }
        let version = self.u32("the version")?;
        if version != 2 && version != 3 {
            let swapped = version.swap_bytes();
            return Err(GgufError::UnsupportedVersion {
                path,
                version,
                big_endian: (1..=3).contains(&swapped),
            });
        }
        let n_tensors = self.u64("the tensor count")?;
        if n_tensors > MAX_TENSORS {
            return Err(self.malformed(format!(
                "tensor count '{n_tensors}' exceeds the limit '{MAX_TENSORS}'"
            )));
        }
        let n_kv = self.u64("the metadata count")?;
        if n_kv > MAX_KVS {
            return Err(self.malformed(format!(
                "metadata count '{n_kv}' exceeds the limit '{MAX_KVS}'"
            )));
        }

        let mut kvs: Vec<(String, GgufValue)> = Vec::with_capacity(n_kv.min(1024) as usize);
        let mut seen = HashSet::new();
        for i in 0..n_kv {
            let key = self.string(MAX_KEY_LEN, &format!("metadata key #{i}"))?;
            let what = format!("the value of metadata key '{key}'");
            let ty = self.u32(&what)?;
            let value = self.value(ty, 0, &what)?;
            if !seen.insert(key.clone()) {
                return Err(self.malformed(format!("metadata key '{key}' appears twice")));
            }
            kvs.push((key, value));
        }

        let alignment = match kvs.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_i128().and_then(|a| u64::try_from(a).ok()) {
                Some(a) if a.is_power_of_two() => a,
                _ => {
                    return Err(
                        self.malformed(format!("'general.alignment' is '{v}', not a power of two"))
                    );
                }
            },
        };

        let mut tensors = Vec::with_capacity(n_tensors.min(PREALLOC_MAX) as usize);
        let mut names = HashSet::new();
        for i in 0..n_tensors {
            let tensor = self.tensor_info(i, alignment)?;
            if !names.insert(tensor.name.clone()) {
                return Err(self.malformed(format!("tensor '{}' appears twice", tensor.name)));
            }
            tensors.push(tensor);
        }

        let header_end = self.pos;
        let data_offset = align_up(header_end, alignment)
            .ok_or_else(|| self.malformed("the header size overflows".to_owned()))?;
        let mut data_end = 0u64;
        let mut last = None;
        for t in &tensors {
            let end = t.offset.checked_add(t.n_bytes).ok_or_else(|| {
                self.malformed(format!(
                    "tensor '{}' offset '{}' overflows",
                    t.name, t.offset
                ))
            })?;
            if end > data_end {
                data_end = end;
                last = Some(t.name.as_str());
            }
        }
        if let Some(last) = last {
            let needed = data_offset
                .checked_add(data_end)
                .ok_or_else(|| self.malformed("the tensor data size overflows".to_owned()))?;
            if needed > self.len {
                return Err(GgufError::Truncated {
                    path,
                    detail: format!(
                        "it is '{}' bytes long but tensor '{last}' ends at byte '{needed}' ('{}' bytes missing)",
                        self.len,
                        needed - self.len
                    ),
                });
            }
        }

        Ok(GgufFile {
            path,
            version,
            file_size: self.len,
            alignment,
            data_offset,
            data_end,
            kvs,
            tensors,
        })
    }

    fn tensor_info(&mut self, i: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
        let name = self.string(MAX_KEY_LEN, &format!("the name of tensor #{i}"))?;
        let what = format!("the info of tensor '{name}'");
        let n_dims = self.u32(&what)?;
        if n_dims > MAX_DIMS {
            return Err(self.malformed(format!(
                "tensor '{name}' has '{n_dims}' dimensions (ggml supports at most '{MAX_DIMS}')"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = self.u64(&what)?;
            if d > i64::MAX as u64 {
                return Err(self.malformed(format!("tensor '{name}' has dimension '{d}'")));
            }
            dims.push(d);
        }
        let type_id = self.u32(&what)?;
        let offset = self.u64(&what)?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
            path: self.path.to_path_buf(),
            tensor: name.clone(),
            type_id,
        })?;
        if offset % alignment != 0 {
            return Err(self.malformed(format!(
                "tensor '{name}' offset '{offset}' is not a multiple of the alignment '{alignment}'"
            )));
        }
        let n_bytes = ggml_type.tensor_bytes(&dims).ok_or_else(|| {
            self.malformed(format!(
                "tensor '{name}' of type '{ggml_type}' has dims '{dims:?}': the first is not a multiple of '{}' or the size overflows",
                ggml_type.block_size()
            ))
        })?;
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        })
    }
}

/// "it starts with '50 4b 03 04' ("PK..")" — shows hex and printable ASCII.
fn describe_start(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "it is empty".to_owned();
    }
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let ascii: String = bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("it starts with '{}' (\"{ascii}\")", hex.join(" "))
}
