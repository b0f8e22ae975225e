//! Reading a playbook file: a size cap before a byte is parsed, UTF-8 only, and the
//! text kept so diagnostics can quote the offending line.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest playbook accepted. Real playbooks are a few kilobytes; the cap keeps a
/// mistaken or hostile file (a log, a disk image) from being parsed at all.
pub const MAX_PLAYBOOK_BYTES: u64 = 4 * 1024 * 1024;

/// A playbook's text and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The name used in diagnostics: the path as the user gave it.
    pub name: String,
    /// The file's folder; relative plugin and grant paths are resolved against it.
    pub dir: PathBuf,
    pub text: String,
}

/// Why a file could not be read as a playbook.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: cannot read the {what}: {source}")]
    Io {
        /// `playbook` or `environment file`.
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: the file is {size} bytes; {what}s are limited to {MAX_PLAYBOOK_BYTES} bytes. Is this the right file?"
    )]
    TooLarge {
        what: &'static str,
        path: String,
        size: u64,
    },
    #[error("{path}:{line}:{col}: the file is not valid UTF-8; save it as UTF-8")]
    NotUtf8 {
        path: String,
        line: usize,
        col: usize,
    },
}

impl ReadError {
    /// The file it is about, as given.
    pub fn path(&self) -> &str {
        match self {
            ReadError::Io { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::NotUtf8 { path, .. } => path,
        }
    }
}

impl Source {
    /// Reads `path`, refusing files over [`MAX_PLAYBOOK_BYTES`] before reading them;
    /// `what` (`playbook`, `environment file`) names the file in errors.
    pub fn read(path: &Path, what: &'static str) -> Result<Source, ReadError> {
        let name = path.display().to_string();
        let io = |source| ReadError::Io {
            what,
            path: name.clone(),
            source,
        };
        // Opened without blocking: opening a FIFO for reading would wait for a
        // writer for ever. Anything but a regular file is then refused.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(path)
                .map_err(io)?
        };
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::other("it is a directory")));
        }
        if !meta.is_file() {
            return Err(io(std::io::Error::other(
                "it is not a regular file (a FIFO, a device or a socket); give the path of a file",
            )));
        }
        if meta.len() > MAX_PLAYBOOK_BYTES {
            return Err(ReadError::TooLarge {
                what,
                path: name,
                size: meta.len(),
            });
        }
        // The file may grow between the check and the read (or be a pipe): read one
        // byte past the cap at most.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_PLAYBOOK_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_PLAYBOOK_BYTES {
            return Err(ReadError::TooLarge {
                what,
                path: name,
                size: bytes.len() as u64,
            });
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Source::from_bytes(name, dir, bytes)
    }

    /// Wraps bytes already in memory (tests, fuzzing, stdin).
    pub fn from_bytes(name: String, dir: PathBuf, bytes: Vec<u8>) -> Result<Source, ReadError> {
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Source { name, dir, text }),
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                // Safe: the prefix up to `valid_up_to` is valid UTF-8 by definition.
                let prefix = std::str::from_utf8(valid).unwrap_or_default();
                let line = prefix.matches('\n').count() + 1;
                let col = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                Err(ReadError::NotUtf8 {
                    path: name,
                    line,
                    col,
                })
            }
        }
    }

    /// The text of 1-based line `line`, without its line break.
    pub fn line(&self, line: usize) -> Option<&str> {
        self.text
            .split('\n')
            .nth(line.checked_sub(1)?)
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
    }
}
