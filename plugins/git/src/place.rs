//! Where git may work: inside the folders the playbook grants this plugin.
//!
//! git runs on the host, outside the sandbox's filesystem view, with whatever
//! path it is given. So before git touches a working copy or a local remote, the
//! plugin checks the path against its own grants: the folders the runner opened
//! for it (its *preopens*: the step's working directory as `.` and each `fs`
//! grant under the path the playbook wrote, writable only with `access: rw`).
//!
//! - An absolute path must lie inside a folder granted by its absolute path (its
//!   name in the sandbox is then its path on the host), writable when the
//!   operation writes. git is told `-C <path>`.
//! - A relative path lies inside the step's own working directory or inside a
//!   folder granted by a relative name (like `workspace`); the runner starts git
//!   in that folder (a program's working directory may be any granted folder,
//!   named as the playbook names it), so git and the sandbox agree on it.
//!
//! The plugin's own filesystem calls resolve a path the way wasi-libc does
//! (longest granted prefix, leading `/` ignored); a path that would resolve to a
//! different folder than the one git would use is refused as ambiguous.

use std::fs;

use runner_sdk::StepError;

/// Whether the operation only reads the repository or also writes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A folder the runner opened for this plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Its name in the sandbox: `.` or the path the playbook granted.
    pub name: String,
    pub writable: bool,
}

/// The folders this plugin was given.
pub fn granted() -> Vec<Folder> {
    runner_sdk::fs::granted()
        .into_iter()
        .map(|f| Folder {
            name: f.name,
            writable: f.writable,
        })
        .collect()
}

/// `path` without leading `/` and `./`, `.` as empty: how wasi-libc compares.
fn stripped(path: &str) -> &str {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if p == "." {
            return "";
        } else {
            return p;
        }
    }
}

/// Whether folder name `prefix` (stripped) covers `path` (stripped), component-wise.
fn covers(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

/// The folder the sandbox resolves `path` in: the longest covering name.
fn resolves_in<'a>(folders: &'a [Folder], path: &str) -> Option<&'a Folder> {
    let p = stripped(path);
    folders
        .iter()
        .filter(|f| covers(stripped(&f.name), p))
        .max_by_key(|f| stripped(&f.name).trim_end_matches('/').len())
}

/// Checks that git may use `path` (normalised, see [`crate::check::location`])
/// for `access`; `what` names it in messages.
pub fn allowed(
    folders: &[Folder],
    what: &str,
    path: &str,
    access: Access,
) -> Result<(), StepError> {
    let rw = match access {
        Access::Write => " with `access: rw`",
        Access::Read => "",
    };
    let folder = resolves_in(folders, path);
    // A relative path is inside the step's working directory or a folder granted
    // by a relative name: the runner starts git there (its working directory may
    // be any granted folder). An absolute path must be inside a folder granted by
    // its absolute path.
    let ok_folder = if path.starts_with('/') {
        folder.filter(|f| f.name.starts_with('/'))
    } else {
        folder.filter(|f| !f.name.starts_with('/'))
    };
    let Some(folder) = ok_folder else {
        return Err(StepError::denied(match folder {
            Some(f) if path.starts_with('/') && !stripped(&f.name).is_empty() => format!(
                "{what} `{path}` is ambiguous: the sandbox resolves it inside granted folder `{}`, \
                 which is not that path on the host; grant the folder by its absolute path",
                f.name
            ),
            _ => format!(
                "{what} `{path}` is not inside a folder granted to this plugin; grant it by its \
                 absolute path under `grants.fs` in the playbook{rw}"
            ),
        }));
    };
    if access == Access::Write && !folder.writable {
        return Err(StepError::denied(format!(
            "{what} `{path}` is in folder `{}`, granted read-only; this operation writes to it, so \
             grant the folder with `access: rw`",
            folder.name
        )));
    }
    Ok(())
}

