//! The `process` capability: running a program on the host.
//!
//! Threat model: the plugin is hostile and wants to run arbitrary code on the host,
//! read the host's environment (tokens, cloud credentials), work in or write to
//! folders it was not given, or hang or flood the runner. What must never happen:
//! a program not listed in the grant runs; the child sees any environment variable
//! the plugin did not set explicitly; the child starts in a folder outside the
//! step's working directory; a child outlives its timeout; unbounded output is
//! buffered.
//!
//! Grant: `process: [git, "npm test *", "/usr/local/bin/tool --check **"]`. The
//! first word is the program: a name looked up on the runner's `PATH` (the lookup
//! uses the runner's PATH, the child does not get it) or an absolute path that must
//! match exactly. Without more words, any arguments are allowed. Otherwise each
//! further word is a pattern for one argument, in order, where `*` matches any run
//! of characters within that argument; a final `**` allows any further arguments.
//! So `"npm test *"` allows `npm test foo` but not `npm install foo` or `npm test`.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Most bytes kept of each of stdout and stderr.
pub const MAX_OUTPUT: usize = 1 << 20;
/// Timeout of a program when the plugin gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The programs a plugin may run, with their argument patterns.
#[derive(Debug, Clone, Default)]
pub struct ProcessGrant {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// The entry as written, for messages.
    text: String,
    program: String,
    /// `None`: any arguments.
    args: Option<Vec<String>>,
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
    pub cwd: PathBuf,
}

impl ProcessGrant {
    /// Parsed once from the playbook's `grants.process` entries (already checked
    /// by validation: a program word, then patterns).
    pub fn new(entries: &[String]) -> ProcessGrant {
        let rules = entries
            .iter()
            .filter_map(|e| {
                let mut words = e.split_whitespace();
                let program = words.next()?.to_owned();
                let args: Vec<String> = words.map(str::to_owned).collect();
                Some(Rule {
                    text: e.clone(),
                    program,
                    args: (!args.is_empty()).then_some(args),
                })
            })
            .collect();
        ProcessGrant { rules }
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
        if !rules.iter().any(|r| r.allows(&req.args)) {
            let allowed: Vec<String> = rules.iter().map(|r| format!("`{}`", r.text)).collect();
            return Err(format!(
                "arguments {:?} of `{}` are not granted to plugin `{plugin}` (granted: {}); widen `plugins.{plugin}.grants.process` in the playbook",
                req.args,
                req.program,
                allowed.join(", ")
            ));
        }
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
        let cwd = match &req.cwd {
            None => workdir.to_path_buf(),
            Some(c) => in_granted(folders, c)
                .or_else(|| inside(workdir, c))
                .ok_or_else(|| {
                    format!("working directory `{c}` is outside the step's working directory and its granted folders; give a path inside one of them, without `..`")
                })?,
        };
        Ok(Allowed { executable, cwd })
    }
}

/// `path` as the plugin sees it (a granted folder's name as the playbook wrote
/// it, then a relative rest) mapped to the host, the longest granted name first.
fn in_granted(folders: &[crate::caps::fs::GrantedPath], path: &str) -> Option<PathBuf> {
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
    if rest.is_empty() {
        return Some(folder.host.clone());
    }
    inside(&folder.host, &rest)
}

/// `rel` resolved inside `base`, if it stays there lexically (relative, no `..`).
/// Symlinks inside the workdir are the plugin's own files; the folder is fresh.
fn inside(base: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    if !p.is_relative()
        || !p
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    Some(base.join(p))
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

/// Runs an allowed request with only the environment the plugin gave.
pub async fn run(allowed: &Allowed, req: &Request) -> Result<Completed, String> {
    let mut cmd = tokio::process::Command::new(&allowed.executable);
    cmd.args(&req.args)
        .current_dir(&allowed.cwd)
        .env_clear()
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", req.program))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let work = async {
        let (out, err, status) = tokio::join!(
            read_capped(&mut stdout),
            read_capped(&mut stderr),
            child.wait()
        );
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
        Err(_) => {
            // `kill_on_drop` ends the child when `child` goes out of scope here.
            Ok(Completed {
                exit_code: None,
                stdout: Vec::new(),
                stderr: Vec::new(),
                timed_out: true,
                truncated: false,
            })
        }
    }
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
        let g = ProcessGrant::new(&["sh".into()]);
        let mut r = req("sh", None);
        r.args = vec!["-c".into(), "echo \"[$HOME][$ONLY]\"".into()];
        r.env = vec![("ONLY".into(), "me".into())];
        let done = run(&g.check("p", &r, &work, &[]).unwrap(), &r)
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&done.stdout), "[][me]\n");
        assert_eq!(done.exit_code, Some(0));

        let mut slow = req("sh", None);
        slow.args = vec!["-c".into(), "sleep 5".into()];
        slow.timeout = Some(Duration::from_millis(200));
        let start = std::time::Instant::now();
        let done = run(&g.check("p", &slow, &work, &[]).unwrap(), &slow)
            .await
            .unwrap();
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
        let done = run(&g.check("p", &r, &work, &[]).unwrap(), &r)
            .await
            .unwrap();
        assert_eq!(done.stdout.len(), MAX_OUTPUT);
        assert!(done.truncated);
    }
}
