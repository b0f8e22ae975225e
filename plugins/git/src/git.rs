//! Running the real `git` through the `process` capability, always the same
//! hardened way (see the crate's documentation for why each piece is there).

use runner_sdk::StepError;
use runner_sdk::process::{Command, Completed};

use crate::check::shown;

/// Environment of every git process: the runner passes a program nothing else,
/// and lets a plugin set only these without a grant (no `HOME`, so no user
/// configuration; no terminal, so nothing can prompt).
const ENV: &[(&str, &str)] = &[("LC_ALL", "C"), ("TZ", "UTC")];

/// Global options of every git process, before the command.
const OPTIONS: &[&str] = &[
    "--no-pager",
    // Paths given to `git add` / `git log` are literal: no `:(magic)`, no globs.
    "--literal-pathspecs",
    // History as it is stored, not as `refs/replace` would show it.
    "--no-replace-objects",
];

/// `-c` settings of every git process. Command-line settings win over the
/// repository's `.git/config`, so these hold even in a hostile repository.
const CONFIG: &[&str] = &[
    // Hooks: looked up in a directory that cannot contain any.
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    // Credential helpers are programs: none (an empty value clears the list).
    "credential.helper=",
    // Signing and verifying run gpg/ssh-keygen: off.
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "tag.forceSignAnnotated=false",
    "push.gpgSign=false",
    "merge.verifySignatures=false",
    "log.showSignature=false",
    // No background work that outlives the step.
    "gc.auto=0",
    "maintenance.auto=false",
    // Submodules are other repositories with their own config: left alone.
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "push.recurseSubmodules=no",
    // Recorded conflict resolutions would resolve a conflict silently.
    "rerere.enabled=false",
    // A bare repository inside the working copy is never picked up implicitly.
    "safe.bareRepository=explicit",
    "http.sslVerify=true",
    // git reaches an https remote from the host, outside the runner's `http`
    // check, after the plugin asked the runner about the remote's origin
    // (`ops::https_granted`): a redirect must not take it elsewhere.
    "http.followRedirects=false",
    // Transports: https and local paths only (no ext::, fd::, ssh, git://, plain
    // http or remote helpers); a repository's own `protocol.*` is refused below.
    "protocol.allow=never",
    "protocol.file.allow=always",
    "protocol.https.allow=always",
    // Nothing asks for a password, nothing opens an editor.
    "core.askPass=",
    "core.editor=:",
    "sequence.editor=:",
    "i18n.logOutputEncoding=UTF-8",
    "advice.detachedHead=false",
    "color.ui=never",
];

/// Repository settings refused outright: each makes git run a program, read
/// configuration from elsewhere, work outside the folder or trust another TLS
/// authority, and a `-c` cannot neutralise it because its name is chosen by the
/// repository (`filter.<driver>.smudge`) or because it is a path/list.
/// `(section, subsection present, variable)`; `*` matches any variable.
const REFUSED: &[(&str, bool, &str)] = &[
    ("include", false, "*"),
    ("include", true, "*"),
    ("includeif", false, "*"),
    ("includeif", true, "*"),
    ("filter", true, "clean"),
    ("filter", true, "smudge"),
    ("filter", true, "process"),
    ("diff", true, "command"),
    ("diff", true, "textconv"),
    ("diff", false, "external"),
    ("merge", true, "driver"),
    ("remote", true, "uploadpack"),
    ("remote", true, "receivepack"),
    ("remote", true, "vcs"),
    ("core", false, "worktree"),
    ("core", false, "alternaterefscommand"),
    ("core", false, "gitproxy"),
    ("credential", true, "helper"),
    ("hook", true, "*"),
    ("trailer", true, "command"),
    ("trailer", true, "cmd"),
    ("http", true, "sslverify"),
    ("http", true, "sslcainfo"),
    ("http", true, "sslcapath"),
    ("http", false, "sslcainfo"),
    ("http", false, "sslcapath"),
    // A proxy is another host git would connect to, unseen by the runner.
    ("http", false, "proxy"),
    ("http", true, "proxy"),
    ("remote", true, "proxy"),
    ("protocol", false, "allow"),
    ("protocol", true, "allow"),
];

/// Most bytes of git's stderr quoted in an error.
const ERROR_TAIL: usize = 1500;

/// Where git works: the working copy given as `repo`.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Normalised (see [`crate::check::location`]).
    pub path: String,
}

impl Repo {
    pub fn absolute(&self) -> bool {
        self.path.starts_with('/')
    }
}

/// Author and committer of new commits and tags.
#[derive(Debug, Clone)]
pub struct Ident {
    pub name: String,
    pub email: String,
}

impl Default for Ident {
    fn default() -> Self {
        Ident {
            name: "runner".to_owned(),
            email: "runner@localhost".to_owned(),
        }
    }
}

/// Runs git in one repository.
#[derive(Debug, Clone)]
pub struct Git {
    pub repo: Repo,
    pub ident: Ident,
}

impl Git {
    pub fn new(repo: Repo, ident: Ident) -> Git {
        Git { repo, ident }
    }

