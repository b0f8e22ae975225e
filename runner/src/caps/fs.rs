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
//!
//! A granted folder is opened without following any symbolic link on its way: the
//! playbook's folder is resolved to its real path once, when the plugin's grants
//! are made, and from there every component of the granted path is opened with
//! `O_NOFOLLOW`, the last one handed to WASI as that open directory (through
//! `/proc/self/fd`, so nothing is looked up by name again). Why: a plugin with `rw`
//! on `workspace` can replace `workspace/cache` with a link to `/home/me/.ssh`; a
//! second plugin granted `workspace/cache` would then write there. Such a grant now
//! fails the step before it starts, naming the link. The user's trust decision:
//! what a folder holds is what the grant gives, including hard links and bind
//! mounts placed there by someone with access to the host.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::capability::{self, Attempt, Capability, ConfigureContext, GrantEntry, Parsed};
use super::grants::{FsAccess, FsGrant as PlaybookGrant};

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

/// One `fs` entry parsed: the path as written (resolved against the playbook's
/// folder when the grant is configured), the name the plugin calls it by, and
/// whether it is writable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    path: String,
    guest: String,
    rw: bool,
}

/// The `fs` capability: entries `{ path, access }`; each attempt gets its
/// working directory and the granted folders as preopens.
pub struct Fs;

impl Capability for Fs {
    const KIND: &'static str = "fs";
    type Written = PlaybookGrant;
    type Entry = Folder;
    type Grant = FsGrant;
    type Prepared = ();

    /// Every path is an entry (the schema wants it non-empty): the plugin
    /// calls it by its written name without `./` and a final `/`.
    fn parse(written: &PlaybookGrant) -> Parsed<Folder> {
        let guest = written
            .path
            .strip_prefix("./")
            .unwrap_or(&written.path)
            .trim_end_matches('/')
            .to_owned();
        let guest = if guest.is_empty() {
            ".".to_owned()
        } else {
            guest
        };
        Parsed::ok(Folder {
            path: written.path.clone(),
            guest,
            rw: written.access == FsAccess::Rw,
        })
    }

    /// The playbook's folder is resolved to its real path here (the user chose
    /// it); the granted paths below it are opened without following links when
    /// a step starts.
    fn configure(entries: &[GrantEntry<Fs>], context: &ConfigureContext<'_>) -> FsGrant {
        let real = context.playbook_dir.canonicalize();
        let playbook_dir = real.as_deref().unwrap_or(context.playbook_dir);
        let paths = capability::parsed(entries)
            .map(|f| GrantedPath {
                host: playbook_dir.join(&f.path),
                guest: f.guest.clone(),
                rw: f.rw,
            })
            .collect();
        FsGrant { paths }
    }

    fn prepare(grant: &FsGrant, attempt: &mut Attempt<'_>) -> Result<(), String> {
        grant.apply(attempt.wasi, attempt.workdir)
    }
}

impl FsGrant {
    /// The grant of entries as written, resolved against `playbook_dir`,
    /// through [`Fs`] (a playbook's grants are configured by `host::resolve`).
    pub fn from_playbook(playbook_dir: &Path, grants: &[PlaybookGrant]) -> FsGrant {
        capability::grant_from::<Fs>(grants, &ConfigureContext { playbook_dir })
    }

    /// Preopens the working directory and the granted folders. A granted folder
    /// that does not exist, or whose path goes through a symbolic link, is an error
    /// naming it (the step fails before it starts).
    pub fn apply(&self, wasi: &mut WasiCtxBuilder, workdir: &Path) -> Result<(), String> {
        wasi.preopened_dir(workdir, ".", FsPerms::ReadWrite)
            .map_err(|e| format!("cannot open the step's working directory: {e}"))?;
        for p in &self.paths {
            let dir = open_real_dir(&p.host)
                .map_err(|e| format!("granted folder `{}` ({}) {e}", p.guest, p.host.display()))?;
            let perms = if p.rw {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(fd_path(&dir), &p.guest, perms)
                .map_err(|e| format!("cannot open granted folder `{}`: {e}", p.guest))?;
        }
        Ok(())
    }
}

/// The path under which the kernel reopens exactly the directory `dir` refers to,
/// whatever has been renamed or linked since it was opened.
pub fn fd_path(dir: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

/// Opens the directory at `path` (absolute) without following a symbolic link in
/// any of its components. The error completes "granted folder `x` (path) …".
pub fn open_real_dir(path: &Path) -> Result<OwnedFd, String> {
    let root = rustix::fs::open("/", dir_flags(), Mode::empty())
        .map_err(|e| format!("cannot be opened: /: {e}"))?;
    if !path.is_absolute() {
        return Err("is not an absolute path".into());
    }
    open_beneath(root, Path::new("/"), path, true)
}

/// Opens `rel` below the open directory `base` (whose path is `shown`), one
/// component at a time, never following a symbolic link; `..` is allowed only when
/// `dotdot` (it then goes to the real parent, as no link was followed).
pub fn open_beneath(
    base: OwnedFd,
    shown: &Path,
    rel: &Path,
    dotdot: bool,
) -> Result<OwnedFd, String> {
    let mut dir = base;
    let mut walked = shown.to_path_buf();
    for component in rel.components() {
        let name = match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
            Component::ParentDir if dotdot => std::ffi::OsStr::new(".."),
            Component::ParentDir => {
                return Err("goes up with `..`; give a path inside the folder".into());
            }
            Component::Normal(name) => name,
        };
        walked.push(name);
        dir = match rustix::fs::openat(&dir, name, dir_flags(), Mode::empty()) {
            Ok(next) => next,
            Err(e) => {
                let link =
                    rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                        rustix::fs::FileType::from_raw_mode(st.st_mode)
                            == rustix::fs::FileType::Symlink
                    });
                return Err(if link {
                    format!(
                        "goes through `{}`, a symbolic link; links are not followed in granted paths, grant the folder's real path",
                        walked.display()
                    )
                } else if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NOTDIR {
                    format!(
                        "does not exist or is not a folder (at `{}`)",
                        walked.display()
                    )
                } else {
                    format!("cannot be opened at `{}`: {e}", walked.display())
                });
            }
        };
    }
    Ok(dir)
}

