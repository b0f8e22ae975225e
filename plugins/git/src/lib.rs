//! `git`: the git operations of a hotfix, rollback or post-mortem (clone, fetch,
//! check out, branch from a tag, commit, tag with a semver bump, push, merge back,
//! cherry-pick, log, diff stat), run with the real `git` binary through the
//! runner's `process` capability. The playbook grants `process: [git]` and the
//! folders that hold the working copy (and a local remote, if any) under `fs`.
//!
//! # Why inputs cannot make git do something else
//!
//! A step's `with:` comes from a playbook and from run inputs, which an operator
//! may paste from an incident ticket. The plugin treats every such value as data:
//!
//! 1. **Checked first.** Every value is checked before git runs ([`check`]):
//!    branch and tag names follow `git check-ref-format` and more (no leading
//!    `-`, no `..`, `@{`, `~ ^ : ? * [ \`, spaces or control characters);
//!    revisions are such a name (or an object name) with optional `~N`/`^N`;
//!    paths are relative without `..`; remote names are plain words; URLs are
//!    https without credentials or absolute local paths; names, e-mails and
//!    messages cannot carry a newline into a header. A value that fails is
//!    `invalid-input` and nothing has been touched.
//! 2. **Never an option.** No user value is ever passed where git would parse it
//!    as an option: revisions and names come after `--end-of-options`, paths and
//!    URLs after `--`, and the rest as the value of a fixed option
//!    (`--message=…`, `--since=…`, `--branch=…`, `--create=…`). Revisions are
//!    then resolved to object names and git gets those. So `--upload-pack=…`,
//!    `-c core.sshCommand=…` or `--output=…` as a "branch" is refused at step 1
//!    and could not be read as an option at step 2 either.
//! 3. **No configuration from the user or the input.** The runner passes a
//!    program none of its own environment and lets a plugin set only what its
//!    grant allows; git gets `LC_ALL=C` and `TZ=UTC` and nothing else, so no
//!    `HOME` (no user configuration, credentials or ssh keys), and it runs with no
//!    controlling terminal (nothing can prompt). Every call adds the global
//!    options `--no-pager --literal-pathspecs --no-replace-objects` and the
//!    author/committer identity as `-c user.name=…` / `-c user.email=…` (checked
//!    values under fixed keys). The machine's own `/etc/gitconfig` (the
//!    administrator's) is read as by any git on it; the settings below win over it.
//! 4. **A hostile repository cannot run programs.** The working copy's own
//!    `.git/config` and hooks are the remaining way in. Every call adds
//!    `-c core.hooksPath=/dev/null` (no hook runs, whatever `.git/hooks` or
//!    `core.hooksPath` say), `core.fsmonitor=false`, `credential.helper=`,
//!    signing and signature checks off, `gc.auto=0`, `maintenance.auto=false`,
//!    submodule recursion off, `rerere.enabled=false`,
//!    `safe.bareRepository=explicit`, `http.sslVerify=true`,
//!    `protocol.allow=never` with only `file` and `https` allowed, an empty
//!    `core.askPass` and `core.editor=:` / `sequence.editor=:`; command-line
//!    settings beat the repository's. `--no-pager` is always given, diffs use
//!    `--no-ext-diff --no-textconv`, commits/merges/pushes `--no-verify`, clones
//!    `--template=`. Settings a `-c` cannot neutralise because the repository
//!    chooses their names or they add paths (`include.*`, `includeIf.*`,
//!    `filter.<driver>.*`, `diff.<driver>.command|textconv`, `diff.external`,
//!    `merge.<driver>.driver`, `remote.<name>.uploadpack|receivepack|vcs`,
//!    `core.worktree`, `core.alternateRefsCommand`, `core.gitProxy`,
//!    `credential.<url>.helper`, `hook.*`, `trailer.*.command|cmd`, TLS
//!    trust overrides, `protocol.*`) make the plugin refuse the repository before any other
//!    git command runs in it. Aliases never matter: the plugin only runs
//!    built-in commands, which aliases cannot replace.
//! 5. **Only the granted folders.** git runs on the host, outside the sandbox's
//!    filesystem view, so the plugin first checks each path git will use against
//!    the folders the runner opened for it ([`place`]): the working copy and a
//!    local remote must be inside a folder granted by its absolute path (or, for
//!    a relative `repo`, inside the step's own working directory), writable
//!    (`access: rw`) when the operation writes. Remotes must be https or such a
//!    local path. git also reaches an https remote from the host, so before
//!    git talks to one the plugin asks the runner, through the `http`
//!    capability, whether the remote's origin is granted, and refuses it
//!    (`denied`) if not; git follows no redirect and no proxy the repository
//!    names; `protocol.allow=never` (file and https excepted) makes git itself
//!    refuse ssh, `git://`, `ext::` and other transports. An absolute repository is passed as
//!    `git -C <repo>` before every other argument, so a playbook can also have
//!    the runner enforce it: `process: ["git -C /srv/checkouts/* **"]`.
//!
//! The user-facing page is `docs/plugins/git.md`.

mod check;
mod git;
mod input;
mod ops;
mod place;
mod version;

use runner_sdk::{Info, Output, Plugin, StepError, capability};

use input::Input;

struct GitPlugin;

impl Plugin for GitPlugin {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "git",
            env!("CARGO_PKG_VERSION"),
            "branch, commit, tag, push, merge with the real git",
        )
        .input_schema(input::schema())
        .capabilities(&[capability::PROCESS, "fs?", "http?"])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        match input {
            Input::Clone(i) => ops::clone(i),
            Input::Fetch(i) => ops::fetch(i),
            Input::Checkout(i) => ops::checkout(i),
            Input::Branch(i) => ops::branch(i),
            Input::Commit(i) => ops::commit(i),
            Input::Tag(i) => ops::tag(i),
            Input::Push(i) => ops::push(i),
            Input::Merge(i) => ops::merge(i),
            Input::CherryPick(i) => ops::cherry_pick(i),
            Input::Log(i) => ops::log(i),
            Input::DiffStat(i) => ops::diff_stat(i),
        }
    }
}

runner_sdk::export_plugin!(GitPlugin);