    /// The command for `git <args>`: the location first (so a playbook can pin it
    /// with a grant pattern like `"git -C /srv/checkouts/* **"`), then the fixed
    /// settings, then `args`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        if self.repo.absolute() {
            command = command.arg("-C").arg(&self.repo.path);
        } else {
            // Relative: the runner resolves it as the process's working directory.
            command = command.cwd(&self.repo.path);
        }
        command = command.args(OPTIONS.iter().copied());
        for setting in CONFIG {
            command = command.arg("-c").arg(*setting);
        }
        // Author and committer: checked values under fixed keys (a value cannot
        // become a key or an option).
        command
            .arg("-c")
            .arg(format!("user.name={}", self.ident.name))
            .arg("-c")
            .arg(format!("user.email={}", self.ident.email))
            .args(args.iter().copied())
            .envs(ENV.iter().copied())
    }

    /// Runs `git <args>` whatever its exit code. A refusal by the runner is
    /// `denied`; git that could not be started in `repo` is `failed`, explained.
    pub fn run(&self, args: &[&str]) -> Result<Completed, StepError> {
        match self.command(args).run() {
            Ok(done) => Ok(done),
            Err(StepError::Denied(m)) if m.starts_with("cannot start") => {
                Err(StepError::failed(if self.repo.absolute() {
                    format!("{m} (in `{}`)", self.repo.path)
                } else {
                    format!(
                        "{m}: git runs in `{}` resolved inside the step's own working directory, \
                         where that folder does not exist; give `repo` as the absolute path of a \
                         folder inside a granted `fs` path",
                        self.repo.path
                    )
                }))
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `git <args>` and returns its stdout; a non-zero exit is an error that
    /// quotes the command and the end of git's message.
    pub fn ok(&self, args: &[&str]) -> Result<String, StepError> {
        let done = self.run(args)?;
        if done.success() {
            Ok(done.stdout_lossy().into_owned())
        } else {
            Err(failure(args, &done, ""))
        }
    }

    /// Runs `git <args>`: `Some(stdout)` on success, `None` on a non-zero exit
    /// (for questions like `rev-parse --verify --quiet`).
    pub fn query(&self, args: &[&str]) -> Result<Option<String>, StepError> {
        let done = self.run(args)?;
        if done.timed_out {
            return Err(failure(args, &done, ""));
        }
        Ok(done
            .success()
            .then(|| done.stdout_lossy().trim_end().to_owned()))
    }

    /// The commit `rev` names, as a full object name, or `None`.
    pub fn commit_of(&self, rev: &str) -> Result<Option<String>, StepError> {
        let peeled = format!("{rev}^{{commit}}");
        self.query(&[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &peeled,
        ])
    }

    /// Like [`Git::commit_of`], an error naming `what` when there is none.
    pub fn resolve(&self, what: &str, rev: &str) -> Result<String, StepError> {
        self.commit_of(rev)?.ok_or_else(|| {
            StepError::failed(format!(
                "{what} `{}` does not name a commit in `{}` (`fetch: true` fetches branches and tags first)",
                shown(rev),
                self.repo.path
            ))
        })
    }

    /// Whether the full ref `name` (`refs/heads/x`) exists.
    pub fn has_ref(&self, full: &str) -> Result<bool, StepError> {
        Ok(self
            .query(&["rev-parse", "--verify", "--quiet", "--end-of-options", full])?
            .is_some())
    }

    /// The current branch, or `None` when HEAD is detached.
    pub fn current_branch(&self) -> Result<Option<String>, StepError> {
        Ok(self
            .query(&["symbolic-ref", "--quiet", "--short", "HEAD"])?
            .filter(|b| !b.is_empty()))
    }

    /// HEAD's commit, or `None` in a repository without commits.
    pub fn head(&self) -> Result<Option<String>, StepError> {
        self.commit_of("HEAD")
    }

    /// Refuses a repository whose own configuration would make git run a
    /// program or leave the folder (see [`REFUSED`]).
    pub fn audit_config(&self) -> Result<(), StepError> {
        let out = self.ok(&["config", "--list", "--show-scope", "--no-includes", "-z"])?;
        let found = refused_settings(&out);
        if found.is_empty() {
            return Ok(());
        }
        Err(StepError::failed(format!(
            "the repository in `{}` sets {} in its own configuration, which would make git run a \
             program or leave the working copy; the git plugin refuses to work in it (remove the \
             setting{} from .git/config)",
            self.repo.path,
            found
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if found.len() == 1 { "" } else { "s" }
        )))
    }
}

/// The refused keys set by the repository (`local` or `worktree` scope) in the
/// output of `git config --list --show-scope -z`.
pub fn refused_settings(listing: &str) -> Vec<String> {
    let mut fields = listing.split('\0');
    let mut found = Vec::new();
    while let (Some(scope), Some(entry)) = (fields.next(), fields.next()) {
        if scope != "local" && scope != "worktree" {
            continue;
        }
        let key = entry.split('\n').next().unwrap_or_default();
        if is_refused(key) && !found.iter().any(|k| k == key) {
            found.push(key.to_owned());
        }
    }
    found
}

fn is_refused(key: &str) -> bool {
    let Some((section, rest)) = key.split_once('.') else {
        return false;
    };
    let section = section.to_ascii_lowercase();
    let (has_sub, variable) = match rest.rsplit_once('.') {
        Some((_, var)) => (true, var.to_ascii_lowercase()),
        None => (false, rest.to_ascii_lowercase()),
    };
    REFUSED
        .iter()
        .any(|(s, sub, v)| *s == section && *sub == has_sub && (*v == "*" || *v == variable))
}

/// The error for a git command that failed: the command (as the user would type
/// it, without the fixed settings), its exit, and the end of what it said.
pub fn failure(args: &[&str], done: &Completed, context: &str) -> StepError {
    let command = display(args);
    let said = said(done);
    let what = match (done.timed_out, done.exit_code) {
        (true, _) => "timed out".to_owned(),
        (false, Some(code)) => format!("failed (exit code {code})"),
        (false, None) => "was killed by a signal".to_owned(),
    };
    let mut message = format!("`{command}` {what}");
    if !context.is_empty() {
        message.push_str(": ");
        message.push_str(context);
    }
    if said.is_empty() {
        message.push_str("; git said nothing");
    } else {
        message.push_str(":\n");
        message.push_str(&said);
    }
    if done.timed_out || transient(&said) {
        StepError::Retryable(message)
    } else {
        StepError::Failed(message)
    }
}

/// The end of git's stderr (or stdout when stderr is empty), without `hint:` lines.
pub fn said(done: &Completed) -> String {
    let text = if done.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        done.stderr_lossy()
    } else {
        done.stdout_lossy()
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("hint:") && !l.trim().is_empty())
        .collect();
    let joined = kept.join("\n");
    runner_sdk::tail_lossy(joined.as_bytes(), ERROR_TAIL).into_owned()
}

/// Network trouble worth a retry (a step's `retry:` decides whether it happens).
fn transient(said: &str) -> bool {
    const SIGNS: &[&str] = &[
        "Could not resolve host",
        "Connection refused",
        "Connection timed out",
        "Connection reset",
        "Operation timed out",
        "Failed to connect",
        "The requested URL returned error: 5",
        "RPC failed",
        "early EOF",
        "the remote end hung up unexpectedly",
    ];
    SIGNS.iter().any(|s| said.contains(s))
}

/// `git arg arg "arg with space"`, at most 200 characters.
pub fn display(args: &[&str]) -> String {
    let mut shown_cmd = "git".to_owned();
    for arg in args {
        shown_cmd.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"') {
            shown_cmd.push_str(&format!("{arg:?}"));
        } else {
            shown_cmd.push_str(arg);
        }
    }
    if shown_cmd.chars().count() > 200 {
        shown_cmd = shown_cmd.chars().take(199).collect::<String>() + "…";
    }
    shown_cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_settings_are_found() {
        let listing = [
            "local\0core.repositoryformatversion\n0",
            "local\0core.hookspath\n.husky/_",
            "local\0filter.X.smudge\ntouch /tmp/p",
            "local\0remote.origin.url\n/srv/git/app.git",
            "local\0remote.origin.uploadpack\nsh -c x",
            "local\0include.path\n/etc/x",
            "local\0includeIf.onbranch:main.path\nx",
            "worktree\0core.worktree\n/etc",
            "local\0diff.external\nx",
            "local\0http.https://example.com.sslverify\nfalse",
            "local\0user.name\nJane",
            "command\0credential.helper\n",
            "local\0credential.https://example.com.helper\nx",
            "local\0hook.pre.command\nx",
            "local\0merge.ours.driver\ntrue",
            "local\0core.sshcommand\nx",
            "local\0http.proxy\nhttp://10.0.0.1:3128",
            "local\0http.https://example.com.proxy\nhttp://10.0.0.1:3128",
            "local\0remote.origin.proxy\nhttp://10.0.0.1:3128",
            "",
        ]
        .join("\0");
        assert_eq!(
            refused_settings(&listing),
            [
                "filter.X.smudge",
                "remote.origin.uploadpack",
                "include.path",
                "includeIf.onbranch:main.path",
                "core.worktree",
                "diff.external",
                "http.https://example.com.sslverify",
                "credential.https://example.com.helper",
                "hook.pre.command",
                "merge.ours.driver",
                "http.proxy",
                "http.https://example.com.proxy",
                "remote.origin.proxy",
            ]
        );
    }

    #[test]
    fn failures_quote_git_and_sort_network_trouble() {
        let done = |stderr: &str| Completed {
            exit_code: Some(128),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
            timed_out: false,
            truncated: false,
        };
        let e = failure(
            &["push", "origin", "refs/heads/a b"],
            &done("hint: try\nfatal: '/x' does not appear to be a git repository\n"),
            "",
        );
        assert_eq!(e.kind(), "failed");
        assert_eq!(
            e.message(),
            "`git push origin \"refs/heads/a b\"` failed (exit code 128):\nfatal: '/x' does not appear to be a git repository"
        );
        let e = failure(
            &["fetch"],
            &done("fatal: unable to access 'https://x/': Could not resolve host: x"),
            "",
        );
        assert_eq!(e.kind(), "retryable");
    }
}
