//! The one way her reads a file a user gave it or a command left behind.
//!
//! Only regular files are read: a FIFO would block forever, a device such as
//! `/dev/zero` never ends, a folder is not data. The path is checked before it
//! is opened and the opened file again (a symlink is followed and its target
//! checked), and the open does not block, so a FIFO is refused at once.
//! Every kind of file has a size limit, checked against the file's size
//! before reading and enforced while reading too (a device or `/proc` file
//! reports 0 bytes). Line-oriented files are read one line at a time with a
//! cap per line, so one huge line cannot take the memory of the whole file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;

/// Longest line of a line-oriented file (a session message, a dataset sample).
pub const LINE_LIMIT: usize = 32 * 1024 * 1024;

/// Default of `[limits] session_mb`.
pub const DEFAULT_SESSION_MB: u64 = 256;
/// Default of `[limits] dataset_mb`.
pub const DEFAULT_DATASET_MB: u64 = 2048;

// Set once from the config at start-up (`set_limits`); a process-wide policy
// rather than a parameter threaded through every loader.
static SESSION_LIMIT: AtomicU64 = AtomicU64::new(DEFAULT_SESSION_MB * MIB);
static DATASET_LIMIT: AtomicU64 = AtomicU64::new(DEFAULT_DATASET_MB * MIB);

/// Applies `[limits] session_mb` and `dataset_mb` (MiB) to every later read.
pub fn set_limits(session_mb: u64, dataset_mb: u64) {
    SESSION_LIMIT.store(session_mb.saturating_mul(MIB), Ordering::Relaxed);
    DATASET_LIMIT.store(dataset_mb.saturating_mul(MIB), Ordering::Relaxed);
}

/// What a file is: decides its size limit and how errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `config.toml`, themes, remembered TUI settings, bench plans.
    Config,
    /// Character and scene TOML files.
    Character,
    /// A Character Card (`.png` or `.json`).
    Card,
    /// CoSER scene JSON (a book's worth of scenes).
    Coser,
    /// A session log (`[limits] session_mb`).
    Session,
    /// Training data, RL prompts, annotation queues, preference, annotation
    /// and judge logs (`[limits] dataset_mb`).
    Dataset,
    /// What runs and evaluations write and read back: metrics, manifests,
    /// checkpoint state, rollouts, results.
    RunRecord,
    /// A message edited in `$EDITOR`.
    Text,
    /// A PEFT adapter's config or weights (`her import adapter`); its
    /// limits are the importer's.
    Adapter,
    /// A World Info / lorebook file (`her import`, `characters/lore/`).
    Book,
}

impl Kind {
    /// The size limit in bytes.
    pub fn limit(self) -> u64 {
        match self {
            Kind::Config => 4 * MIB,
            Kind::Character | Kind::Text => 16 * MIB,
            Kind::Card => 32 * MIB,
            Kind::Coser => 64 * MIB,
            Kind::Session => SESSION_LIMIT.load(Ordering::Relaxed),
            Kind::Dataset => DATASET_LIMIT.load(Ordering::Relaxed),
            Kind::RunRecord => 256 * MIB,
            Kind::Adapter => 16 * 1024 * MIB,
            Kind::Book => 64 * MIB,
        }
    }

    /// How an error names a file of this kind.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Config => "a settings file",
            Kind::Character => "a character or scene file",
            Kind::Card => "a character card",
            Kind::Coser => "CoSER scene JSON",
            Kind::Session => "a session",
            Kind::Dataset => "a dataset or preference log",
            Kind::RunRecord => "a run or evaluation record",
            Kind::Text => "an edited message",
            Kind::Adapter => "a PEFT adapter file",
            Kind::Book => "a lorebook",
        }
    }

    /// The config key that raises the limit, where users may need more.
    pub fn config_key(self) -> Option<&'static str> {
        match self {
            Kind::Session => Some("limits.session_mb"),
            Kind::Dataset => Some("limits.dataset_mb"),
            _ => None,
        }
    }
}

/// Why a file could not be read. Each message names the file, the problem
/// and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read '{}': {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
    #[error("cannot read '{}': {}", path.display(), not_a_file_text(what))]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("cannot read '{}': {}", path.display(), too_large_text(*kind, *size, *limit))]
    TooLarge {
        path: PathBuf,
        kind: Kind,
        /// `None` when the file reported a smaller size than it holds (a device).
        size: Option<u64>,
        limit: u64,
    },
    #[error("cannot read '{}': {}", path.display(), not_utf8_text(*offset))]
    NotUtf8 { path: PathBuf, offset: usize },
}

