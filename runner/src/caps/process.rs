//! The `process` capability: running a program on the host.
//!
//! Threat model: the plugin is hostile and wants to run arbitrary code on the host,
//! read the host's environment (tokens, cloud credentials), work in or write to
//! folders it was not given, or hang or flood the runner. What must never happen:
//!
//! - a program not listed in the grant runs, or runs with arguments the grant's
//!   patterns do not allow;
//! - the child sees any of the runner's environment: it gets exactly the variables
//!   the plugin set, and only those the grant allows ([`DEFAULT_ENV`], plus the
//!   entry's `env:` names); a variable on the fixed [`DENIED_ENV`] list (the
//!   dynamic loader's and glibc's, which make any program load code or read files
//!   the plugin chose) is refused whatever the grant says;
//! - the child starts in a folder outside the step's working directory and the
//!   plugin's granted folders: the working directory is opened one component at a
//!   time without following symbolic links (a plugin can plant links in its own
//!   folders) and the child starts in exactly that opened folder;
//! - the program or anything it started outlives the call: each program runs in a
//!   session and process group of its own, with no controlling terminal (`/dev/tty` cannot be opened, so nothing
//!   prompts the engineer; a program running as the same user could still open
//!   a terminal device by its path, which is the user's trust decision below),
//!   and the whole group is killed when the
//!   program exits, when its timeout passes, when the step is cancelled or timed
//!   out, and when the runner exits; the program itself also gets SIGKILL if the
//!   runner dies without exiting (parent-death signal), and each program's
//!   session is registered in the run's state while it runs, so that `runner
//!   resume` stops what a killed runner's programs started ([`reap`]);
//! - unbounded output is buffered: at most [`MAX_OUTPUT`] bytes of each stream.
//!
//! The user's trust decisions, which no check can make for them: a granted program
//! runs natively with the runner's own rights, so `ro` binds the plugin, not the
//! programs it runs. Granting a shell or an interpreter with free arguments
//! (`sh`, `"sh -c *"`, `python3`, `node`) grants running any code. So does
//! granting any arguments to a program that takes commands from its options
//! (`git -c core.fsmonitor=…`, `--upload-pack=`, `npm --script-shell=`), or a
//! program that runs code from files the plugin can write (git hooks and
//! configuration in a repository in a writable folder, npm scripts, Makefiles),
//! or an environment variable that such a program reads code from (`NODE_OPTIONS`,
//! `BASH_ENV`, `PYTHONSTARTUP`, `GIT_CONFIG_*`, `PERL5OPT`). A program that
//! deliberately leaves its process group (`setsid`, a daemon that detaches) is not
//! followed; grant such programs only the arguments that do not detach.
//!
//! Grant: `process: [git, "npm test *", "/usr/local/bin/tool --check **"]`, or an
//! entry `{ run: "npm test *", env: [CI, NODE_ENV] }`. The first word is the
//! program: a name looked up on the runner's `PATH` (the lookup uses the runner's
//! PATH, the child does not get it) or an absolute path that must match exactly.
//! Without more words, any arguments are allowed. Otherwise each further word is a
//! pattern for one argument, in order, where `*` matches any run of characters
//! within that argument; a final `**` allows any further arguments. So
//! `"npm test *"` allows `npm test foo` but not `npm install foo` or `npm test`.
//! Entries are parsed once, at load, by [`Process`] (the capability's
//! [`super::capability`] shape).

use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::capability::{
    self, Attempt, Capability, ConfigureContext, EntryProblem, GrantEntry, Parsed, Spot,
};
use super::grants::ProcessEntry;

/// Most bytes kept of each of stdout and stderr.
pub const MAX_OUTPUT: usize = 1 << 20;
/// Timeout of a program when the plugin gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Variables a plugin may set for any granted program: they choose a language,
/// a time zone and colours, nothing a program runs or loads. `LC_*` is every name
/// with that prefix.
pub const DEFAULT_ENV: &[&str] = &["LANG", "LANGUAGE", "LC_*", "TZ", "NO_COLOR"];

/// Variables no grant can allow: every `LD_*` and `DYLD_*` name (the dynamic
/// loaders of Linux and macOS: `LD_PRELOAD` makes any program run a library the
/// plugin wrote) and the variables glibc itself removes from the environment of
/// privileged programs (its `UNSECURE_ENVVARS`: code loaded through iconv modules,
/// files read for host names, locales, time zones and message catalogs).
pub const DENIED_ENV: &[&str] = &[
    "LD_*",
    "DYLD_*",
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TMPDIR",
    "TZDIR",
];

