//! Artifacts: files a step leaves in its working directory for the run to keep
//! (evidence, reports, logs).
//!
//! Threat: the plugin (or a program it was granted) names as an artifact a path
//! that leads out of its working directory, a symbolic link to a host file, or
//! files so large or so many that copying them exhausts the runner's disk or time.
//! What must never happen: a host file outside the working directory is copied;
//! the host does unbounded work for a plugin; a granted secret reaches the
//! record or the disk through an artifact (its name and media type go through
//! `host::text::from_plugin`; a path that contains a secret value is refused,
//! since the runner would keep the file under that name), nor a control
//! character through its path (refused too).

use super::bindings::runner::plugin::types::Artifact as Declared;
use super::runtime::{StepFailure, printable};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    pub name: String,
    /// Where the plugin left it, relative to its working directory.
    pub path: String,
    pub media_type: String,
    /// Where the runner kept it (the working directory is deleted after the
    /// attempt); `None` when the run keeps no artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<PathBuf>,
}

/// Largest artifact kept.
pub const MAX_ARTIFACT_BYTES: u64 = 256 << 20;

/// Longest artifact name or media type kept.
pub const MAX_LABEL_BYTES: usize = 1 << 10;

/// Checks the artifacts a plugin declared: relative paths inside its working
/// directory that contain no secret value and no [`hidden`](super::text::hidden)
/// character; names and media types redacted,
/// made printable and cut ([`from_plugin`](super::text::from_plugin)). A
/// refusal quotes what the plugin sent as it is: the failure's message is
/// cleaned like any other (`runtime::redact_failure`).
pub(super) fn check(
    redactor: &super::redact::Redactor,
    artifacts: Vec<Declared>,
) -> Result<Vec<Artifact>, StepFailure> {
    let mut checked = Vec::with_capacity(artifacts.len());
    for a in artifacts {
        let path = std::path::Path::new(&a.path);
        let inside = path.is_relative()
            && path.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        if !inside {
            return Err(StepFailure::BadOutput(format!(
                "artifact `{}` points at `{}`; artifact paths must be relative to the step's working directory, without `..`",
                a.name, a.path
            )));
        }
        if redactor.finds(&a.path) {
            return Err(StepFailure::BadOutput(format!(
                "artifact `{}` has a path that contains the value of a granted secret (`{}`); the runner keeps artifacts under their path, so name the file otherwise",
                a.name, a.path
            )));
        }
        if a.path.chars().any(super::text::hidden) {
            return Err(StepFailure::BadOutput(format!(
                "artifact `{}` has a path with control characters (`{}`); the runner shows artifact paths as they are, so name the file otherwise",
                a.name, a.path
            )));
        }
        checked.push(Artifact {
            name: super::text::from_plugin(redactor, &a.name, MAX_LABEL_BYTES),
            path: a.path,
            media_type: super::text::from_plugin(redactor, &a.media_type, MAX_LABEL_BYTES),
            stored: None,
        });
    }
    Ok(checked)
}

/// Copies each artifact out of the working directory (deleted after the attempt)
/// into `dest`. Only regular files inside the working directory are kept: a
/// symbolic link (a granted program may have planted one pointing at a host file)
/// or a path through one is refused, and so is a file over [`MAX_ARTIFACT_BYTES`].
pub(super) fn keep(
    workdir: &std::path::Path,
    dest: &std::path::Path,
    artifacts: &mut [Artifact],
) -> Result<(), StepFailure> {
    let refuse = |a: &Artifact, why: &str| {
        StepFailure::BadOutput(format!(
            "artifact `{}` at `{}` {why}",
            a.name,
            printable(&a.path)
        ))
    };
    let root = workdir
        .canonicalize()
        .map_err(|e| StepFailure::Failed(format!("the working directory vanished: {e}")))?;
    for a in artifacts.iter_mut() {
        let source = workdir.join(&a.path);
        let meta = std::fs::symlink_metadata(&source)
            .map_err(|e| refuse(a, &format!("cannot be read: {e}")))?;
        if meta.file_type().is_symlink() {
            return Err(refuse(
                a,
                "is a symbolic link; artifacts must be regular files in the step's working directory",
            ));
        }
        if !meta.is_file() {
            return Err(refuse(a, "is not a regular file"));
        }
        // A directory on the way may be a symbolic link that leads out.
        let real = source
            .canonicalize()
            .map_err(|e| refuse(a, &format!("cannot be read: {e}")))?;
        if !real.starts_with(&root) {
            return Err(refuse(
                a,
                "leads out of the step's working directory through a symbolic link",
            ));
        }
        if meta.len() > MAX_ARTIFACT_BYTES {
            return Err(refuse(
                a,
                &format!(
                    "is {} MiB; the limit is {} MiB",
                    meta.len() >> 20,
                    MAX_ARTIFACT_BYTES >> 20
                ),
            ));
        }
        let target = dest.join(&a.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StepFailure::Failed(format!("cannot create `{}`: {e}", parent.display()))
            })?;
        }
        std::fs::copy(&real, &target).map_err(|e| {
            StepFailure::Failed(format!(
                "cannot keep artifact `{}` in `{}`: {e}",
                a.name,
                target.display()
            ))
        })?;
        a.stored = Some(target);
    }
    Ok(())
}