impl ReadError {
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. }
            | ReadError::NotAFile { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::NotUtf8 { path, .. } => path,
        }
    }

    /// The file (or a folder on its path) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { cause, .. } if cause.kind() == io::ErrorKind::NotFound)
    }

    /// The I/O error underneath, if that is what went wrong.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            ReadError::Io { cause, .. } => Some(cause.kind()),
            _ => None,
        }
    }

    fn io(path: &Path, cause: io::Error) -> Self {
        ReadError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// For callers that speak `io::Error` (and name the path themselves).
impl From<ReadError> for io::Error {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Io { cause, .. } => cause,
            ReadError::NotAFile { what, .. } => {
                io::Error::new(io::ErrorKind::InvalidInput, not_a_file_text(what))
            }
            ReadError::TooLarge {
                kind, size, limit, ..
            } => io::Error::new(
                io::ErrorKind::InvalidData,
                too_large_text(kind, size, limit),
            ),
            ReadError::NotUtf8 { offset, .. } => {
                io::Error::new(io::ErrorKind::InvalidData, not_utf8_text(offset))
            }
        }
    }
}

fn not_a_file_text(what: &str) -> String {
    format!(
        "it is {what}, not a regular file; her reads only regular files (copy the data into one)"
    )
}

fn not_utf8_text(offset: usize) -> String {
    format!("it is not UTF-8 text (the first invalid byte is at offset {offset})")
}

fn too_large_text(kind: Kind, size: Option<u64>, limit: u64) -> String {
    let size = match size {
        Some(bytes) => format!("{bytes} bytes"),
        None => format!("more than {}", mib(limit)),
    };
    let fix = match kind.config_key() {
        Some(key) => format!("; raise '{key}' in config.toml to read it"),
        None => String::new(),
    };
    format!(
        "it is too large: it holds {size}, over the {} limit for {}{fix}",
        mib(limit),
        kind.noun()
    )
}

/// "32 MiB", "1.5 MiB", or bytes below one MiB.
fn mib(bytes: u64) -> String {
    if bytes < MIB {
        format!("{bytes} bytes")
    } else if bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    }
}

/// Opens `path` if it is a regular file (symlinks followed); returns the
/// file and its size. Never blocks: a FIFO is refused, not waited on.
pub fn open_regular(path: &Path) -> Result<(File, u64), ReadError> {
    // Refuse before opening where possible: opening a device can have effects.
    let before = std::fs::metadata(path).map_err(|e| ReadError::io(path, e))?;
    check_regular(path, &before.file_type())?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The path may have been swapped for a FIFO since the check; without
        // O_NONBLOCK the open itself would wait for a writer.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| ReadError::io(path, e))?;
    let meta = file.metadata().map_err(|e| ReadError::io(path, e))?;
    check_regular(path, &meta.file_type())?;
    Ok((file, meta.len()))
}

fn check_regular(path: &Path, file_type: &std::fs::FileType) -> Result<(), ReadError> {
    if file_type.is_file() {
        return Ok(());
    }
    Err(ReadError::NotAFile {
        path: path.to_path_buf(),
        what: describe_type(file_type),
    })
}

fn describe_type(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    "not a file"
}

/// The whole file, refused if it is not a regular file or over `kind`'s limit.
pub fn bytes(path: &Path, kind: Kind) -> Result<Vec<u8>, ReadError> {
    bytes_within(path, kind, kind.limit())
}

/// [`bytes`] with a limit of the caller's instead of the kind's.
pub fn bytes_within(path: &Path, kind: Kind, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (file, size) = open_regular(path)?;
    let too_large = |size| ReadError::TooLarge {
        path: path.to_path_buf(),
        kind,
        size,
        limit,
    };
    if size > limit {
        return Err(too_large(Some(size)));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // The reported size is not a promise: the file may grow, and some
    // files report 0. One byte over the limit is enough to know.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(None));
    }
    Ok(bytes)
}

