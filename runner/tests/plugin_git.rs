//! The built-in `git` plugin end to end: the real `runner` binary runs playbooks
//! whose steps drive the real `git` against a bare repository on disk that each
//! test creates as its "origin", then the test inspects that repository with git
//! directly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A folder of its own for one test, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("runner-git-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn text(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The system git, isolated from the machine's configuration, at a fixed date.
fn git_at(dir: &Path, date: &str, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Seed Author")
        .env("GIT_AUTHOR_EMAIL", "seed@example.com")
        .env("GIT_COMMITTER_NAME", "Seed Author")
        .env("GIT_COMMITTER_EMAIL", "seed@example.com")
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .output()
        .expect("run git")
}

/// `git args` in `dir`; must succeed; its stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_at(dir, "2024-01-01T09:00:00+09:00", args);
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit_file(dir: &Path, date: &str, file: &str, content: &str, message: &str) -> String {
    std::fs::write(dir.join(file), content).unwrap();
    git(dir, &["add", "--", file]);
    let out = git_at(dir, date, &["commit", "-q", "-m", message]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git(dir, &["rev-parse", "HEAD"])
}

/// Hashes of the seed history.
struct Origin {
    /// The commit tagged `v1.2.3`.
    release: String,
    /// `feat: audit log` on main after the tag.
    feature: String,
    /// `fix: session timeout` on main after that.
    fix: String,
}

/// `origin.git`, a bare repository with `main`:
/// `v1.2.3` (app.txt of 5 lines, 2024-01-01) -> `feat: audit log` (adds
/// audit.txt, 3 lines, 2024-03-01) -> `fix: session timeout` (changes line 2 of
/// app.txt, 2024-03-02).
fn origin(s: &Scratch) -> Origin {
    git(&s.0, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
    let seed = s.path("seed");
    std::fs::create_dir_all(&seed).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    let release = commit_file(
        &seed,
        "2024-01-01T09:00:00+09:00",
        "app.txt",
        "login\nsession timeout = 30\nretries = 3\nlog level = info\nlogout\n",
        "release 1.2.3",
    );
    git(&seed, &["tag", "-a", "v1.2.3", "-m", "Release v1.2.3"]);
    let feature = commit_file(
        &seed,
        "2024-03-01T10:00:00+09:00",
        "audit.txt",
        "audit\nlog\nhere\n",
        "feat: audit log",
    );
    let fix = commit_file(
        &seed,
        "2024-03-02T10:00:00+09:00",
        "app.txt",
        "login\nsession timeout = 15\nretries = 3\nlog level = info\nlogout\n",
        "fix: session timeout",
    );
    git(&seed, &["remote", "add", "origin", &s.text("origin.git")]);
    git(&seed, &["push", "-q", "origin", "main", "v1.2.3"]);
    Origin {
        release,
        feature,
        fix,
    }
}

/// A playbook granting `git` the scratch folder (`access`), with `steps`
/// (YAML, indented for the list under `steps:`). `extra` adds plugins.
fn playbook(s: &Scratch, access: &str, extra: &str, steps: &str) -> PathBuf {
    let file = s.path("playbook.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: git-test\nplugins:\n  git:\n    uses: git\n    grants:\n      process: [git]\n      fs:\n        - {{ path: \"{dir}\", access: {access} }}\n{extra}stages:\n  - id: s\n    steps:\n{steps}",
            dir = s.0.display()
        ),
    )
    .unwrap();
    file
}

fn runner(s: &Scratch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(&s.0)
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", s.path("state"))
        .args(args)
        .output()
        .expect("run runner")
}

/// `runner exec PLAYBOOK --output json`: the exit code and the events.
fn exec(s: &Scratch, playbook: &Path) -> (Option<i32>, Vec<Value>) {
    let out = runner(s, &["exec", playbook.to_str().unwrap(), "--output", "json"]);
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect::<Vec<Value>>();
    if events.is_empty() {
        panic!(
            "no events; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.code(), events)
}

fn step<'a>(events: &'a [Value], id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == id)
        .unwrap_or_else(|| panic!("no step_finished for {id}: {events:#?}"))
}

fn succeeded<'a>(events: &'a [Value], id: &str) -> &'a Value {
    let s = step(events, id);
    assert_eq!(s["status"], "succeeded", "{id}: {s:#}");
    &s["outputs"]
}