/// An environment variable name or `PREFIX_*` pattern of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvName {
    Exact(String),
    Prefix(String),
}

impl EnvName {
    /// A grant's `env:` entry: a name of letters, digits and `_` not starting with
    /// a digit, optionally ending in `*` after a non-empty prefix; never a name on
    /// [`DENIED_ENV`].
    pub fn parse(text: &str) -> Result<EnvName, String> {
        let (name, prefix) = match text.strip_suffix('*') {
            Some(p) => (p, true),
            None => (text, false),
        };
        if !valid_name(name) {
            return Err(format!(
                "`{text}` is not an environment variable name; use letters, digits and `_` (like `NODE_ENV`), optionally ending in `*` after a prefix (like `npm_config_*`)"
            ));
        }
        let parsed = if prefix {
            EnvName::Prefix(name.to_owned())
        } else {
            EnvName::Exact(name.to_owned())
        };
        // A pattern that covers a denied name is refused too (`L*` covers LD_PRELOAD).
        if let Some(denied) = DENIED_ENV.iter().find(|d| parsed.overlaps(d)) {
            return Err(format!(
                "`{text}` cannot be granted: it covers `{denied}`, which makes programs load code or read files the plugin chooses; no grant can allow the runner's fixed list ({})",
                DENIED_ENV.join(", ")
            ));
        }
        Ok(parsed)
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            EnvName::Exact(n) => n == name,
            EnvName::Prefix(p) => name.starts_with(p.as_str()),
        }
    }

    /// Whether some name matches both this and `pattern` (a [`DENIED_ENV`] entry).
    fn overlaps(&self, pattern: &str) -> bool {
        let other = match pattern.strip_suffix('*') {
            Some(p) => EnvName::Prefix(p.to_owned()),
            None => EnvName::Exact(pattern.to_owned()),
        };
        match (self, &other) {
            (EnvName::Exact(a), b) => b.matches(a),
            (a, EnvName::Exact(b)) => a.matches(b),
            (EnvName::Prefix(a), EnvName::Prefix(b)) => {
                a.starts_with(b.as_str()) || b.starts_with(a.as_str())
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => *entry == name,
    })
}

/// The programs a plugin may run, with their argument patterns.
#[derive(Debug, Clone, Default)]
pub struct ProcessGrant {
    rules: Vec<Rule>,
    /// Where each started program's session is registered while it runs (see
    /// [`reap`]); `None`: not registered.
    registry: Option<PathBuf>,
}

/// One `process` entry parsed: a program and its argument patterns.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The entry as written, for messages.
    text: String,
    program: String,
    /// `None`: any arguments.
    args: Option<Vec<String>>,
    /// Environment variables granted beyond [`DEFAULT_ENV`].
    env: Vec<EnvName>,
}

impl Rule {
    fn allows(&self, args: &[String]) -> bool {
        let Some(patterns) = &self.args else {
            return true;
        };
        let (patterns, rest_ok) = match patterns.split_last() {
            Some((last, init)) if last == "**" => (init, true),
            _ => (patterns.as_slice(), false),
        };
        if args.len() < patterns.len() || (!rest_ok && args.len() != patterns.len()) {
            return false;
        }
        patterns.iter().zip(args).all(|(p, a)| glob(p, a))
    }

    fn allows_env(&self, name: &str) -> bool {
        listed(DEFAULT_ENV, name) || self.env.iter().any(|e| e.matches(name))
    }
}
/// `*` matches any run of characters (including none); everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// A request from the plugin.
#[derive(Debug, Clone)]
pub struct Request {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
}

/// What the program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub exit_code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub truncated: bool,
}

/// A request that passed the check: what will be run, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub executable: PathBuf,
    /// The folder the child starts in, as a path for messages; the child starts in
    /// the folder opened from it without following links (see [`Allowed::open_cwd`]).
    pub cwd: PathBuf,
    /// The folder the working directory is inside (the step's working directory or
    /// a granted folder), and the rest of the path below it.
    base: PathBuf,
    rest: PathBuf,
    registry: Option<PathBuf>,
}