/// The whole file as UTF-8 text (a leading byte-order mark is kept).
pub fn text(path: &Path, kind: Kind) -> Result<String, ReadError> {
    String::from_utf8(bytes(path, kind)?).map_err(|e| ReadError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Like [`text`], but a missing file is `None`.
pub fn optional_text(path: &Path, kind: Kind) -> Result<Option<String>, ReadError> {
    match text(path, kind) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// One line of a line-oriented file, without its '\n'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based.
    pub number: usize,
    bytes: Vec<u8>,
    /// The line ended with '\n'. Only the last line can lack one: the
    /// writer was cut off, or never ended it.
    pub terminated: bool,
    /// The line's length when it is over [`LINE_LIMIT`]; its bytes were
    /// read past, not kept.
    pub too_long: Option<u64>,
}

impl Line {
    /// The bytes (empty for a line that was too long).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Nothing but whitespace (a too-long line is not blank).
    pub fn is_blank(&self) -> bool {
        self.too_long.is_none() && self.bytes.iter().all(u8::is_ascii_whitespace)
    }

    /// The line as text, or why it cannot be used (for a "line N: …; skipped" report).
    pub fn text(&self) -> Result<&str, String> {
        if let Some(length) = self.too_long {
            return Err(format!(
                "the line holds {}, over the {} limit for one line",
                mib(length),
                mib(LINE_LIMIT as u64)
            ));
        }
        std::str::from_utf8(&self.bytes).map_err(|e| {
            format!(
                "not valid UTF-8 (the first invalid byte is at column {})",
                e.valid_up_to() + 1
            )
        })
    }
}

/// Lines of a file, read one at a time. Stops with an error if the file is
/// over its limit or a read fails; an over-long line is reported in its
/// [`Line`] and the reading goes on.
pub struct LineReader {
    path: PathBuf,
    kind: Kind,
    limit: u64,
    line_limit: usize,
    inner: BufReader<io::Take<File>>,
    number: usize,
    consumed: u64,
    hasher: Option<Sha256>,
    done: bool,
}

/// Opens a line-oriented file (sessions, JSONL logs and datasets).
pub fn lines(path: &Path, kind: Kind) -> Result<LineReader, ReadError> {
    lines_within(path, kind, kind.limit(), LINE_LIMIT)
}

fn lines_within(
    path: &Path,
    kind: Kind,
    limit: u64,
    line_limit: usize,
) -> Result<LineReader, ReadError> {
    let (file, size) = open_regular(path)?;
    if size > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            kind,
            size: Some(size),
            limit,
        });
    }
    Ok(LineReader {
        path: path.to_path_buf(),
        kind,
        limit,
        line_limit,
        inner: BufReader::with_capacity(64 * 1024, file.take(limit.saturating_add(1))),
        number: 0,
        consumed: 0,
        hasher: None,
        done: false,
    })
}

impl LineReader {
    /// Also computes the sha256 of every byte read (see [`LineReader::sha256_hex`]).
    pub fn hashing(mut self) -> Self {
        self.hasher = Some(Sha256::new());
        self
    }

    /// The sha256 of the bytes read so far (all of them once the iterator
    /// has ended), if [`LineReader::hashing`] was asked for.
    pub fn sha256_hex(&self) -> Option<String> {
        self.hasher
            .as_ref()
            .map(|h| crate::hashing::hex(&h.clone().finalize()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&mut self, error: ReadError) -> Option<Result<Line, ReadError>> {
        self.done = true;
        Some(Err(error))
    }

    fn over_limit(&self) -> ReadError {
        ReadError::TooLarge {
            path: self.path.clone(),
            kind: self.kind,
            size: None,
            limit: self.limit,
        }
    }
}

impl Iterator for LineReader {
    type Item = Result<Line, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut bytes = Vec::new();
        let mut length: u64 = 0;
        let mut too_long = false;
        let mut read_any = false;
        let terminated = loop {
            let available = match self.inner.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let error = ReadError::io(&self.path, e);
                    return self.fail(error);
                }
            };
            if available.is_empty() {
                if !read_any {
                    self.done = true;
                    return None;
                }
                break false;
            }
            read_any = true;
            let (taken, found) = match memchr::memchr(b'\n', available) {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            let content = &available[..taken - usize::from(found)];
            if let Some(hasher) = &mut self.hasher {
                hasher.update(&available[..taken]);
            }
            if !too_long {
                if bytes.len() + content.len() > self.line_limit {
                    too_long = true;
                    bytes = Vec::new();
                } else {
                    bytes.extend_from_slice(content);
                }
            }
            length += content.len() as u64;
            self.consumed += taken as u64;
            self.inner.consume(taken);
            if self.consumed > self.limit {
                let error = self.over_limit();
                return self.fail(error);
            }
            if found {
                break true;
            }
        };
        self.number += 1;
        Some(Ok(Line {
            number: self.number,
            bytes,
            terminated,
            too_long: too_long.then_some(length),
        }))
    }
}

/// The lines of a JSONL record `her` keeps for itself (metrics, rollouts)
/// that parse as `T`, in order. A line that does not (one being written
/// right now, or damaged) is skipped and logged with its number; so is a
/// file that cannot be read. A missing file is simply empty.
pub fn jsonl_records<T: serde::de::DeserializeOwned>(path: &Path, kind: Kind) -> Vec<T> {
    let reader = match lines(path, kind) {
        Ok(reader) => reader,
        Err(e) if e.is_not_found() => return Vec::new(),
        Err(e) => {
            tracing::warn!("{e}; read as empty");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for line in reader {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!("{e}; the rest is not read");
                break;
            }
        };
        if line.is_blank() {
            continue;
        }
        match line
            .text()
            .and_then(|t| serde_json::from_str(t).map_err(|e| e.to_string()))
        {
            Ok(item) => out.push(item),
            // A line still being written is not worth a warning.
            Err(_) if !line.terminated => {}
            Err(reason) => tracing::warn!(
                "'{}' line {}: {reason}; skipped",
                path.display(),
                line.number
            ),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
