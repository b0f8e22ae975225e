//! The catalog: the playbooks and environment files a server runs, by name.
//!
//! Why names and not paths: a request names `hotfix`, never a file. A name is
//! letters, digits, `-`, `_` and `.` (no `/`, no leading dot), and it is looked
//! up among the regular files of the configured folder as they are at the
//! time of the request, so no request reaches a file outside it, follows a
//! link out of it, or runs a playbook it uploaded.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Whether `name` may name a catalog entry (or a webhook).
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The file of entry `name` in `folder`: `NAME.yaml` or `NAME.yml`, a regular
/// file (not a link) directly in the folder.
pub fn find(folder: &Path, name: &str) -> Option<PathBuf> {
    if !is_name(name) {
        return None;
    }
    ["yaml", "yml"].iter().find_map(|ext| {
        let path = folder.join(format!("{name}.{ext}"));
        let meta = std::fs::symlink_metadata(&path).ok()?;
        meta.file_type().is_file().then_some(path)
    })
}

/// The names of the entries in `folder`, sorted.
pub fn names(folder: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name
                .strip_suffix(".yaml")
                .or_else(|| name.strip_suffix(".yml"))?;
            is_name(stem).then(|| stem.to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A playbook of the catalog, as listed.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// What a request names.
    pub name: String,
    /// The playbook's own `name`.
    pub playbook: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its inputs as declared.
    pub inputs: serde_json::Value,
    /// Why it cannot be run, when it is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
}

/// Every playbook of `folder`, read now.
pub fn entries(folder: &Path) -> Vec<Entry> {
    names(folder)
        .into_iter()
        .filter_map(|name| {
            let path = find(folder, &name)?;
            Some(match crate::playbook::load(&path) {
                Ok(v) => Entry {
                    name,
                    playbook: v.playbook.name.clone(),
                    description: v.playbook.description.clone(),
                    inputs: serde_json::to_value(&v.playbook.inputs).unwrap_or_default(),
                    invalid: None,
                },
                Err(e) => Entry {
                    name: name.clone(),
                    playbook: name,
                    description: None,
                    inputs: serde_json::Value::Null,
                    invalid: Some(e.to_string()),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_never_leave_the_folder() {
        for bad in ["", "../x", "a/b", ".hidden", "x\0", "a b", "%2e%2e", "é"] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(is_name("hotfix") && is_name("canary.v2") && is_name("a_b-c"));
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("evil.yaml"), "x").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("evil.yaml"),
            dir.path().join("evil.yaml"),
        )
        .unwrap();
        std::fs::write(dir.path().join("good.yml"), "x").unwrap();
        assert_eq!(find(dir.path(), "evil"), None, "a link is not an entry");
        assert_eq!(find(dir.path(), "good"), Some(dir.path().join("good.yml")));
        assert_eq!(names(dir.path()), vec!["good".to_owned()]);
    }
}