impl Allowed {
    /// Opens the working directory: the base folder and then each component below
    /// it without following a symbolic link, so the child starts inside the base
    /// folder whatever links the plugin planted.
    pub fn open_cwd(&self) -> Result<OwnedFd, String> {
        let base = crate::caps::fs::open_real_dir(&self.base)
            .map_err(|e| format!("working directory `{}`: {e}", self.cwd.display()))?;
        crate::caps::fs::open_beneath(base, &self.base, &self.rest, false)
            .map_err(|e| format!("working directory `{}` {e}", self.cwd.display()))
    }
}

/// The `process` capability: entries `program [patterns…]`, optionally with
/// `env:` names; checked at each call against the step's working directory and
/// granted folders, so an attempt prepares nothing.
pub struct Process;

impl Capability for Process {
    const KIND: &'static str = "process";
    type Written = ProcessEntry;
    type Entry = Rule;
    type Grant = ProcessGrant;
    type Prepared = ();

    /// A program word, then one pattern per argument, `**` only last; each
    /// `env` name by [`EnvName::parse`]. A malformed program line grants
    /// nothing; an `env` name that does not parse grants nothing, the rest of
    /// the entry stands.
    fn parse(written: &ProcessEntry) -> Parsed<Rule> {
        let run = written.run();
        let words: Vec<&str> = run.split_whitespace().collect();
        let bad_rest = words.iter().rev().skip(1).any(|w| *w == "**");
        let mut problems = Vec::new();
        if words.is_empty() || bad_rest {
            problems.push(EntryProblem {
                at: match written {
                    ProcessEntry::Program(_) => Spot::Entry,
                    ProcessEntry::Rule(_) => Spot::Key("run"),
                },
                message: format!(
                    "`{run}` is not a process grant; write a program, optionally followed by one pattern per argument (`*` within an argument, `**` last for any further arguments), like `npm test *`"
                ),
            });
        }
        let mut env = Vec::new();
        for (j, name) in written.env().iter().enumerate() {
            match EnvName::parse(name) {
                Ok(name) => env.push(name),
                Err(message) => problems.push(EntryProblem {
                    at: Spot::Item("env", j),
                    message,
                }),
            }
        }
        let entry = match words.split_first() {
            Some((program, args)) if !bad_rest => Some(Rule {
                text: run.to_owned(),
                program: (*program).to_owned(),
                args: (!args.is_empty()).then(|| args.iter().map(|a| (*a).to_owned()).collect()),
                env,
            }),
            _ => None,
        };
        Parsed { entry, problems }
    }

    fn configure(entries: &[GrantEntry<Process>], _: &ConfigureContext<'_>) -> ProcessGrant {
        ProcessGrant {
            rules: capability::parsed(entries).cloned().collect(),
            registry: None,
        }
    }

    fn prepare(_: &ProcessGrant, _: &mut Attempt<'_>) -> Result<(), String> {
        Ok(())
    }
}

impl ProcessGrant {
    /// The grant of entries as written, through [`Process`]'s parser (a
    /// playbook's grants are configured by `host::resolve`).
    pub fn new(entries: &[ProcessEntry]) -> ProcessGrant {
        capability::grant_from::<Process>(entries, &ConfigureContext::default())
    }

    /// Registers each program this grant starts in `dir` while it runs, so that
    /// a later runner can stop what a killed one left behind ([`reap`]).
    pub fn register_in(&mut self, dir: PathBuf) {
        self.registry = Some(dir);
    }

