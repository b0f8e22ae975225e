//! The local copy of what was pulled from registries: a content-addressed
//! folder, `<component cache>/oci/sha256/<hex>`, one file per manifest or
//! component, named by the SHA-256 of its bytes (the OCI image layout's
//! `blobs/sha256/`).
//!
//! A run whose plugins are all here needs no registry: pinned by digest, the
//! content cannot have changed, so it is not asked for again. Each file is
//! hashed again when it is read; one that does not match its name (a disk
//! error, someone's edit) is deleted and fetched anew, never used. Files are
//! written to a temporary name and renamed into place, so a crash leaves no
//! half-written file under a valid name. Like the compiled-component cache
//! beside it, the folder must be writable only by the user.

use std::path::{Path, PathBuf};

use super::Digest;

/// A content-addressed folder of blobs.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// The store in `dir` (`dir/sha256/<hex>`), created when first written.
    pub fn at(dir: PathBuf) -> BlobStore {
        BlobStore { dir }
    }

    /// `oci/` in the compiled-component cache folder `components`
    /// (`Settings::components_dir`: `$RUNNER_CACHE_DIR/components/oci`, else
    /// under `$XDG_CACHE_HOME/runner` or `~/.cache/runner`).
    pub fn in_cache(components: &std::path::Path) -> BlobStore {
        BlobStore::at(components.join("oci"))
    }

    /// Where the blob with `digest` is (or would be) kept.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("sha256").join(digest.hex())
    }

    /// The blob's bytes, if it is here and intact. A damaged file is removed.
    pub fn get(&self, digest: &Digest) -> Option<Vec<u8>> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        if Digest::of(&bytes) == *digest {
            Some(bytes)
        } else {
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Keeps `bytes` under their digest; the path written.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let digest = Digest::of(bytes);
        let path = self.path(&digest);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), digest.hex()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_kept_under_its_digest_and_a_damaged_one_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = BlobStore::at(dir.path().to_path_buf());
        let path = store.put(b"component").expect("put");
        let digest = Digest::of(b"component");
        assert_eq!(path, dir.path().join("sha256").join(digest.hex()));
        assert_eq!(store.get(&digest).as_deref(), Some(&b"component"[..]));
        std::fs::write(&path, b"tampered").expect("write");
        assert_eq!(store.get(&digest), None);
        assert!(!path.exists(), "the damaged file is removed");
    }
}
