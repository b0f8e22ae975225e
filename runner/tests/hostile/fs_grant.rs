//! Hostile plugins against `fs` grants: one plugin's writable folder must not
//! redirect another plugin's grant of a folder inside it.

use super::*;
use runner::caps::fs::FsGrant;
use runner::playbook::model::{FsAccess, FsGrant as PlaybookGrant};

fn fs_granted(base: &Path, path: &str, access: FsAccess) -> Granted {
    Granted {
        fs: FsGrant::from_playbook(
            base,
            &[PlaybookGrant {
                path: path.into(),
                access,
            }],
        ),
        process: runner::caps::process::ProcessGrant::new(&["true".into()]),
        ..granted(&[])
    }
}

/// Plugin A has `rw` on `ws` and replaces `ws/cache` with a link to a folder
/// outside every grant; plugin B, granted `ws/cache`, must not write there: its
/// step fails before it starts, naming the link.
#[test]
fn a_nested_grant_is_not_redirected_by_a_link() {
    let base =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fs-nested-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("ws")).unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    let base = base.canonicalize().unwrap();

    // Plugin A plants the link (its own read through it fails, which is fine).
    let _ = run_with(
        "symlink-escape",
        json!({ "path": "ws/cache", "target": "../outside", "read": "x" }),
        limits(5_000, 64),
        fs_granted(&base, "ws", FsAccess::Rw),
    );
    let meta = std::fs::symlink_metadata(base.join("ws/cache")).expect("plugin A planted the link");
    assert!(meta.file_type().is_symlink());

    // Plugin B, granted `ws/cache` read-write, tries to write into it.
    let f = failure(run_with(
        "process-abuse",
        json!({ "program": "true", "files": { "ws/cache/planted": "written through the link" } }),
        limits(5_000, 64),
        fs_granted(&base, "ws/cache", FsAccess::Rw),
    ));
    assert_eq!(
        f,
        StepFailure::Failed(format!(
            "granted folder `ws/cache` ({}) goes through `{}`, a symbolic link; links are not followed in granted paths, grant the folder's real path",
            base.join("ws/cache").display(),
            base.join("ws/cache").display()
        ))
    );
    assert!(
        !base.join("outside/planted").exists(),
        "plugin B wrote outside its grant through the link"
    );

    // The control case: with a real folder there, plugin B writes into it.
    std::fs::remove_file(base.join("ws/cache")).unwrap();
    std::fs::create_dir(base.join("ws/cache")).unwrap();
    let r = run_with(
        "process-abuse",
        json!({ "program": "true", "files": { "ws/cache/planted": "ok" } }),
        limits(5_000, 64),
        fs_granted(&base, "ws/cache", FsAccess::Rw),
    );
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!(
        std::fs::read_to_string(base.join("ws/cache/planted")).unwrap(),
        "ok"
    );
    let _ = std::fs::remove_dir_all(&base);
}