    /// Checks `req` for plugin `plugin`, whose working directory is `workdir`
    /// and whose granted folders are `folders`.
    pub fn check(
        &self,
        plugin: &str,
        req: &Request,
        workdir: &Path,
        folders: &[crate::caps::fs::GrantedPath],
    ) -> Result<Allowed, String> {
        let rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.program == req.program)
            .collect();
        if rules.is_empty() {
            return Err(format!(
                "program `{}` is not granted to plugin `{plugin}`; add it to `plugins.{plugin}.grants.process` in the playbook",
                req.program
            ));
        }
        let matching: Vec<&Rule> = rules
            .iter()
            .copied()
            .filter(|r| r.allows(&req.args))
            .collect();
        if matching.is_empty() {
            let allowed: Vec<String> = rules.iter().map(|r| format!("`{}`", r.text)).collect();
            return Err(format!(
                "arguments {:?} of `{}` are not granted to plugin `{plugin}` (granted: {}); widen `plugins.{plugin}.grants.process` in the playbook",
                req.args,
                req.program,
                allowed.join(", ")
            ));
        }
        check_env(plugin, req, &matching)?;
        let executable = if req.program.contains('/') {
            PathBuf::from(&req.program)
        } else {
            find_on_path(&req.program).ok_or_else(|| {
                format!(
                    "program `{}` is granted but was not found on the runner's PATH",
                    req.program
                )
            })?
        };
        let (base, rest) = match &req.cwd {
            None => (workdir.to_path_buf(), PathBuf::new()),
            Some(c) => in_granted(folders, c)
                .or_else(|| inside(c).map(|rest| (workdir.to_path_buf(), rest)))
                .ok_or_else(|| {
                    format!("working directory `{c}` is outside the step's working directory and its granted folders; give a path inside one of them, without `..`")
                })?,
        };
        Ok(Allowed {
            executable,
            cwd: if rest.as_os_str().is_empty() {
                base.clone()
            } else {
                base.join(&rest)
            },
            base,
            rest,
            registry: self.registry.clone(),
        })
    }
}

/// `path` as the plugin sees it (a granted folder's name as the playbook wrote
/// it, then a relative rest) mapped to the host folder and the rest below it, the
/// longest granted name first.
fn in_granted(folders: &[crate::caps::fs::GrantedPath], path: &str) -> Option<(PathBuf, PathBuf)> {
    let norm = |p: &str| p.trim_start_matches("./").trim_end_matches('/').to_owned();
    let path = norm(path);
    let mut best: Option<(&crate::caps::fs::GrantedPath, String)> = None;
    for f in folders {
        let name = norm(&f.guest);
        let rest = if path == name {
            String::new()
        } else if let Some(rest) = path.strip_prefix(&format!("{name}/")) {
            rest.to_owned()
        } else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|(b, _)| norm(&b.guest).len() < name.len())
        {
            best = Some((f, rest));
        }
    }
    let (folder, rest) = best?;
    Some((folder.host.clone(), inside(&rest)?))
}

/// `rel` as a path below `base`, if it stays there lexically (relative, no `..`).
/// Symbolic links on the way are refused when the folder is opened.
fn inside(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    if !p.is_relative()
        || !p
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    Some(p.components().collect())
}

/// Every variable of the request must be a valid name, not on [`DENIED_ENV`], and
/// allowed by one rule that also allows the arguments.
fn check_env(plugin: &str, req: &Request, matching: &[&Rule]) -> Result<(), String> {
    for (name, value) in &req.env {
        if !valid_name(name) || value.contains('\0') {
            return Err(format!(
                "environment variable {name:?} of `{}` is not a valid name and value (letters, digits and `_`, no NUL); plugin `{plugin}` is at fault",
                req.program
            ));
        }
        if listed(DENIED_ENV, name) {
            return Err(format!(
                "environment variable `{name}` is never passed to a program: it makes the program load code or read files the plugin chooses (the runner's fixed list: {}); no grant can allow it",
                DENIED_ENV.join(", ")
            ));
        }
    }
    let extra: Vec<&str> = req
        .env
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !listed(DEFAULT_ENV, n))
        .collect();
    if matching
        .iter()
        .any(|r| extra.iter().all(|n| r.allows_env(n)))
    {
        return Ok(());
    }
    // Name the first variable that no matching rule allows.
    let missing = extra
        .iter()
        .find(|n| !matching.iter().any(|r| r.allows_env(n)))
        .or(extra.first())
        .copied()
        .unwrap_or_default();
    Err(format!(
        "environment variable `{missing}` of `{}` is not granted to plugin `{plugin}` (without a grant only {} may be set); if the program needs it, write the entry as {{ run: \"{}\", env: [{missing}] }} in `plugins.{plugin}.grants.process` in the playbook",
        req.program,
        DEFAULT_ENV.join(", "),
        matching[0].text
    ))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs an allowed request with only the environment the plugin gave, in its own
