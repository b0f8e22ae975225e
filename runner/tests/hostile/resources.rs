//! Host resources a plugin can make the runner spend where the host does the
//! work: copying artifacts (count, bytes per step and per run, time) and reading
//! `describe`'s answer. Each refusal names its limit; the disk is checked, not
//! only the error.

use std::sync::Arc;

use runner::host::artifacts::{Kept, MAX_ARTIFACTS, RunBudget};
use runner::host::runtime::MAX_SCHEMA_BYTES;

use super::*;

/// A fresh, absent folder for a step's kept artifacts.
fn dest(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("artifacts-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Files under `dir` (recursively) and the bytes they hold; (0, 0) when absent.
fn on_disk(dir: &Path) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries.flatten().fold((0, 0), |(files, bytes), e| {
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.is_dir() {
            let (f, b) = on_disk(&e.path());
            (files + f, bytes + b)
        } else {
            (files + 1, bytes + meta.len())
        }
    })
}

/// Grants that keep artifacts in `dest`, within `budget`.
fn keeping(dest: &Path, budget: &Arc<RunBudget>) -> Granted {
    Granted {
        artifacts: Some(dest.to_path_buf()),
        artifact_budget: budget.clone(),
        ..granted(&[])
    }
}

/// `artifact-flood`: `count` sparse files of `size` bytes.
fn flood(count: u32, size: u64, timeout_ms: u64, grants: Granted) -> StepResult {
    run_with(
        "artifact-flood",
        json!({ "count": count, "size": size }),
        limits(timeout_ms, 64),
        grants,
    )
}

#[test]
fn artifacts_up_to_the_caps_are_kept() {
    // The control case: the refusals below are for their reasons, not always.
    let dir = dest("kept");
    let budget = Arc::new(RunBudget::default());
    let r = flood(MAX_ARTIFACTS as u32, 1000, 10_000, keeping(&dir, &budget));
    let out = r.outcome.expect("64 artifacts of 1000 bytes are kept");
    assert_eq!(out.artifacts.len(), MAX_ARTIFACTS);
    assert_eq!(out.artifacts[0].stored, Some(dir.join("flood-0.bin")));
    assert_eq!(on_disk(&dir), (MAX_ARTIFACTS, 64_000));
    assert_eq!(
        budget.kept(),
        Kept {
            bytes: 64_000,
            files: 64
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn too_many_artifacts_are_refused_by_count() {
    let dir = dest("count");
    let budget = Arc::new(RunBudget::default());
    let f = failure(flood(
        MAX_ARTIFACTS as u32 + 1,
        1,
        10_000,
        keeping(&dir, &budget),
    ));
    assert_eq!(
        f,
        StepFailure::BadOutput(
            "the step returned 65 artifacts; the limit is 64 artifacts per step: write fewer or smaller artifacts (compress them, or keep only what the post-mortem needs), e.g. one archive of them".into()
        )
    );
    assert_eq!(on_disk(&dir), (0, 0), "something was kept");
    assert_eq!(budget.kept(), Kept::default());
}

#[test]
fn sparse_files_over_the_step_cap_are_refused_before_any_copy() {
    // 300 MiB that occupy almost no disk in the working directory: the limit is on
    // what the copy would write.
    let dir = dest("sparse");
    let budget = Arc::new(RunBudget::default());
    let f = failure(flood(3, 100 << 20, 10_000, keeping(&dir, &budget)));
    assert_eq!(
        f,
        StepFailure::BadOutput(
            "the step's 3 artifacts total 300 MiB (the largest, `flood 2`, is 100 MiB; sizes count in full even for sparse files); the limit is 256 MiB per step: write fewer or smaller artifacts (compress them, or keep only what the post-mortem needs)".into()
        )
    );
    assert_eq!(on_disk(&dir), (0, 0), "bytes were written");
    assert!(!dir.exists(), "the step's folder was created");
    assert_eq!(budget.kept(), Kept::default());
}

#[test]
fn the_run_budget_is_shared_by_the_steps_of_a_run() {
    // A budget of 3 MiB stands for the run's 1 GiB: two steps of 2 MiB each.
    let budget = Arc::new(RunBudget::new(3 << 20, 1024));
    let (first, second) = (dest("run-1"), dest("run-2"));
    let r = flood(1, 2 << 20, 10_000, keeping(&first, &budget));
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!(on_disk(&first), (1, 2 << 20));
    let f = failure(flood(1, 2 << 20, 10_000, keeping(&second, &budget)));
    assert_eq!(
        f,
        StepFailure::BadOutput(
            "the step's artifacts were not kept: the run has kept 2 MiB of artifacts and this step's total 2 MiB; the limit is 3 MiB per run: write fewer or smaller artifacts (compress them, or keep only what the post-mortem needs)".into()
        )
    );
    assert_eq!(on_disk(&second), (0, 0), "the second step wrote");
    assert_eq!(on_disk(&first), (1, 2 << 20), "the first step's file went");
    assert_eq!(
        budget.kept(),
        Kept {
            bytes: 2 << 20,
            files: 1
        }
    );
    let _ = std::fs::remove_dir_all(&first);
}

#[test]
fn a_copy_past_the_step_deadline_times_out_and_leaves_nothing() {
    // The plugin returns 20 ms before its 2 s timeout with 240 MiB of (sparse)
    // artifacts, within every size cap; writing them takes far longer than 20 ms.
    // Should the plugin oversleep its deadline instead, it times out itself: the
    // step times out and keeps nothing either way, while a copy not bounded by
    // the deadline would let the step succeed.
    let dir = dest("deadline");
    let budget = Arc::new(RunBudget::default());
    let r = run_with(
        "artifact-flood",
        json!({ "count": 2, "size": 120 << 20, "sleep_ms": 1_980 }),
        limits(2_000, 64),
        keeping(&dir, &budget),
    );
    let f = failure(r);
    assert_eq!(f, StepFailure::TimedOut(Duration::from_millis(2_000)));
    assert_eq!(on_disk(&dir), (0, 0), "a partial copy was left");
    assert_eq!(
        budget.kept(),
        Kept::default(),
        "the budget was not given back"
    );
}

#[test]
fn a_huge_input_schema_is_refused_by_its_length() {
    let err = rt()
        .block_on(runtime().load(&wasm("huge-schema")))
        .err()
        .expect("load must fail");
    assert!(
        matches!(
            err,
            LoadError::TooLarge {
                what: "an input schema",
                size,
                limit: MAX_SCHEMA_BYTES,
                ..
            } if size == 10 << 20
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "`describe` returned an input schema of 10485760 bytes; the limit is 262144 bytes (an input schema describes the `with:` fields in a few KiB): the plugin is at fault; fix its `describe` or use another plugin"
    );
}