/// An existing working copy at `path`.
pub fn existing_repo(path: &str, access: Access) -> Result<(), StepError> {
    allowed(&granted(), "repository", path, access)?;
    if fs::metadata(format!("{path}/.git")).is_ok() {
        return Ok(());
    }
    Err(StepError::failed(if fs::metadata(path).is_ok() {
        format!("`{path}` is not a git working copy (it has no .git); a `clone` step makes one")
    } else {
        format!("there is no repository at `{path}`; a `clone` step makes one")
    }))
}

/// The folder a clone goes into: missing (it is created) or empty, and writable.
pub fn clone_target(path: &str) -> Result<(), StepError> {
    allowed(&granted(), "folder", path, Access::Write)?;
    match fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => Err(StepError::failed(format!(
            "cannot clone into `{path}`: it exists and is not a folder"
        ))),
        Ok(_) => {
            let mut entries = fs::read_dir(path)
                .map_err(|e| StepError::failed(format!("cannot read `{path}`: {e}")))?;
            if entries.next().is_some() {
                return Err(StepError::failed(format!(
                    "cannot clone into `{path}`: it exists and is not empty"
                )));
            }
            Ok(())
        }
        Err(_) => fs::create_dir_all(path)
            .map_err(|e| StepError::failed(format!("cannot create `{path}`: {e}"))),
    }
}

/// A remote repository on this machine: fetching reads it, pushing writes to it.
/// A missing one inside a granted folder is left to git, which says so.
pub fn local_remote(path: &str, access: Access) -> Result<(), StepError> {
    allowed(&granted(), "remote repository", path, access)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders() -> Vec<Folder> {
        let f = |name: &str, writable| Folder {
            name: name.to_owned(),
            writable,
        };
        vec![
            f(".", true),
            f("/srv/work", true),
            f("/srv/work/readonly", false),
            f("/srv/git", false),
            f("workspace", true),
            f("srv/work/sub", true),
        ]
    }

    fn check(path: &str, access: Access) -> Result<(), String> {
        allowed(&folders(), "repository", path, access).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn absolute_paths_need_an_absolute_grant() {
        assert_eq!(check("/srv/work/app", Access::Write), Ok(()));
        assert_eq!(check("/srv/work", Access::Write), Ok(()));
        assert_eq!(check("/srv/git/app.git", Access::Read), Ok(()));
        let e = check("/srv/git/app.git", Access::Write).unwrap_err();
        assert!(e.contains("granted read-only"), "{e}");
        let e = check("/srv/work/readonly/x", Access::Write).unwrap_err();
        assert!(
            e.contains("folder `/srv/work/readonly`, granted read-only"),
            "{e}"
        );
        for outside in ["/srv/workshop", "/etc", "/", "/srv"] {
            let e = check(outside, Access::Read).unwrap_err();
            assert!(
                e.contains("is not inside a folder granted"),
                "{outside}: {e}"
            );
        }
        // The sandbox would resolve these in a relatively granted folder.
        for ambiguous in ["/workspace/app", "/srv/work/sub/app"] {
            let e = check(ambiguous, Access::Read).unwrap_err();
            assert!(e.contains("is ambiguous"), "{ambiguous}: {e}");
        }
    }

    #[test]
    fn relative_paths_stay_in_the_steps_own_folder_or_a_relatively_granted_one() {
        assert_eq!(check("scratch/app", Access::Write), Ok(()));
        assert_eq!(check(".", Access::Write), Ok(()));
        assert_eq!(check("workspace/app", Access::Write), Ok(()));
        assert_eq!(check("srv/work/sub/x", Access::Write), Ok(()));
        // The sandbox would resolve this one in `/srv/work` (wasi-libc ignores the
        // leading `/`) while git would look in the step's folder: refused.
        let e = check("srv/work/x", Access::Read).unwrap_err();
        assert!(e.contains("is not inside a folder granted"), "{e}");
    }
}