/// session and process group, which is killed when the program ends, times out or
/// is dropped (the step cancelled or timed out, the runner exiting).
/// `cwd` is the working directory opened by [`Allowed::open_cwd`].
pub async fn run(allowed: &Allowed, cwd: OwnedFd, req: &Request) -> Result<Completed, String> {
    let mut cmd = tokio::process::Command::new(&allowed.executable);
    cmd.args(&req.args)
        .current_dir(crate::caps::fs::fd_path(&cwd))
        .env_clear()
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and calls only
    // setsid(2) and prctl(2), both async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            // A session of its own: its own process group (killed as one) and no
            // controlling terminal (`/dev/tty` fails, so nothing prompts).
            rustix::process::setsid()?;
            // Killed if the thread that started it dies: the runner's async
            // threads live as long as the runner.
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", req.program))?;
    drop(cwd);
    // Registered while it runs, so that if the runner is killed the next one
    // (`runner resume`) stops what is left before it starts the step again.
    let _registered = match (&allowed.registry, child.id()) {
        (Some(dir), Some(id)) => Registered::new(dir, id),
        _ => None,
    };
    // Kills the group on every way out of this function, including being dropped.
    let _group = child.id().and_then(|id| Group::new(id as i32));
    let group = _group.as_ref().map(|g| g.0);
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let work = async {
        let (out, err, status) =
            tokio::join!(read_capped(&mut stdout), read_capped(&mut stderr), async {
                let status = child.wait().await;
                // What the program left running would hold the pipes open.
                if let Some(pid) = group {
                    kill_group(pid);
                }
                status
            });
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(((stdout, t1), (stderr, t2), status)) => Ok(Completed {
            exit_code: status.map_err(|e| e.to_string())?.code(),
            stdout,
            stderr,
            timed_out: false,
            truncated: t1 || t2,
        }),
        Err(_) => Ok(Completed {
            exit_code: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            timed_out: true,
            truncated: false,
        }),
    }
}

/// A started program's session, registered as a file `<dir>/<pid>` holding the
/// machine's boot id and the program's start time; removed when dropped (after
/// the group is killed: declared before it, dropped after it).
struct Registered(PathBuf);

