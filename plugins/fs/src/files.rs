//! Writing files into granted folders, shared by the `fs` and `report` plugins.
//!
//! A file is written only inside a folder the playbook granted `rw`: the step's
//! own working directory is deleted after the attempt, so a file meant to last
//! (an evidence file, a report, a changelog) must not land there by accident.

use runner_sdk::StepError;
use runner_sdk::fs::Folder;
use sha2::{Digest, Sha256};

/// The granted folder holding `path` (longest match), if writable.
pub fn writable_folder<'a>(folders: &'a [Folder], path: &str) -> Result<&'a Folder, StepError> {
    let inside = |f: &&Folder| {
        let name = f.name.trim_end_matches('/');
        f.name != "." && (path == name || path.starts_with(&format!("{name}/")))
    };
    let folder = folders
        .iter()
        .filter(inside)
        .max_by_key(|f| f.name.len())
        .ok_or_else(|| {
            StepError::denied(format!(
                "`{path}` is not inside a folder granted to this plugin; grant its folder under `grants.fs` with `access: rw` (files in the step's own folder are deleted after the step)"
            ))
        })?;
    if path.split('/').any(|c| c == "..") {
        return Err(StepError::invalid_input(format!(
            "`{path}`: `..` is not allowed in a path"
        )));
    }
    if !folder.writable {
        return Err(StepError::denied(format!(
            "`{path}` is in folder `{}`, granted read-only; grant it with `access: rw`",
            folder.name
        )));
    }
    Ok(folder)
}

/// Writes (or appends) `data` at `path`, creating missing parent folders;
/// returns the sha256 of the whole file afterwards.
pub fn write(
    folders: &[Folder],
    path: &str,
    data: &[u8],
    append: bool,
) -> Result<String, StepError> {
    writable_folder(folders, path)?;
    if let Some(parent) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| StepError::failed(format!("cannot create `{}`: {e}", parent.display())))?;
    }
    let result = if append {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(data))
    } else {
        std::fs::write(path, data)
    };
    result.map_err(|e| StepError::failed(format!("cannot write `{path}`: {e}")))?;
    let whole = std::fs::read(path)
        .map_err(|e| StepError::failed(format!("cannot read `{path}` back: {e}")))?;
    Ok(hex(&Sha256::digest(&whole)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders() -> Vec<Folder> {
        vec![
            Folder {
                name: ".".into(),
                writable: true,
            },
            Folder {
                name: "artifacts".into(),
                writable: true,
            },
            Folder {
                name: "templates".into(),
                writable: false,
            },
        ]
    }

    #[test]
    fn only_granted_writable_folders_take_files() {
        let f = folders();
        assert!(writable_folder(&f, "artifacts/evidence/x.txt").is_ok());
        assert_eq!(
            writable_folder(&f, "notes.txt").unwrap_err().kind(),
            "denied"
        );
        assert_eq!(
            writable_folder(&f, "artifactsx/y").unwrap_err().kind(),
            "denied"
        );
        assert_eq!(
            writable_folder(&f, "templates/a.md").unwrap_err().kind(),
            "denied"
        );
        assert_eq!(
            writable_folder(&f, "artifacts/../etc/passwd")
                .unwrap_err()
                .kind(),
            "invalid-input"
        );
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