fn error_of(events: &[Value], id: &str) -> (String, String) {
    let s = step(events, id);
    assert_eq!(s["status"], "failed", "{id}: {s:#}");
    (
        s["error_kind"].as_str().unwrap_or_default().to_owned(),
        s["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn a_hotfix_branches_from_the_tag_and_reaches_the_remote_and_main() {
    let s = Scratch::new("hotfix");
    let o = origin(&s);
    let work = s.text("work");
    let pb = playbook(
        &s,
        "rw",
        "  sh:\n    uses: exec\n    grants:\n      process: [sh]\n",
        &format!(
            r#"      - id: clone
        uses: git
        with: {{ op: clone, url: "{origin}", repo: "{work}" }}
      - id: branch
        uses: git
        with: {{ op: branch-from-tag, repo: "{work}", tag: v1.2.3, branch: hotfix/1.2.4 }}
      - id: fix
        uses: sh
        with: {{ program: sh, args: ["-c", "printf 'login\nsession timeout = 30\nretries = 3\nlog level = info\nlogout and revoke tokens\n' > '{work}/app.txt'"] }}
      - id: commit
        uses: git
        with:
          op: commit
          repo: "{work}"
          all: true
          message: "fix: session timeout\n\n# not a comment: kept"
          author_name: Jane Doe
          author_email: jane@example.com
      - id: tag
        uses: git
        with: {{ op: tag, repo: "{work}", bump: patch, message: "Hotfix 1.2.4" }}
      - id: push
        uses: git
        with: {{ op: push, repo: "{work}", refs: [hotfix/1.2.4, "${{{{ steps.tag.outputs.tag }}}}"] }}
      - id: merge
        uses: git
        with: {{ op: merge, repo: "{work}", branch: hotfix/1.2.4, into: main, push: true }}
"#,
            origin = s.text("origin.git"),
        ),
    );
    let (code, ev) = exec(&s, &pb);
    assert_eq!(code, Some(0), "{ev:#?}");

    let cloned = succeeded(&ev, "clone");
    assert_eq!(cloned["branch"], "main");
    assert_eq!(cloned["sha"], o.fix.as_str());
    let branch = succeeded(&ev, "branch");
    assert_eq!(branch["branch"], "hotfix/1.2.4");
    assert_eq!(branch["sha"], o.release.as_str());
    assert_eq!(branch["created"], true);
    let commit = succeeded(&ev, "commit");
    let fix = commit["sha"].as_str().unwrap().to_owned();
    assert_eq!(commit["branch"], "hotfix/1.2.4");
    assert_eq!(commit["files_changed"], 1);
    assert_eq!(commit["insertions"], 1);
    assert_eq!(commit["deletions"], 1);
    let tag = succeeded(&ev, "tag");
    assert_eq!(tag["tag"], "v1.2.4");
    assert_eq!(tag["version"], "1.2.4");
    assert_eq!(tag["previous"], "v1.2.3");
    assert_eq!(tag["sha"], fix.as_str());
    let push = succeeded(&ev, "push");
    assert_eq!(
        push["pushed"],
        serde_json::json!(["refs/heads/hotfix/1.2.4", "refs/tags/v1.2.4"])
    );
    let merge = succeeded(&ev, "merge");
    assert_eq!(merge["branch"], "main");
    assert_eq!(merge["up_to_date"], false);
    assert_eq!(merge["pushed"], true);

    // The remote, seen by git itself.
    let remote = s.path("origin.git");
    assert_eq!(
        git(&remote, &["cat-file", "-t", "v1.2.4"]),
        "tag",
        "annotated"
    );
    assert_eq!(git(&remote, &["rev-parse", "v1.2.4^{commit}"]), fix);
    assert_eq!(git(&remote, &["rev-parse", "refs/heads/hotfix/1.2.4"]), fix);
    assert_eq!(
        git(&remote, &["rev-parse", "main^1"]),
        o.fix,
        "main was fast"
    );
    assert_eq!(
        git(&remote, &["rev-parse", "main^2"]),
        fix,
        "a merge commit"
    );
    assert_eq!(
        git(&remote, &["rev-parse", "main"]),
        merge["sha"].as_str().unwrap()
    );
    assert_eq!(
        git(&remote, &["log", "-1", "--format=%an <%ae>%n%B", &fix]),
        "Jane Doe <jane@example.com>\nfix: session timeout\n\n# not a comment: kept"
    );
    assert_eq!(
        git(&remote, &["show", "v1.2.4:app.txt"]),
        "login\nsession timeout = 30\nretries = 3\nlog level = info\nlogout and revoke tokens"
    );
    // main has its own change and the fix.
    assert_eq!(
        git(&remote, &["show", "main:app.txt"]),
        "login\nsession timeout = 15\nretries = 3\nlog level = info\nlogout and revoke tokens"
    );
    assert_eq!(
        git(&remote, &["show", "main:audit.txt"]),
        "audit\nlog\nhere"
    );
}

#[test]
fn log_and_diff_stat_report_exact_figures_from_a_read_only_grant() {
    let s = Scratch::new("log");
    let o = origin(&s);
    git(&s.0, &["clone", "-q", &s.text("origin.git"), "work"]);
    let work = s.text("work");
    let pb = playbook(
        &s,
        "ro",
        "",
        &format!(
            r#"      - id: since
        uses: git
        with: {{ op: log, repo: "{work}", since: "2024-02-15T00:00:00+09:00" }}
      - id: range
        uses: git
        with: {{ op: log, repo: "{work}", from: v1.2.3, to: origin/main, max: 1 }}
      - id: paths
        uses: git
        with: {{ op: log, repo: "{work}", paths: [audit.txt] }}
      - id: stat
        uses: git
        with: {{ op: diff-stat, repo: "{work}", from: v1.2.3 }}
"#
        ),
    );
    let (code, ev) = exec(&s, &pb);
    assert_eq!(code, Some(0), "{ev:#?}");
    let since = succeeded(&ev, "since");
    assert_eq!(
        since["commits"],
        serde_json::json!([
            {
                "sha": o.fix, "author": "Seed Author", "email": "seed@example.com",
                "date": "2024-03-02T10:00:00+09:00", "subject": "fix: session timeout"
            },
            {
                "sha": o.feature, "author": "Seed Author", "email": "seed@example.com",
                "date": "2024-03-01T10:00:00+09:00", "subject": "feat: audit log"
            }
        ])
    );
    assert_eq!(since["count"], 2);
    assert_eq!(since["truncated"], false);
    let range = succeeded(&ev, "range");
    assert_eq!(range["count"], 1);
    assert_eq!(range["truncated"], true);
    assert_eq!(range["commits"][0]["sha"], o.fix.as_str());
    let paths = succeeded(&ev, "paths");
    assert_eq!(paths["count"], 1);
    assert_eq!(paths["commits"][0]["sha"], o.feature.as_str());
    let stat = succeeded(&ev, "stat");
    assert_eq!(stat["files_changed"], 2);
    assert_eq!(stat["insertions"], 4);
    assert_eq!(stat["deletions"], 1);
    assert_eq!(
        stat["files"],
        serde_json::json!([
            { "path": "app.txt", "insertions": 1, "deletions": 1, "binary": false },
            { "path": "audit.txt", "insertions": 3, "deletions": 0, "binary": false }
        ])
    );
    assert_eq!(stat["from"], o.release.as_str());
    assert_eq!(stat["to"], o.fix.as_str());
    assert_eq!(
        step(&ev, "stat")["summary"],
        "v1.2.3..HEAD: 2 files changed, 4 insertions(+), 1 deletion(-)"
    );
}

#[test]
fn cherry_pick_backports_a_commit_to_a_release_branch() {
    let s = Scratch::new("pick");
    let o = origin(&s);
    let seed = s.path("seed");
    git(&seed, &["branch", "release/1.2", "v1.2.3"]);
    git(&seed, &["push", "-q", "origin", "release/1.2"]);
    let work = s.text("work");
    let pb = playbook(
        &s,
        "rw",
        "",
        &format!(
            r#"      - id: clone
        uses: git
        with: {{ op: clone, url: "file://{origin}", repo: "{work}" }}
      - id: pick
        uses: git
        with: {{ op: cherry-pick, repo: "{work}", commits: ["{fix}"], into: release/1.2, push: true }}
      - id: again
        uses: git
        continue_on_error: true
        with: {{ op: cherry-pick, repo: "{work}", commits: ["{fix}"] }}
"#,
            origin = s.text("origin.git"),
            fix = o.fix,
        ),
    );
    let (code, ev) = exec(&s, &pb);
    assert_eq!(code, Some(0), "{ev:#?}");
    let pick = succeeded(&ev, "pick");
    assert_eq!(pick["count"], 1);
    assert_eq!(pick["branch"], "release/1.2");
    let picked = pick["picked"][0].as_str().unwrap();
    assert_eq!(pick["sha"], picked);
    let remote = s.path("origin.git");
    assert_eq!(git(&remote, &["rev-parse", "release/1.2"]), picked);
    assert_eq!(git(&remote, &["rev-parse", "release/1.2^"]), o.release);
    assert_eq!(
        git(&remote, &["show", "release/1.2:app.txt"]),
        "login\nsession timeout = 15\nretries = 3\nlog level = info\nlogout"
    );
    assert!(
        git(&remote, &["log", "-1", "--format=%B", "release/1.2"])
            .contains(&format!("(cherry picked from commit {})", o.fix))
    );
    // Picking the same change again has nothing to apply: a clear failure, and
    // no cherry-pick left in progress.
    let (kind, error) = error_of(&ev, "again");
    assert_eq!(kind, "failed");
    assert!(error.contains("the cherry-pick was aborted"), "{error}");
    let state = git_at(
        &s.path("work"),
        "2024-01-01T00:00:00Z",
        &["rev-parse", "-q", "--verify", "CHERRY_PICK_HEAD"],
    );
    assert!(
        !state.status.success(),
        "a cherry-pick is still in progress"
    );
}

#[test]
fn option_like_values_are_refused_before_git_runs() {
    let s = Scratch::new("inject");
    origin(&s);
    git(&s.0, &["clone", "-q", &s.text("origin.git"), "work"]);
    let work = s.text("work");
    let marker = s.text("pwned");
    let before = git(&s.path("work"), &["for-each-ref"]);
    let bad = [
        (
            "upload_pack_branch",
            format!(r#"op: branch, branch: "--upload-pack=touch {marker}""#),
        ),
        ("config_branch", r#"op: branch, branch: "-c""#.to_owned()),
        ("config_tag", r#"op: tag, tag: "-c", message: x"#.to_owned()),
        (
            "output_from",
            format!(r#"op: diff-stat, from: "--output={marker}""#),
        ),
        (
            "exec_from",
            r#"op: branch, branch: ok, from: "--exec=sh""#.to_owned(),
        ),
        ("range_log", r#"op: log, from: "HEAD..--all""#.to_owned()),
        (
            "since_log",
            format!(r#"op: log, since: "1 day; touch {marker}""#),
        ),
        (
            "pathspec",
            r#"op: commit, message: x, paths: ["--all"]"#.to_owned(),
        ),
        (
            "escape_path",
            r#"op: commit, message: x, paths: ["../../etc/passwd"]"#.to_owned(),
        ),
        (
            "newline_author",
            r#"op: commit, message: x, all: true, author_name: "a\nb""#.to_owned(),
        ),
        (
            "remote_option",
            r#"op: push, remote: "--receive-pack=sh""#.to_owned(),
        ),
        (
            "push_ref",
            r#"op: push, refs: ["main:refs/heads/x"]"#.to_owned(),
        ),
    ];
    let mut steps = String::new();
    for (id, with) in &bad {
        steps.push_str(&format!(
            "      - id: {id}\n        uses: git\n        continue_on_error: true\n        with: {{ repo: \"{work}\", {with} }}\n"
        ));
    }
    for (id, url) in [
        ("url_option", format!("--upload-pack=touch {marker}")),
        ("url_ext", format!("ext::sh -c touch% {marker}")),
        ("url_ssh", "git@example.com:o/r.git".to_owned()),
    ] {
        steps.push_str(&format!(
            "      - id: {id}\n        uses: git\n        continue_on_error: true\n        with: {{ op: clone, repo: \"{}\", url: \"{url}\" }}\n",
            s.text(id)
        ));
    }
    let pb = playbook(&s, "rw", "", &steps);
    let (code, ev) = exec(&s, &pb);
    assert_eq!(code, Some(0), "continue_on_error: {ev:#?}");
    for id in bad
        .iter()
        .map(|(id, _)| *id)
        .chain(["url_option", "url_ext", "url_ssh"])
    {
        let (kind, error) = error_of(&ev, id);
        assert_eq!(kind, "invalid-input", "{id}: {error}");
    }
    let (_, error) = error_of(&ev, "upload_pack_branch");
    assert!(error.contains("starts with `-`"), "{error}");
    assert!(!Path::new(&marker).exists(), "an injected command ran");
    assert!(!s.path("url_option").exists() && !s.path("url_ext").exists());
    assert_eq!(
        git(&s.path("work"), &["for-each-ref"]),
        before,
        "refs changed"
    );
    assert_eq!(git(&s.path("work"), &["status", "--porcelain"]), "");
}

#[test]
fn a_merge_conflict_fails_clearly_and_leaves_no_merge_in_progress() {
    let s = Scratch::new("conflict");
    let o = origin(&s);
    let seed = s.path("seed");
    git(&seed, &["switch", "-q", "-c", "hotfix/conflict", "v1.2.3"]);
    commit_file(
        &seed,
        "2024-03-03T10:00:00+09:00",
        "app.txt",
        "login\nsession timeout = 5\nretries = 3\nlog level = info\nlogout\n",
        "fix: another timeout",
    );
    git(&seed, &["push", "-q", "origin", "hotfix/conflict"]);
    let work = s.text("work");
    let pb = playbook(
        &s,
        "rw",
        "",
        &format!(
            r#"      - id: clone
        uses: git
        with: {{ op: clone, url: "{origin}", repo: "{work}" }}
      - id: merge
        uses: git
        with: {{ op: merge, repo: "{work}", branch: hotfix/conflict, into: main, push: true }}
"#,
            origin = s.text("origin.git"),
        ),
    );
    let (code, ev) = exec(&s, &pb);
    assert_eq!(code, Some(1));
    let (kind, error) = error_of(&ev, "merge");
    assert_eq!(kind, "failed");
    assert_eq!(
        error,
        "failed: merging `hotfix/conflict` into `main` conflicts in `app.txt`; the merge was aborted and `main` is unchanged"
    );
    let w = s.path("work");
    let merging = git_at(
        &w,
        "2024-01-01T00:00:00Z",
        &["rev-parse", "-q", "--verify", "MERGE_HEAD"],
    );
    assert!(!merging.status.success(), "a merge is still in progress");
    assert_eq!(git(&w, &["status", "--porcelain"]), "");
    assert_eq!(git(&w, &["rev-parse", "HEAD"]), o.fix);
    assert_eq!(git(&s.path("origin.git"), &["rev-parse", "main"]), o.fix);
}

#[test]
fn pushing_to_a_missing_or_broken_remote_fails_with_gits_message() {
    let s = Scratch::new("remote");
    origin(&s);
    let w = s.path("work");
    git(&s.0, &["clone", "-q", &s.text("origin.git"), "work"]);
    git(&w, &["remote", "set-url", "origin", &s.text("gone.git")]);
    std::fs::create_dir_all(s.path("plain")).unwrap();
    std::fs::write(s.path("plain/README"), "not a repository").unwrap();
    git(&w, &["remote", "add", "plain", &s.text("plain")]);
    let work = s.text("work");
    let pb = playbook(
        &s,
        "rw",
        "",
        &format!(
            r#"      - id: missing
        uses: git
        continue_on_error: true
        with: {{ op: push, repo: "{work}", refs: [main] }}
      - id: broken
        uses: git
        continue_on_error: true
        with: {{ op: fetch, repo: "{work}", remote: plain }}
      - id: unknown
        uses: git
        continue_on_error: true
        with: {{ op: push, repo: "{work}", remote: nowhere }}
"#
        ),
    );
    let (_, ev) = exec(&s, &pb);
    let (kind, error) = error_of(&ev, "missing");
    assert_eq!(kind, "failed");
    assert!(
        error.starts_with("failed: `git push --porcelain --atomic --no-verify -- origin refs/heads/main:refs/heads/main` failed (exit code 128):"),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "'{}' does not appear to be a git repository",
            s.text("gone.git")
        )),
        "{error}"
    );
    let (kind, error) = error_of(&ev, "broken");
    assert_eq!(kind, "failed");
    assert!(
        error.contains("does not appear to be a git repository"),
        "{error}"
    );
    let (_, error) = error_of(&ev, "unknown");
    assert!(error.contains("No such remote 'nowhere'"), "{error}");
}

#[test]
fn grants_decide_what_git_may_touch() {
    let s = Scratch::new("grants");
    origin(&s);
    git(&s.0, &["clone", "-q", &s.text("origin.git"), "work"]);
    let work = s.text("work");
    let outside = std::env::temp_dir().join(format!("runner-git-outside-{}", std::process::id()));
    let file = s.path("grants.yaml");
    std::fs::write(
        &file,
        format!(
            r#"version: 1
name: git-grants
plugins:
  g:
    uses: git
    grants:
      process: ["true"]
      fs: [{{ path: "{dir}", access: rw }}]
  ro:
    uses: git
    grants:
      process: [git]
      fs: [{{ path: "{dir}" }}]
  rel:
    uses: git
    grants:
      process: [git]
      fs: [{{ path: work }}]
stages:
  - id: s
    steps:
      - id: no_git
        uses: g
        continue_on_error: true
        with: {{ op: log, repo: "{work}" }}
      - id: read_only
        uses: ro
        continue_on_error: true
        with: {{ op: commit, repo: "{work}", message: x, allow_empty: true }}
      - id: reads_are_fine
        uses: ro
        with: {{ op: log, repo: "{work}", max: 1 }}
      - id: outside
        uses: ro
        continue_on_error: true
        with: {{ op: clone, repo: "{outside}", url: "{origin}" }}
      - id: scratch
        uses: ro
        with: {{ op: clone, repo: scratch/app, url: "{origin}" }}
      - id: relative_grant
        uses: rel
        continue_on_error: true
        with: {{ op: log, repo: work, max: 1 }}
      - id: remote_outside
        uses: ro
        continue_on_error: true
        with: {{ op: clone, repo: "{work}2", url: "/srv/nowhere/app.git" }}
"#,
            dir = s.0.display(),
            outside = outside.display(),
            origin = s.text("origin.git"),
        ),
    )
    .unwrap();
    let (_, ev) = exec(&s, &file);
    let (kind, error) = error_of(&ev, "no_git");
    assert_eq!(kind, "denied");
    assert!(
        error.contains(
            "program `git` is not granted to plugin `g`; add it to `plugins.g.grants.process`"
        ),
        "{error}"
    );
    let (kind, error) = error_of(&ev, "read_only");
    assert_eq!(kind, "denied");
    assert!(
        error.contains(
            "granted read-only; this operation writes to it, so grant the folder with `access: rw`"
        ),
        "{error}"
    );
    succeeded(&ev, "reads_are_fine");
    let (kind, error) = error_of(&ev, "outside");
    assert_eq!(kind, "denied", "{error}");
    assert!(
        error.contains("is not inside a folder granted to this plugin"),
        "{error}"
    );
    assert!(!outside.exists());
    // A clone into the step's own (scratch) folder works, and is gone after it.
    assert_eq!(succeeded(&ev, "scratch")["branch"], "main");
    // A folder granted by a path relative to the playbook: git runs in it.
    assert_eq!(succeeded(&ev, "relative_grant")["count"], 1);
    let (kind, error) = error_of(&ev, "remote_outside");
    assert_eq!(kind, "denied");
    assert!(
        error.contains("remote repository `/srv/nowhere/app.git`"),
        "{error}"
    );
}

#[test]
fn hooks_and_hostile_settings_in_the_working_copy_never_run() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("hostile");
    origin(&s);
    let w = s.path("work");
    git(&s.0, &["clone", "-q", &s.text("origin.git"), "work"]);
    let hook = |path: &Path, marker: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("#!/bin/sh\ntouch '{}'\n", s.text(marker))).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    hook(&w.join(".git/hooks/post-commit"), "marker-hooks-dir");
    hook(&w.join(".git/hooks/pre-commit"), "marker-hooks-dir");
    hook(&s.path("evil-hooks/post-commit"), "marker-hooks-path");
    hook(&s.path("evil-hooks/pre-commit"), "marker-hooks-path");
    hook(&s.path("fsmonitor.sh"), "marker-fsmonitor");
    git(&w, &["config", "core.hooksPath", &s.text("evil-hooks")]);
    git(&w, &["config", "core.fsmonitor", &s.text("fsmonitor.sh")]);
    git(
        &w,
        &[
            "config",
            "core.pager",
            &format!("touch {}", s.text("marker-pager")),
        ],
    );
    git(
        &w,
        &[
            "config",
            "alias.commit",
            &format!("!touch {}", s.text("marker-alias")),
        ],
    );
    git(
        &w,
        &[
            "config",
            "credential.helper",
            &format!("!touch {}", s.text("marker-cred")),
        ],
    );

    // A second working copy with settings that cannot be overridden by `-c`.
    git(&s.0, &["clone", "-q", &s.text("origin.git"), "filtered"]);
    let f = s.path("filtered");
    git(
        &f,
        &[
            "config",
            "filter.evil.smudge",
            &format!("touch {}", s.text("marker-filter")),
        ],
    );
    git(
        &f,
        &[
            "config",
            "remote.origin.uploadpack",
            &format!("touch {}", s.text("marker-upload")),
        ],
    );
    std::fs::write(f.join(".git/info/attributes"), "* filter=evil\n").unwrap();

    let pb = playbook(
        &s,
        "rw",
        "",
        &format!(
            r#"      - id: commit
        uses: git
        with: {{ op: commit, repo: "{work}", message: "change", allow_empty: true }}
      - id: filtered
        uses: git
        continue_on_error: true
        with: {{ op: checkout, repo: "{filtered}", ref: v1.2.3, fetch: true }}
"#,
            work = s.text("work"),
            filtered = s.text("filtered"),
        ),
    );
    let (code, ev) = exec(&s, &pb);
    assert_eq!(code, Some(0), "{ev:#?}");
    succeeded(&ev, "commit");
    let (kind, error) = error_of(&ev, "filtered");
    assert_eq!(kind, "failed");
    assert!(error.contains("`filter.evil.smudge`"), "{error}");
    assert!(error.contains("`remote.origin.uploadpack`"), "{error}");
    assert!(
        error.contains("the git plugin refuses to work in it"),
        "{error}"
    );
    for marker in [
        "marker-hooks-dir",
        "marker-hooks-path",
        "marker-fsmonitor",
        "marker-pager",
        "marker-alias",
        "marker-cred",
        "marker-filter",
        "marker-upload",
    ] {
        assert!(!s.path(marker).exists(), "{marker} exists: something ran");
    }
    assert_eq!(
        git(&f, &["rev-parse", "HEAD"]),
        git(&f, &["rev-parse", "origin/main"]),
        "the refused repository was not touched"
    );

    // The hooks are real: git run the ordinary way fires them.
    git(&w, &["commit", "-q", "--allow-empty", "-m", "by hand"]);
    assert!(
        s.path("marker-hooks-path").exists(),
        "the test's hook is broken"
    );
}

#[test]
fn describe_shows_the_operations_and_capabilities() {
    let s = Scratch::new("describe");
    let out = runner(&s, &["plugins", "describe", "git"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["name"], "git");
    assert_eq!(d["capabilities"], serde_json::json!(["process"]));
    assert_eq!(d["optional"], serde_json::json!(["fs", "http"]));
    let ops = &d["input_schema"]["properties"]["op"]["enum"];
    for op in [
        "clone",
        "fetch",
        "checkout",
        "branch",
        "commit",
        "tag",
        "push",
        "merge",
        "cherry-pick",
        "log",
        "diff-stat",
    ] {
        assert!(
            ops.as_array().unwrap().iter().any(|o| o == op),
            "{op}: {ops}"
        );
    }
}

#[test]
fn fetch_checkout_and_delete_follow_the_remote() {
    let s = Scratch::new("follow");
    let o = origin(&s);
    git(&s.0, &["clone", "-q", &s.text("origin.git"), "work"]);
    // Others push after the clone: a commit on main and a new branch.
    let seed = s.path("seed");
    let newer = commit_file(
        &seed,
        "2024-03-04T10:00:00+09:00",
        "audit.txt",
        "audit\nlog\nhere\nand there\n",
        "feat: more audit",
    );
    git(
        &seed,
        &[
            "push",
            "-q",
            "origin",
            "main",
            "main:refs/heads/hotfix/remote",
        ],
    );
    let work = s.text("work");
    let pb = playbook(
        &s,
        "rw",
        "",
        &format!(
            r#"      - id: fetch
        uses: git
        with: {{ op: fetch, repo: "{work}", branch: main }}
      - id: remote_branch
        uses: git
        with: {{ op: checkout, repo: "{work}", ref: hotfix/remote }}
      - id: tag
        uses: git
        with: {{ op: checkout, repo: "{work}", ref: v1.2.3 }}
      - id: delete
        uses: git
        with: {{ op: push, repo: "{work}", refs: [hotfix/remote], delete: true }}
"#
        ),
    );
    let (code, ev) = exec(&s, &pb);
    assert_eq!(code, Some(0), "{ev:#?}");
    let fetch = succeeded(&ev, "fetch");
    assert_eq!(fetch["sha"], newer.as_str());
    assert_eq!(fetch["updated"], true);
    let remote_branch = succeeded(&ev, "remote_branch");
    assert_eq!(remote_branch["branch"], "hotfix/remote");
    assert_eq!(remote_branch["sha"], newer.as_str());
    let tag = succeeded(&ev, "tag");
    assert_eq!(tag["detached"], true);
    assert_eq!(tag["sha"], o.release.as_str());
    let delete = succeeded(&ev, "delete");
    assert_eq!(
        delete["pushed"],
        serde_json::json!(["refs/heads/hotfix/remote"])
    );
    assert_eq!(delete["deleted"], true);
    let w = s.path("work");
    assert_eq!(git(&w, &["rev-parse", "main"]), newer, "fast-forwarded");
    assert_eq!(
        git(&w, &["config", "branch.hotfix/remote.merge"]),
        "refs/heads/hotfix/remote",
        "a tracking branch"
    );
    let remote = s.path("origin.git");
    assert_eq!(git(&remote, &["branch", "--list", "hotfix/*"]), "");
}

/// A loopback listener that closes every connection, counting those that open
/// with a TLS handshake (first byte 0x16): the place an https remote points to.
/// It listens on an address of its own ([`common::own_loopback`]).
struct Closing {
    host: String,
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Who knocked: the peer's address and the process `ss` names for it,
    /// when it still can (for the message of a failing assertion).
    who: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Closing {
    fn start() -> Closing {
        let host = common::own_loopback();
        let listener = std::net::TcpListener::bind((host.as_str(), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let who = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), who.clone());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let (count, seen) = (count.clone(), seen.clone());
                std::thread::spawn(move || {
                    use std::io::Read;
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    let owner = std::process::Command::new("ss")
                        .args(["-tnpH", "src", &peer])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                        .unwrap_or_default();
                    // The knocker and its parents (it was git, started by a
                    // runner whose plugin had taken a refusal for a network
                    // error: see hostile.rs every_refusal_reaches_the_plugin_as_a_refusal).
                    let owner = match owner.split("pid=").nth(1) {
                        Some(p) => format!("{owner}{}", ancestry(p)),
                        None => owner,
                    };
                    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                    let mut first = [0u8; 1];
                    if stream.read_exact(&mut first).is_ok() && first[0] == 0x16 {
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        seen.lock().unwrap().push(format!("{peer}: {owner}"));
                    }
                });
            }
        });
        Closing {
            host,
            port,
            accepted,
            who,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The TLS knocks so far, each with whoever made it.
    fn knocks(&self) -> Vec<String> {
        self.who.lock().unwrap().clone()
    }
}

/// Process `pid` (leading digits of the text) and up to five of its parents:
/// each one's command line and working directory.
fn ancestry(pid: &str) -> String {
    let mut pid: String = pid.chars().take_while(char::is_ascii_digit).collect();
    let mut shown = String::new();
    for _ in 0..6 {
        if pid.is_empty() || pid == "0" {
            break;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        shown.push_str(&format!(
            " <- [{pid}] {} (cwd {})",
            String::from_utf8_lossy(&cmd).replace('\0', " "),
            cwd.display()
        ));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        pid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .unwrap_or_default()
            .trim()
            .to_owned();
    }
    shown
}

/// git reaches an https remote from the host, outside the runner's `http`
/// check: the plugin asks the runner about the remote's origin first. Without an
/// `http` grant naming it, a clone from it and a fetch from a remote the working
/// copy points at it are denied and nothing connects; with the grant, git goes
/// there (and fails on this listener, which speaks no TLS).
#[test]
fn an_https_remote_needs_an_http_grant_for_its_origin() {
    let s = Scratch::new("https");
    origin(&s);
    git(&s.0, &["clone", "-q", &s.text("origin.git"), "work"]);
    let remote = Closing::start();
    let origin_url = format!("https://{}:{}", remote.host, remote.port);
    let url = format!("{origin_url}/app.git");
    git(&s.path("work"), &["remote", "set-url", "origin", &url]);
    let steps = format!(
        "      - {{ id: clone, uses: git, continue_on_error: true, with: {{ op: clone, repo: \"{dir}/fresh\", url: \"{url}\" }} }}\n      - {{ id: fetch, uses: git, continue_on_error: true, with: {{ op: fetch, repo: \"{dir}/work\" }} }}\n",
        dir = s.0.display()
    );
    let (_, events) = exec(&s, &playbook(&s, "rw", "", &steps));
    for id in ["clone", "fetch"] {
        let (kind, error) = error_of(&events, id);
        assert_eq!(kind, "denied", "{id}: {error}");
        // The runner's own refusal, naming the grant to add.
        assert!(
            error.contains(&format!("`{origin_url}` is not granted"))
                && error.contains("plugins.git.grants.http"),
            "{id}: {error}"
        );
    }
    assert_eq!(
        remote.connections(),
        0,
        "nothing reached the remote; it heard {:?}; events {:#?}",
        remote.knocks(),
        events
    );
    assert!(!s.path("fresh").exists(), "the clone did not start");

    // Granted: the plugin lets git go, and git meets the listener.
    let granted = playbook(&s, "rw", "", &steps.replace("uses: git", "uses: git_https"));
    let text = std::fs::read_to_string(&granted).unwrap().replace(
        "stages:",
        &format!(
            "  git_https:\n    uses: git\n    grants:\n      process: [git]\n      http: [\"{}\"]\n      fs:\n        - {{ path: \"{}\", access: rw }}\nstages:",
            origin_url,
            s.0.display()
        ),
    );
    std::fs::write(&granted, text).unwrap();
    let (_, events) = exec(&s, &granted);
    for id in ["clone", "fetch"] {
        let (kind, error) = error_of(&events, id);
        // git's own failure against a listener that speaks no TLS (closed at
        // once, or reset once the handshake was read): not a refusal.
        assert!(
            matches!(kind.as_str(), "failed" | "retryable") && error.contains("fatal:"),
            "{id}: {kind}: {error}"
        );
    }
    assert!(remote.connections() > 0, "git reached the granted remote");
}