impl Registered {
    fn new(dir: &Path, pid: u32) -> Option<Registered> {
        let start = Stat::read(pid)?.start;
        std::fs::create_dir_all(dir).ok()?;
        let file = dir.join(pid.to_string());
        std::fs::write(&file, format!("{} {start}\n", boot_id()?)).ok()?;
        Some(Registered(file))
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What `/proc/<pid>/stat` says of a process that matters here.
struct Stat {
    /// `Z` for a zombie: it has exited and waits for its parent.
    zombie: bool,
    session: i32,
    /// Clock ticks after boot when the process started.
    start: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The name (field 2) is in parentheses and may hold anything: read after
        // its last `)`. Fields from there: state, ppid, pgrp, session, … starttime (22nd).
        let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
        Some(Stat {
            zombie: *fields.first()? == "Z",
            session: fields.get(3)?.parse().ok()?,
            start: fields.get(19)?.parse().ok()?,
        })
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Stops every program registered in `dir` that is still running (a runner
/// killed with SIGKILL cannot stop them itself: the parent-death signal reaches
/// the program it started, not what that program started), waits until they
/// are gone, and empties `dir`. Returns how many processes it stopped.
///
/// A registered program's session keeps its id while any member lives, so the
/// processes in that session are the program's own, unless its id was reused:
/// after a reboot (another boot id) nothing is left, and a live process with
/// that id but another start time is someone else's session, left alone.
pub fn reap(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let boot = boot_id();
    let mut stopped = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let registered = std::fs::read_to_string(&path).unwrap_or_default();
        let mut words = registered.split_whitespace();
        let (Some(leader), Some(b), Some(start)) = (
            entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok()),
            words.next(),
            words.next().and_then(|s| s.parse::<u64>().ok()),
        ) else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let reused = Stat::read(leader as u32).is_some_and(|s| s.start != start);
        if boot.as_deref() == Some(b) && !reused {
            let mut most = 0;
            for _ in 0..50 {
                let members = session_members(leader);
                if members.is_empty() {
                    break;
                }
                for pid in &members {
                    if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
                most = most.max(members.len());
                std::thread::sleep(Duration::from_millis(20));
            }
            stopped += most;
        }
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(dir);
    stopped
}

/// The processes whose session is `session`.
fn session_members(session: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Stat::read(*pid).is_some_and(|s| s.session == session && !s.zombie))
        .map(|pid| pid as i32)
        .collect()
}

/// A process group of a running program, killed when dropped.
struct Group(rustix::process::Pid);

impl Group {
    fn new(pid: i32) -> Option<Group> {
        rustix::process::Pid::from_raw(pid).map(Group)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// SIGKILL to every process of the group. The group's id stays reserved while
/// any member lives, so this cannot reach another program's group; once all have
/// exited it finds none (ESRCH), which is the wanted state.
fn kill_group(pid: rustix::process::Pid) {
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// Reads a pipe to its end, keeping at most [`MAX_OUTPUT`] bytes.
async fn read_capped(pipe: &mut (impl AsyncReadExt + Unpin)) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(program: &str, cwd: Option<&str>) -> Request {
        Request {
            program: program.into(),
            args: vec![],
            cwd: cwd.map(Into::into),
            env: vec![],
            timeout: None,
        }
    }

    async fn run_checked(g: &ProcessGrant, r: &Request, work: &Path) -> Result<Completed, String> {
        let allowed = g.check("p", r, work, &[])?;
        let cwd = allowed.open_cwd()?;
        run(&allowed, cwd, r).await
    }

    fn with_args(program: &str, args: &[&str]) -> Request {
        Request {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..req(program, None)
        }
    }

    #[test]
    fn argument_patterns() {
        let g = ProcessGrant::new(&["npm test *".into(), "git log **".into(), "ls".into()]);
        let work = Path::new("/tmp/w");
        assert!(
            g.check("p", &with_args("npm", &["test", "auth"]), work, &[])
                .is_ok()
        );
        assert!(
            g.check(
                "p",
                &with_args("npm", &["test", "--testPathPattern=hotfix"]),
                work,
                &[]
            )
            .is_ok()
        );
        let e = g
            .check("p", &with_args("npm", &["install", "evil"]), work, &[])
            .unwrap_err();
        assert!(
            e.starts_with("arguments [\"install\", \"evil\"] of `npm` are not granted to plugin `p` (granted: `npm test *`)"),
            "{e}"
        );
        assert!(
            g.check("p", &with_args("npm", &["test"]), work, &[])
                .is_err(),
            "one argument per pattern"
        );
        assert!(
            g.check("p", &with_args("npm", &["test", "a", "b"]), work, &[])
                .is_err(),
            "no more arguments without **"
        );
        assert!(g.check("p", &with_args("git", &["log"]), work, &[]).is_ok());
        assert!(
            g.check("p", &with_args("git", &["log", "--since", "2h"]), work, &[])
                .is_ok()
        );
        assert!(
            g.check("p", &with_args("git", &["push"]), work, &[])
                .is_err()
        );
        assert!(
            g.check("p", &with_args("ls", &["-la", "/"]), work, &[])
                .is_ok(),
            "a bare program allows any arguments"
        );
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("--x=*", "--x=1"));
        assert!(!glob("--x=*", "--y=1"));
        assert!(glob("*.js", "a.test.js"));
        assert!(!glob("a*a", "a"));
        assert!(glob("a*b*c", "a-b-c"));
        assert!(!glob("a*b*c", "a-c-b"));
    }

    #[test]
    fn only_listed_programs_pass() {
        let g = ProcessGrant::new(&["sh".into()]);
        let work = Path::new("/tmp/w");
        assert!(g.check("p", &req("sh", None), work, &[]).is_ok());
        let e = g.check("p", &req("bash", None), work, &[]).unwrap_err();
        assert_eq!(
            e,
            "program `bash` is not granted to plugin `p`; add it to `plugins.p.grants.process` in the playbook"
        );
        // A path to a granted name is not the granted name.
        assert!(g.check("p", &req("/bin/sh", None), work, &[]).is_err());
        assert!(
            ProcessGrant::default()
                .check("p", &req("sh", None), work, &[])
                .is_err()
        );
    }

    #[test]
    fn the_working_directory_stays_inside() {
        let g = ProcessGrant::new(&["sh".into()]);
        let work = Path::new("/tmp/w");
        assert_eq!(
            g.check("p", &req("sh", Some("sub/dir")), work, &[])
                .unwrap()
                .cwd,
            Path::new("/tmp/w/sub/dir")
        );
        for bad in ["..", "../x", "/etc", "a/../../b"] {
            assert!(
                g.check("p", &req("sh", Some(bad)), work, &[]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_working_directory_may_be_inside_a_granted_folder() {
        use crate::caps::fs::GrantedPath;
        let g = ProcessGrant::new(&["git".into()]);
        let work = Path::new("/tmp/w");
        let folders = [
            GrantedPath {
                host: "/srv/pb/workspace".into(),
                guest: "workspace".into(),
                rw: true,
            },
            GrantedPath {
                host: "/data/app".into(),
                guest: "/data/app".into(),
                rw: false,
            },
        ];
        let cwd = |c: &str| {
            g.check("p", &req("git", Some(c)), work, &folders)
                .map(|a| a.cwd)
        };
        assert_eq!(cwd("workspace"), Ok(PathBuf::from("/srv/pb/workspace")));
        assert_eq!(
            cwd("workspace/app"),
            Ok(PathBuf::from("/srv/pb/workspace/app"))
        );
        assert_eq!(
            cwd("./workspace/app/"),
            Ok(PathBuf::from("/srv/pb/workspace/app"))
        );
        assert_eq!(cwd("/data/app/repo"), Ok(PathBuf::from("/data/app/repo")));
        assert_eq!(
            cwd("other"),
            Ok(PathBuf::from("/tmp/w/other")),
            "else the workdir"
        );
        for bad in [
            "workspace/../..",
            "/data/application",
            "/etc",
            "workspace/../../etc",
        ] {
            assert!(cwd(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn children_get_only_the_given_environment_and_are_stopped_in_time() {
        let work = std::env::temp_dir();
        let g = ProcessGrant::new(&[entry("sh", &["ONLY"])]);
        let mut r = req("sh", None);
        r.args = vec!["-c".into(), "echo \"[$HOME][$ONLY]\"".into()];
        r.env = vec![("ONLY".into(), "me".into())];
        let done = run_checked(&g, &r, &work).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&done.stdout), "[][me]\n");
        assert_eq!(done.exit_code, Some(0));

        let mut slow = req("sh", None);
        slow.args = vec!["-c".into(), "sleep 5".into()];
        slow.timeout = Some(Duration::from_millis(200));
        let start = std::time::Instant::now();
        let done = run_checked(&g, &slow, &work).await.unwrap();
        assert!(done.timed_out);
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "the child was waited for"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn output_is_capped() {
        let work = std::env::temp_dir();
        let g = ProcessGrant::new(&["sh".into()]);
        let mut r = req("sh", None);
        r.args = vec!["-c".into(), "head -c 3000000 /dev/zero".into()];
        let done = run_checked(&g, &r, &work).await.unwrap();
        assert_eq!(done.stdout.len(), MAX_OUTPUT);
        assert!(done.truncated);
    }

    fn with_env(program: &str, env: &[(&str, &str)]) -> Request {
        Request {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..req(program, None)
        }
    }

    fn entry(run: &str, env: &[&str]) -> ProcessEntry {
        ProcessEntry::Rule(crate::caps::grants::ProcessRule {
            run: run.into(),
            env: env.iter().map(|e| e.to_string()).collect(),
        })
    }

    #[test]
    fn only_default_and_granted_variables_pass() {
        let work = Path::new("/tmp/w");
        let g = ProcessGrant::new(&[entry("sh", &["CI", "npm_config_*"]), "git".into()]);
        for ok in [
            with_env("sh", &[("LANG", "C.UTF-8"), ("LC_ALL", "C"), ("TZ", "UTC")]),
            with_env("sh", &[("CI", "true"), ("npm_config_cache", "x")]),
            with_env("git", &[("NO_COLOR", "1"), ("LANGUAGE", "en")]),
        ] {
            assert!(g.check("p", &ok, work, &[]).is_ok(), "{:?}", ok.env);
        }
        // Granted to `sh`, not to `git`.
        let e = g
            .check("p", &with_env("git", &[("CI", "1")]), work, &[])
            .unwrap_err();
        assert_eq!(
            e,
            "environment variable `CI` of `git` is not granted to plugin `p` (without a grant only LANG, LANGUAGE, LC_*, TZ, NO_COLOR may be set); if the program needs it, write the entry as { run: \"git\", env: [CI] } in `plugins.p.grants.process` in the playbook"
        );
        for name in [
            "GIT_CONFIG_COUNT",
            "GIT_TRACE",
            "BASH_ENV",
            "ENV",
            "PYTHONSTARTUP",
            "NODE_OPTIONS",
            "PERL5OPT",
            "PATH",
            "HOME",
        ] {
            let e = g
                .check("p", &with_env("sh", &[(name, "x")]), work, &[])
                .unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "environment variable `{name}` of `sh` is not granted"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn loader_variables_are_refused_whatever_the_grant() {
        let work = Path::new("/tmp/w");
        // Such grants do not parse, so they grant nothing.
        let g = ProcessGrant::new(&[entry("sh", &["LD_PRELOAD", "LD_*", "GCONV_PATH", "CI"])]);
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "TMPDIR",
        ] {
            let e = g
                .check("p", &with_env("sh", &[(name, "/tmp/w/evil.so")]), work, &[])
                .unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "environment variable `{name}` is never passed to a program"
                )),
                "{e}"
            );
        }
        for bad in ["A=B", "", "1X", "X\u{0}"] {
            let e = g
                .check("p", &with_env("sh", &[(bad, "v")]), work, &[])
                .unwrap_err();
            assert!(e.contains("is not a valid name and value"), "{e}");
        }
        let e = g
            .check("p", &with_env("sh", &[("CI", "a\u{0}b")]), work, &[])
            .unwrap_err();
        assert!(e.contains("is not a valid name and value"), "{e}");
    }

    #[test]
    fn env_grant_entries_are_checked() {
        assert_eq!(EnvName::parse("CI"), Ok(EnvName::Exact("CI".into())));
        assert_eq!(
            EnvName::parse("npm_config_*"),
            Ok(EnvName::Prefix("npm_config_".into()))
        );
        for denied in [
            "LD_PRELOAD",
            "LD_*",
            "L*",
            "DYLD_X",
            "TMPDIR",
            "TMP*",
            "GCONV_PATH",
        ] {
            let e = EnvName::parse(denied).unwrap_err();
            assert!(e.contains("cannot be granted"), "{denied}: {e}");
        }
        for bad in ["*", "A-B", "1A", "A*B", ""] {
            let e = EnvName::parse(bad).unwrap_err();
            assert!(
                e.contains("is not an environment variable name"),
                "{bad}: {e}"
            );
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_program_has_no_controlling_terminal() {
        let work = std::env::temp_dir();
        let g = ProcessGrant::new(&["sh".into()]);
        let mut r = req("sh", None);
        r.args = vec!["-c".into(), "if (exec </dev/tty) 2>/dev/null; then echo tty; else echo none; fi; cut -d' ' -f6 /proc/$$/stat; echo $$".into()];
        let done = run_checked(&g, &r, &work).await.unwrap();
        let out = String::from_utf8_lossy(&done.stdout).into_owned();
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        assert_eq!(lines.first(), Some(&"none"), "{out}");
        // Its own session: the session id is its own pid.
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[1], lines[2], "{out}");
    }

    #[test]
    fn the_capability_parses_each_part_where_it_is_written() {
        use crate::caps::capability::{EntryProblem, Spot};
        assert_eq!(Process::KIND, "process");
        let pattern = |run: &str| {
            format!(
                "`{run}` is not a process grant; write a program, optionally followed by one pattern per argument (`*` within an argument, `**` last for any further arguments), like `npm test *`"
            )
        };
        let p = Process::parse(&"npm ** test".into());
        assert!(p.entry.is_none(), "a malformed program line grants nothing");
        assert_eq!(
            p.problems,
            [EntryProblem {
                at: Spot::Entry,
                message: pattern("npm ** test")
            }]
        );
        let p = Process::parse(&entry("  ", &["CI", "LD_PRELOAD", "1X"]));
        assert!(p.entry.is_none());
        let at: Vec<Spot> = p.problems.iter().map(|p| p.at).collect();
        assert_eq!(
            at,
            [Spot::Key("run"), Spot::Item("env", 1), Spot::Item("env", 2)]
        );
        assert_eq!(p.problems[0].message, pattern("  "));
        assert_eq!(
            p.problems[1].message,
            EnvName::parse("LD_PRELOAD").unwrap_err()
        );
        // A bad `env` name grants nothing; the rest of the entry stands.
        let p = Process::parse(&entry("git log **", &["LD_PRELOAD", "CI"]));
        let rule = p.entry.expect("the program line is fine");
        assert_eq!(rule.program, "git");
        assert_eq!(rule.args, Some(vec!["log".to_owned(), "**".to_owned()]));
        assert_eq!(rule.env, [EnvName::Exact("CI".into())]);
        assert_eq!(p.problems.len(), 1);
        let p = Process::parse(&"ls".into());
        assert!(p.problems.is_empty());
        assert_eq!(p.entry.map(|r| r.args), Some(None), "any arguments");
    }
}
