//! The `fs` capability: host folders a plugin may open.
//!
//! Threat model: the plugin is hostile and wants to read files it was not given
//! (credentials in `~`, `/etc`), write outside the folders granted `rw`, or escape a
//! granted folder through `..` or a symlink. What must never happen: any path
//! outside a granted folder or the step's own working directory is visible; a
//! read-only grant is written to.
//!
//! Enforcement is wasmtime-wasi's: each granted folder is *preopened* (the guest
//! has no other way to reach the host filesystem), lookups cannot leave a preopen
//! by `..` or by following a symlink (capability-based resolution, `cap-std`), and
//! read-only preopens refuse writes. This module decides what to preopen:
//!
//! - the attempt's fresh working directory as `.` (read-write; it starts empty and
//!   is deleted after the attempt), so plugins have scratch space;
//! - each grant under the path written in the playbook (`workspace`, `artifacts`,
//!   `/var/log/app`), resolved against the playbook's folder, `ro` unless `rw`.

use std::path::{Path, PathBuf};

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::playbook::model::{FsAccess, FsGrant as PlaybookGrant};

/// One granted folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedPath {
    /// Where it is on the host (resolved against the playbook's folder).
    pub host: PathBuf,
    /// What the plugin calls it: the path as written in the playbook.
    pub guest: String,
    pub rw: bool,
}

/// The folders a plugin may open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsGrant {
    pub paths: Vec<GrantedPath>,
}

impl FsGrant {
    /// Parsed once from the playbook's `grants.fs`.
    pub fn from_playbook(playbook_dir: &Path, grants: &[PlaybookGrant]) -> FsGrant {
        let paths = grants
            .iter()
            .map(|g| {
                let guest = g
                    .path
                    .strip_prefix("./")
                    .unwrap_or(&g.path)
                    .trim_end_matches('/')
                    .to_owned();
                let guest = if guest.is_empty() {
                    ".".to_owned()
                } else {
                    guest
                };
                GrantedPath {
                    host: playbook_dir.join(&g.path),
                    guest,
                    rw: g.access == FsAccess::Rw,
                }
            })
            .collect();
        FsGrant { paths }
    }

    /// Preopens the working directory and the granted folders. A granted folder
    /// that does not exist is an error naming it (the step fails before it starts).
    pub fn apply(&self, wasi: &mut WasiCtxBuilder, workdir: &Path) -> Result<(), String> {
        wasi.preopened_dir(workdir, ".", FsPerms::ReadWrite)
            .map_err(|e| format!("cannot open the step's working directory: {e}"))?;
        for p in &self.paths {
            if !p.host.is_dir() {
                return Err(format!(
                    "granted folder `{}` ({}) does not exist or is not a folder",
                    p.guest,
                    p.host.display()
                ));
            }
            let perms = if p.rw {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&p.host, &p.guest, perms)
                .map_err(|e| format!("cannot open granted folder `{}`: {e}", p.guest))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_keep_the_playbook_name_and_resolve_against_its_folder() {
        let grants = vec![
            PlaybookGrant {
                path: "./workspace/".into(),
                access: FsAccess::Rw,
            },
            PlaybookGrant {
                path: "/var/log/app".into(),
                access: FsAccess::Ro,
            },
        ];
        let g = FsGrant::from_playbook(Path::new("/pb"), &grants);
        assert_eq!(
            g.paths[0],
            GrantedPath {
                host: "/pb/./workspace/".into(),
                guest: "workspace".into(),
                rw: true
            }
        );
        assert_eq!(
            g.paths[1],
            GrantedPath {
                host: "/var/log/app".into(),
                guest: "/var/log/app".into(),
                rw: false
            }
        );
    }

    #[test]
    fn a_missing_folder_is_named() {
        let g = FsGrant {
            paths: vec![GrantedPath {
                host: "/no/such/dir".into(),
                guest: "data".into(),
                rw: false,
            }],
        };
        let e = g
            .apply(&mut WasiCtxBuilder::new(), &std::env::temp_dir())
            .unwrap_err();
        assert!(
            e.starts_with("granted folder `data` (/no/such/dir) does not exist"),
            "{e}"
        );
    }
}
