//! The on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes from tens of milliseconds (a small
//! Rust plugin) to seconds (an interpreter-based Python or JavaScript plugin);
//! loading the compiled artifact takes a fraction of a millisecond. Artifacts are
//! keyed by the SHA-256 of the component and the engine's precompile
//! compatibility hash, so a new runner (or different engine settings) never loads
//! an artifact compiled for another configuration.
//!
//! Trust: `Component::deserialize_file` runs native code from the file without
//! checking it, so the cache directory must be writable only by the user. Files
//! are written to a temporary name and renamed into place, so a crash never
//! leaves a half-written artifact under a valid name.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept, and under which key.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

/// How a component was obtained, for figures and `--verbose` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Loaded from the cache.
    Cached,
    /// Compiled now (and stored, when the cache is writable).
    Compiled,
}

impl ComponentCache {
    /// The cache in `dir` (created if needed), or no cache when `dir` is `None`.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> ComponentCache {
        // `DefaultHasher::new()` uses fixed keys: the same engine settings give the
        // same key in every process of the same runner build.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        ComponentCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    /// The folder of the cache; `None`: no cache.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    fn path_for(&self, sha256: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }

    /// The compiled component for `wasm`, from the cache or compiled now.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, String, Origin)> {
        let sha256 = hex(&Sha256::digest(wasm));
        if let Some(path) = self.path_for(&sha256)
            && path.is_file()
        {
            // SAFETY: the file was written by `store` below from a component this
            // engine compiled, under a key that includes the engine's compatibility
            // hash; the directory belongs to the user (see the module doc).
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, sha256, Origin::Cached)),
                // A damaged or foreign file: compile again and replace it.
                Err(_) => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Some(path) = self.path_for(&sha256) {
            // The cache is an optimisation: failing to write it is not an error.
            let _ = store(&component, &path);
        }
        Ok((component, sha256, Origin::Compiled))
    }
}

fn store(component: &Component, path: &Path) -> wasmtime::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| wasmtime::format_err!("no cache folder"))?;
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize()?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
