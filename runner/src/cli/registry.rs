//! `runner plugins push` and `runner plugins pull`: arguments in, one call to
//! `host::oci`, the digest to pin out. Everything else (checks, credentials,
//! verification, the store) is in `host::oci`.

use std::path::Path;

use super::{EXIT_INVALID, EXIT_OK, print};
use crate::host::oci::{self, OciRef, store::BlobStore};

fn tokio() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            EXIT_INVALID
        })
}

fn reference(text: &str) -> Result<OciRef, u8> {
    OciRef::parse(text).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_INVALID
    })
}

pub fn push(file: &Path, text: &str) -> u8 {
    let run = || -> Result<u8, u8> {
        let reference = reference(text)?;
        let wasm = std::fs::read(file).map_err(|e| {
            eprintln!(
                "error: cannot read `{}`: {e}; give the path of a .wasm component",
                file.display()
            );
            EXIT_INVALID
        })?;
        let runtime = super::exec::service(None).runtime().map_err(|e| {
            eprintln!("error: {e}");
            EXIT_INVALID
        })?;
        let label = file.display().to_string();
        let pushed = tokio()?
            .block_on(oci::push(&runtime, &label, &wasm, &reference))
            .map_err(|e| {
                eprintln!("error: {e}");
                EXIT_INVALID
            })?;
        print(&format!(
            "pushed {} ({} bytes, component {})\ndigest: {}\nuses: {}\n",
            reference.unpinned(),
            pushed.bytes,
            pushed.layer_digest,
            pushed.manifest_digest,
            pushed.reference
        ));
        Ok(EXIT_OK)
    };
    run().unwrap_or_else(|code| code)
}

pub fn pull(text: &str, output: Option<&Path>) -> u8 {
    let run = || -> Result<u8, u8> {
        let reference = reference(text)?;
        let store = super::exec::service(None)
            .settings()
            .components_dir()
            .map(|d| BlobStore::in_cache(&d));
        let fetched = tokio()?
            .block_on(oci::pull(&reference, store.as_ref()))
            .map_err(|e| {
                eprintln!("error: {e}");
                EXIT_INVALID
            })?;
        if let Some(out) = output {
            std::fs::write(out, &fetched.wasm).map_err(|e| {
                eprintln!("error: cannot write `{}`: {e}", out.display());
                EXIT_INVALID
            })?;
        }
        let kept = fetched
            .path
            .as_ref()
            .map(|p| format!("; kept in {}", p.display()))
            .unwrap_or_default();
        print(&format!(
            "pulled {} ({} bytes, component {}{kept})\ndigest: {}\nuses: {}\n",
            reference.unpinned(),
            fetched.wasm.len(),
            fetched.layer_digest,
            fetched.manifest_digest,
            fetched.reference
        ));
        Ok(EXIT_OK)
    };
    run().unwrap_or_else(|code| code)
}

/// The component `text` names, for `runner plugins check oci://…`: from the
/// store when pinned and there, else from the registry.
pub fn fetch_for_check(text: &str) -> Result<Vec<u8>, u8> {
    let reference = reference(text)?;
    let store = super::exec::service(None)
        .settings()
        .components_dir()
        .map(|d| BlobStore::in_cache(&d));
    let fetched = if reference.digest.is_some() {
        tokio()?.block_on(oci::fetch(&reference, store.as_ref()))
    } else {
        tokio()?.block_on(oci::pull(&reference, store.as_ref()))
    };
    fetched.map(|f| f.wasm).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_INVALID
    })
}