fn dir_flags() -> OFlags {
    // O_PATH: only search permission is needed on the way, and nothing is read.
    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
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
        // `/pb` does not exist, so it is kept as written.
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
        assert_eq!(
            e,
            "granted folder `data` (/no/such/dir) does not exist or is not a folder (at `/no`)"
        );
    }

    #[test]
    fn a_link_on_the_way_is_refused_and_a_real_path_opens() {
        let base = std::env::temp_dir().join(format!("runner-fs-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("real/inner")).unwrap();
        std::os::unix::fs::symlink("real", base.join("link")).unwrap();
        let base = base.canonicalize().unwrap();
        assert!(open_real_dir(&base.join("real/inner")).is_ok());
        assert!(open_real_dir(&base.join("real/inner/../inner")).is_ok());
        let e = open_real_dir(&base.join("link/inner")).unwrap_err();
        assert_eq!(
            e,
            format!(
                "goes through `{}`, a symbolic link; links are not followed in granted paths, grant the folder's real path",
                base.join("link").display()
            )
        );
        // The final component too.
        assert!(open_real_dir(&base.join("link")).is_err());
        let dir = open_real_dir(&base.join("real")).unwrap();
        let e = open_beneath(dir, &base.join("real"), Path::new("../link"), false).unwrap_err();
        assert!(e.starts_with("goes up with `..`"), "{e}");
        let _ = std::fs::remove_dir_all(&base);
    }

    fn entry(path: &str, access: FsAccess) -> PlaybookGrant {
        PlaybookGrant {
            path: path.into(),
            access,
        }
    }

    #[test]
    fn the_capability_names_folders_as_written_and_resolves_them_when_configured() {
        assert_eq!(Fs::KIND, "fs");
        for (written, guest) in [
            ("./workspace/", "workspace"),
            ("./", "."),
            (".", "."),
            ("/var/log/app", "/var/log/app"),
            ("a/b//", "a/b"),
        ] {
            let parsed = Fs::parse(&entry(written, FsAccess::Ro));
            assert!(parsed.problems.is_empty(), "{written}");
            assert_eq!(
                parsed.entry.map(|f| f.guest),
                Some(guest.to_owned()),
                "{written}"
            );
        }
        let entries = vec![
            GrantEntry::<Fs>::new(entry("data", FsAccess::Rw)),
            GrantEntry::<Fs>::new(entry("/abs", FsAccess::Ro)),
        ];
        let g = Fs::configure(
            &entries,
            &ConfigureContext {
                playbook_dir: Path::new("/no/such/playbook/dir"),
            },
        );
        assert_eq!(
            g.paths,
            [
                GrantedPath {
                    host: "/no/such/playbook/dir/data".into(),
                    guest: "data".into(),
                    rw: true
                },
                GrantedPath {
                    host: "/abs".into(),
                    guest: "/abs".into(),
                    rw: false
                }
            ]
        );
    }

    #[test]
    fn preparing_an_attempt_preopens_or_fails_the_step() {
        let g = FsGrant::from_playbook(Path::new("/no/such"), &[entry("data", FsAccess::Ro)]);
        let mut wasi = WasiCtxBuilder::new();
        let e = Fs::prepare(
            &g,
            &mut Attempt {
                plugin: "p",
                declared: &[],
                workdir: &std::env::temp_dir(),
                wasi: &mut wasi,
                denials: &crate::caps::Denials::default(),
            },
        )
        .unwrap_err();
        assert_eq!(
            e,
            "granted folder `data` (/no/such/data) does not exist or is not a folder (at `/no`)"
        );
    }
}
