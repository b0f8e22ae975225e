//! The operations. Each one checks all of its input first (so a bad value fails
//! before anything is touched), then the repository's location and
//! configuration, then runs git.

use runner_sdk::serde_json::{Value, json};
use runner_sdk::{Output, StepError};

use crate::check::{self, Url, shown};
use crate::git::{Git, Ident, Repo, failure};
use crate::input;
use crate::place::{self, Access};
use crate::version::{self, Version};

/// Most files listed by `diff-stat` (the totals count them all).
const MAX_FILES: usize = 1000;
/// Default and largest number of commits listed by `log`.
const DEFAULT_LOG: u32 = 200;

fn invalid(message: String) -> StepError {
    StepError::InvalidInput(message)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The identity for new commits and tags, checked.
fn ident(name: Option<&String>, email: Option<&String>) -> Result<Ident, StepError> {
    let mut ident = Ident::default();
    if let Some(name) = name {
        check::person(name).map_err(invalid)?;
        ident.name = name.clone();
    }
    if let Some(email) = email {
        check::email(email).map_err(invalid)?;
        ident.email = email.clone();
    }
    Ok(ident)
}

fn location(repo: &str) -> Result<String, StepError> {
    check::location(repo).map_err(invalid)
}

/// An existing working copy, its location and configuration checked.
fn open(path: String, ident: Ident, access: Access) -> Result<Git, StepError> {
    place::existing_repo(&path, access)?;
    let git = Git::new(Repo { path }, ident);
    git.audit_config()?;
    Ok(git)
}

/// Checks where `remote` points before git talks to it: https, or a repository
/// on this machine inside a granted folder (writable to push).
fn check_remote(git: &Git, remote: &str, access: Access) -> Result<(), StepError> {
    let mut args = vec!["remote", "get-url", "--all"];
    if access == Access::Write {
        args.push("--push");
    }
    args.extend(["--end-of-options", remote]);
    let urls = git.ok(&args)?;
    for url in urls.lines().filter(|l| !l.is_empty()) {
        match check::url(url) {
            Ok(Url::Https) => https_granted(url)?,
            Ok(Url::Local(path)) => place::local_remote(&path, access)?,
            Err(why) => {
                return Err(StepError::failed(format!(
                    "remote `{remote}` cannot be used by this plugin: {why}"
                )));
            }
        }
    }
    Ok(())
}

/// Refuses an https remote whose origin no `http` grant names. git connects
/// from the host, where the runner's `http` check does not apply, so the plugin
/// asks the runner first: a `HEAD` of the origin through the `http` capability,
/// which the runner refuses (before any connection) for an origin that is not
/// granted or a name that resolves to a non-public address that is not granted.
/// Any other outcome (an answer, a TLS or network error) means the origin is
/// granted, and git itself reports what it finds there. That holds because the
/// runner delivers every refusal as a refusal (it takes in a refused request's
/// body, so the client never sees a closed body stream first).
pub fn https_granted(url: &str) -> Result<(), StepError> {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let origin = format!("https://{authority}");
    let probe = runner_sdk::http::Request::new("HEAD", format!("{origin}/"))
        .timeout(std::time::Duration::from_secs(5))
        .send();
    match probe {
        Err(runner_sdk::http::HttpError::Denied(why)) => Err(StepError::Denied(format!(
            "the https remote `{}` is not granted: git reaches it from the host, so its origin `{origin}` must be granted under `http` ({why})",
            shown(url)
        ))),
        _ => Ok(()),
    }
}

/// `git fetch --tags <remote>`.
fn fetch_all(git: &Git, remote: &str) -> Result<(), StepError> {
    check_remote(git, remote, Access::Read)?;
    git.ok(&["fetch", "--tags", "--quiet", "--", remote])?;
    Ok(())
}

fn head_fields(git: &Git) -> Result<(String, String), StepError> {
    let sha = git.head()?.unwrap_or_default();
    let branch = git.current_branch()?.unwrap_or_default();
    Ok((sha, branch))
}

/// Makes `name` the current branch: the local one, or a new one tracking
/// `<remote>/<name>`.
fn switch_to_branch(git: &Git, name: &str, remote: &str) -> Result<(), StepError> {
    if git.current_branch()?.as_deref() == Some(name) {
        return Ok(());
    }
    if git.has_ref(&format!("refs/heads/{name}"))? {
        git.ok(&["switch", "--quiet", "--end-of-options", name])?;
        return Ok(());
    }
    let tracking = format!("refs/remotes/{remote}/{name}");
    if git.has_ref(&tracking)? {
        let create = format!("--create={name}");
        git.ok(&[
            "switch",
            "--quiet",
            &create,
            "--track=direct",
            "--end-of-options",
            &tracking,
        ])?;
        return Ok(());
    }
    Err(StepError::failed(format!(
        "there is no branch `{name}` in `{}`, locally or on `{remote}` (`fetch: true` fetches first)",
        git.repo.path
    )))
}

/// Whether `older` is an ancestor of (or equal to) `newer`.
fn is_ancestor(git: &Git, older: &str, newer: &str) -> Result<bool, StepError> {
    Ok(git
        .query(&[
            "merge-base",
            "--is-ancestor",
            "--end-of-options",
            older,
            newer,
        ])?
        .is_some())
}

/// The commit `rev` names, or else the one `<remote>/<rev>` names (a branch
/// only the remote has).
fn resolve_branch(git: &Git, what: &str, rev: &str, remote: &str) -> Result<String, StepError> {
    if let Some(sha) = git.commit_of(rev)? {
        return Ok(sha);
    }
    if let Some(sha) = git.commit_of(&format!("refs/remotes/{remote}/{rev}"))? {
        return Ok(sha);
    }
    git.resolve(what, rev)
}

/// Pushes `refs/heads/<branch>` to `remote` (no force).
fn push_branch(git: &Git, remote: &str, branch: &str) -> Result<(), StepError> {
    let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
    git.ok(&["push", "--porcelain", "--no-verify", "--", remote, &spec])?;
    Ok(())
}

/// Files in conflict (during a stopped merge or cherry-pick).
fn conflicts(git: &Git) -> Result<Vec<String>, StepError> {
    Ok(git
        .query(&[
            "diff",
            "--name-only",
            "--diff-filter=U",
            "-z",
            "--no-ext-diff",
        ])?
        .unwrap_or_default()
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect())
}

fn conflict_list(files: &[String]) -> String {
    let mut shown_files: Vec<String> = files.iter().take(20).map(|f| format!("`{f}`")).collect();
    if files.len() > 20 {
        shown_files.push(format!("and {} more", files.len() - 20));
    }
    shown_files.join(", ")
}

pub fn clone(input: input::Clone) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    let url = check::url(&input.url).map_err(invalid)?;
    if let Some(branch) = &input.branch {
        check::ref_name("branch", branch).map_err(invalid)?;
    }
    match &url {
        Url::Local(remote) => place::local_remote(remote, Access::Read)?,
        Url::Https => https_granted(&input.url)?,
    }
    place::clone_target(&path)?;
    let git = Git::new(Repo { path }, Ident::default());
    let branch_option = input.branch.as_ref().map(|b| format!("--branch={b}"));
    let mut args = vec!["clone", "--quiet", "--template=", "--no-recurse-submodules"];
    args.extend(branch_option.as_deref());
    args.extend(["--", &input.url, "."]);
    git.ok(&args)?;
    let (sha, branch) = head_fields(&git)?;
    let at = if branch.is_empty() {
        short(&sha).to_owned()
    } else {
        format!("{branch} ({})", short(&sha))
    };
    Ok(Output::new()
        .set("sha", &sha)
        .set("branch", &branch)
        .set("detached", branch.is_empty() && !sha.is_empty())
        .set("repo", &git.repo.path)
        .summary(format!(
            "cloned {} into {} at {at}",
            input.url, git.repo.path
        )))
}

pub fn fetch(input: input::Fetch) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    check::remote_name(&input.remote).map_err(invalid)?;
    if let Some(branch) = &input.branch {
        check::ref_name("branch", branch).map_err(invalid)?;
    }
    let git = open(path, Ident::default(), Access::Write)?;
    fetch_all(&git, &input.remote)?;
    let Some(branch) = &input.branch else {
        let (sha, branch) = head_fields(&git)?;
        return Ok(Output::new()
            .set("sha", &sha)
            .set("branch", &branch)
            .set("updated", false)
            .summary(format!("fetched branches and tags from {}", input.remote)));
    };
    let tracking = format!("refs/remotes/{}/{branch}", input.remote);
    let theirs = git
        .commit_of(&tracking)?
        .ok_or_else(|| StepError::failed(format!("`{}` has no branch `{branch}`", input.remote)))?;
    let local_ref = format!("refs/heads/{branch}");
    let updated = match git.commit_of(&local_ref)? {
        None => {
            git.ok(&["branch", "--no-track", "--end-of-options", branch, &theirs])?;
            true
        }
        Some(ours) if ours == theirs => false,
        Some(ours) if is_ancestor(&git, &ours, &theirs)? => {
            if git.current_branch()?.as_deref() == Some(branch.as_str()) {
                git.ok(&["merge", "--ff-only", "--quiet", "--end-of-options", &theirs])?;
            } else {
                git.ok(&[
                    "update-ref",
                    "-m",
                    "runner git: fast-forward",
                    "--end-of-options",
                    &local_ref,
                    &theirs,
                    &ours,
                ])?;
            }
            true
        }
        Some(ours) if is_ancestor(&git, &theirs, &ours)? => false,
        Some(ours) => {
            return Err(StepError::failed(format!(
                "local branch `{branch}` ({}) and `{}/{branch}` ({}) have diverged; not fast-forwarding",
                short(&ours),
                input.remote,
                short(&theirs)
            )));
        }
    };
    let sha = git.resolve("branch", &local_ref)?;
    Ok(Output::new()
        .set("sha", &sha)
        .set("branch", branch)
        .set("updated", updated)
        .summary(format!(
            "fetched from {}; {branch} {} {}",
            input.remote,
            if updated { "is now at" } else { "stays at" },
            short(&sha)
        )))
}

pub fn checkout(input: input::Checkout) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    check::revision("ref", &input.target).map_err(invalid)?;
    check::remote_name(&input.remote).map_err(invalid)?;
    let git = open(path, Ident::default(), Access::Write)?;
    if input.fetch {
        fetch_all(&git, &input.remote)?;
    }
    let name = &input.target;
    let is_branch = git.has_ref(&format!("refs/heads/{name}"))?
        || git.has_ref(&format!("refs/remotes/{}/{name}", input.remote))?;
    if is_branch {
        switch_to_branch(&git, name, &input.remote)?;
    } else {
        let sha = git.resolve("ref", name)?;
        git.ok(&["switch", "--quiet", "--detach", "--end-of-options", &sha])?;
    }
    let (sha, branch) = head_fields(&git)?;
    let summary = if branch.is_empty() {
        format!("checked out {name} at {} (detached)", short(&sha))
    } else {
        format!("checked out branch {branch} at {}", short(&sha))
    };
    Ok(Output::new()
        .set("sha", &sha)
        .set("branch", &branch)
        .set("detached", branch.is_empty())
        .summary(summary))
}

pub fn branch(input: input::Branch) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    check::ref_name("branch", &input.branch).map_err(invalid)?;
    check::remote_name(&input.remote).map_err(invalid)?;
    if input.tag.is_some() && input.from.is_some() {
        return Err(invalid("give `tag` or `from`, not both".to_owned()));
    }
    if let Some(tag) = &input.tag {
        check::ref_name("tag", tag).map_err(invalid)?;
    }
    if let Some(from) = &input.from {
        check::revision("from", from).map_err(invalid)?;
    }
    let git = open(path, Ident::default(), Access::Write)?;
    if input.fetch {
        fetch_all(&git, &input.remote)?;
    }
    let (from, base) = match (&input.tag, &input.from) {
        (Some(tag), _) => {
            let full = format!("refs/tags/{tag}");
            if !git.has_ref(&full)? {
                return Err(StepError::failed(format!(
                    "there is no tag `{tag}` in `{}` (`fetch: true` fetches tags first)",
                    git.repo.path
                )));
            }
            (tag.clone(), git.resolve("tag", &full)?)
        }
        (None, Some(from)) => (from.clone(), git.resolve("from", from)?),
        (None, None) => ("HEAD".to_owned(), git.resolve("from", "HEAD")?),
    };
    let name = &input.branch;
    let created = match git.commit_of(&format!("refs/heads/{name}"))? {
        Some(existing) if existing == base => false,
        Some(existing) => {
            return Err(StepError::failed(format!(
                "branch `{name}` already exists at {}, not at {from} ({})",
                short(&existing),
                short(&base)
            )));
        }
        None => true,
    };
    if created && input.checkout {
        let create = format!("--create={name}");
        git.ok(&[
            "switch",
            "--quiet",
            "--no-track",
            &create,
            "--end-of-options",
            &base,
        ])?;
    } else if created {
        git.ok(&["branch", "--no-track", "--end-of-options", name, &base])?;
    } else if input.checkout {
        git.ok(&["switch", "--quiet", "--end-of-options", name])?;
    }
    Ok(Output::new()
        .set("branch", name)
        .set("sha", &base)
        .set("from", &from)
        .set("created", created)
        .summary(format!(
            "{} branch {name} from {from} ({})",
            if created { "created" } else { "kept existing" },
            short(&base)
        )))
}

/// `files_changed`, `insertions`, `deletions` and the files of `git diff --numstat -z`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
    pub files: Vec<Value>,
}

/// Parses `--numstat -z` output: `ins\tdel\tpath\0`, or for a rename
/// `ins\tdel\t\0old\0new\0`; binary files count `-` lines.
pub fn parse_numstat(out: &str) -> Stat {
    let mut stat = Stat::default();
    let mut fields = out.split('\0');
    while let Some(record) = fields.next() {
        let record = record.trim_start_matches('\n');
        if record.is_empty() {
            continue;
        }
        let mut parts = record.splitn(3, '\t');
        let (Some(ins), Some(del), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (old, path) = if path.is_empty() {
            let old = fields.next().unwrap_or_default().to_owned();
            (Some(old), fields.next().unwrap_or_default().to_owned())
        } else {
            (None, path.to_owned())
        };
        let binary = ins == "-" || del == "-";
        let ins: u64 = ins.parse().unwrap_or(0);
        let del: u64 = del.parse().unwrap_or(0);
        stat.files_changed += 1;
        stat.insertions += ins;
        stat.deletions += del;
        if stat.files.len() < MAX_FILES {
            let mut file =
                json!({ "path": path, "insertions": ins, "deletions": del, "binary": binary });
            if let Some(old) = old {
                file["old_path"] = Value::String(old);
            }
            stat.files.push(file);
        }
    }
    stat
}

pub fn commit(input: input::Commit) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    check::message(&input.message).map_err(invalid)?;
    for p in &input.paths {
        check::repo_path(p).map_err(invalid)?;
    }
    let ident = ident(input.author_name.as_ref(), input.author_email.as_ref())?;
    let git = open(path, ident, Access::Write)?;
    if input.all {
        git.ok(&["add", "--all"])?;
    }
    if !input.paths.is_empty() {
        let mut args = vec!["add", "--"];
        args.extend(input.paths.iter().map(String::as_str));
        git.ok(&args)?;
    }
    if !input.allow_empty {
        let staged = git.run(&["diff", "--cached", "--quiet", "--no-ext-diff"])?;
        if staged.success() {
            return Err(StepError::failed(format!(
                "nothing to commit in `{}`: no staged changes{}",
                git.repo.path,
                if input.all || !input.paths.is_empty() {
                    " after adding"
                } else {
                    " (`all: true` stages every change)"
                }
            )));
        }
    }
    let message = format!("--message={}", input.message);
    let mut args = vec![
        "commit",
        "--quiet",
        "--no-verify",
        "--no-gpg-sign",
        "--cleanup=whitespace",
    ];
    if input.allow_empty {
        args.push("--allow-empty");
    }
    args.push(&message);
    git.ok(&args)?;
    let (sha, branch) = head_fields(&git)?;
    let stat = parse_numstat(&git.ok(&[
        "show",
        "--numstat",
        "-z",
        "--format=",
        "--no-ext-diff",
        "--no-textconv",
        "--no-color",
        "--end-of-options",
        &sha,
    ])?);
    let subject = input.message.lines().next().unwrap_or_default().trim();
    Ok(Output::new()
        .set("sha", &sha)
        .set("branch", &branch)
        .set("files_changed", stat.files_changed)
        .set("insertions", stat.insertions)
        .set("deletions", stat.deletions)
        .summary(format!(
            "committed {} on {}: {}",
            short(&sha),
            if branch.is_empty() {
                "detached HEAD"
            } else {
                &branch
            },
            shown(subject)
        )))
}

pub fn tag(input: input::Tag) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    if input.tag.is_some() == input.bump.is_some() {
        return Err(invalid(
            "give either `tag` (a name) or `bump` (patch, minor or major)".to_owned(),
        ));
    }
    if input.from.is_some() && input.bump.is_none() {
        return Err(invalid("`from` goes with `bump`".to_owned()));
    }
    if let Some(tag) = &input.tag {
        check::ref_name("tag", tag).map_err(invalid)?;
    }
    if !input.prefix.is_empty() {
        check::ref_name("prefix", &format!("{}0", input.prefix)).map_err(invalid)?;
    }
    if let Some(from) = &input.from {
        check::ref_name("from", from).map_err(invalid)?;
        if Version::from_tag(from, &input.prefix).is_none() {
            return Err(invalid(format!(
                "`from` `{}` is not a version tag `{}MAJOR.MINOR.PATCH`",
                shown(from),
                input.prefix
            )));
        }
    }
    if let Some(target) = &input.target {
        check::revision("ref", target).map_err(invalid)?;
    }
    if let Some(message) = &input.message {
        check::message(message).map_err(invalid)?;
    }
    let ident = ident(input.author_name.as_ref(), input.author_email.as_ref())?;
    let git = open(path, ident, Access::Write)?;
    let target_name = input.target.as_deref().unwrap_or("HEAD");
    let target = git.resolve("ref", target_name)?;

    let (name, previous) = match (&input.tag, input.bump) {
        (Some(tag), _) => (tag.clone(), String::new()),
        (None, Some(bump)) => {
            let (base, base_tag) = match &input.from {
                Some(from) => {
                    if !git.has_ref(&format!("refs/tags/{from}"))? {
                        return Err(StepError::failed(format!(
                            "there is no tag `{from}` in `{}`",
                            git.repo.path
                        )));
                    }
                    let v = Version::from_tag(from, &input.prefix).unwrap_or(Version {
                        major: 0,
                        minor: 0,
                        patch: 0,
                    });
                    (v, from.clone())
                }
                None => {
                    let merged = format!("--merged={target}");
                    let tags = git.ok(&[
                        "for-each-ref",
                        &merged,
                        "--format=%(refname:strip=2)",
                        "refs/tags/",
                    ])?;
                    let (v, t) = version::latest(tags.lines(), &input.prefix).ok_or_else(|| {
                        StepError::failed(format!(
                            "no tag like `{}1.2.3` is reachable from {target_name}; give `from` or `tag`",
                            input.prefix
                        ))
                    })?;
                    (v, t.to_owned())
                }
            };
            (format!("{}{}", input.prefix, base.bumped(bump)), base_tag)
        }
        (None, None) => unreachable!("checked above"),
    };
    check::ref_name("tag", &name).map_err(invalid)?;
    let created = match git.commit_of(&format!("refs/tags/{name}"))? {
        Some(existing) if existing == target => false,
        Some(existing) => {
            return Err(StepError::failed(format!(
                "tag `{name}` already exists and points to {}, not to {target_name} ({})",
                short(&existing),
                short(&target)
            )));
        }
        None => true,
    };
    if created {
        let message = format!(
            "--message={}",
            input
                .message
                .clone()
                .unwrap_or_else(|| format!("Release {name}"))
        );
        git.ok(&[
            "tag",
            "--annotate",
            "--no-sign",
            "--cleanup=whitespace",
            &message,
            "--end-of-options",
            &name,
            &target,
        ])?;
    }
    let version = Version::from_tag(&name, &input.prefix)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let from_text = if previous.is_empty() {
        String::new()
    } else {
        format!(" (after {previous})")
    };
    Ok(Output::new()
        .set("tag", &name)
        .set("version", &version)
        .set("previous", &previous)
        .set("sha", &target)
        .set("created", created)
        .summary(format!(
            "{} {name} at {}{from_text}",
            if created {
                "tagged"
            } else {
                "kept existing tag"
            },
            short(&target)
        )))
}

/// One line of `git push --porcelain`: `flag \t from:to \t summary`.
fn porcelain(stdout: &str) -> Vec<(char, String, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            let flag = parts.next()?.chars().next()?;
            let refs = parts.next()?;
            let summary = parts.next().unwrap_or_default();
            let to = refs.rsplit_once(':').map_or(refs, |(_, to)| to);
            Some((flag, to.to_owned(), summary.to_owned()))
        })
        .collect()
}

pub fn push(input: input::Push) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    check::remote_name(&input.remote).map_err(invalid)?;
    for name in &input.refs {
        check::ref_name("ref", name).map_err(invalid)?;
    }
    if input.delete && input.refs.is_empty() {
        return Err(invalid(
            "`delete: true` needs the `refs` to delete".to_owned(),
        ));
    }
    let git = open(path, Ident::default(), Access::Write)?;
    check_remote(&git, &input.remote, Access::Write)?;
    let names = if input.refs.is_empty() {
        vec![git.current_branch()?.ok_or_else(|| {
            StepError::failed("HEAD is detached: name the branches or tags to push in `refs`")
        })?]
    } else {
        input.refs.clone()
    };
    let mut specs = Vec::new();
    for name in &names {
        let branch = format!("refs/heads/{name}");
        let tag = format!("refs/tags/{name}");
        let full = if input.delete {
            if git.has_ref(&format!("refs/remotes/{}/{name}", input.remote))? {
                branch
            } else if git.has_ref(&tag)? {
                tag
            } else if git.has_ref(&branch)? {
                branch
            } else {
                return Err(StepError::failed(format!(
                    "`{name}` is not a branch of `{}` nor a tag in `{}`",
                    input.remote, git.repo.path
                )));
            }
        } else if git.has_ref(&branch)? {
            branch
        } else if git.has_ref(&tag)? {
            tag
        } else {
            return Err(StepError::failed(format!(
                "`{name}` is neither a branch nor a tag in `{}`",
                git.repo.path
            )));
        };
        specs.push(if input.delete {
            format!(":{full}")
        } else {
            format!("{full}:{full}")
        });
    }
    let mut args = vec![
        "push",
        "--porcelain",
        "--atomic",
        "--no-verify",
        "--",
        &input.remote,
    ];
    args.extend(specs.iter().map(String::as_str));
    let done = git.run(&args)?;
    let lines = porcelain(&done.stdout_lossy());
    if !done.success() {
        let rejected: Vec<String> = lines
            .iter()
            .filter(|(flag, ..)| *flag == '!')
            .map(|(_, to, why)| format!("{to} {why}"))
            .collect();
        let context = if rejected.is_empty() {
            String::new()
        } else {
            format!("rejected: {}", rejected.join(", "))
        };
        return Err(failure(&args, &done, &context));
    }
    let changed: Vec<&String> = lines
        .iter()
        .filter(|(flag, ..)| *flag != '=')
        .map(|(_, to, _)| to)
        .collect();
    let unchanged: Vec<&String> = lines
        .iter()
        .filter(|(flag, ..)| *flag == '=')
        .map(|(_, to, _)| to)
        .collect();
    let verb = if input.delete { "deleted" } else { "pushed" };
    let summary = if changed.is_empty() {
        format!("{} already up to date", input.remote)
    } else {
        format!(
            "{verb} {} on {}",
            changed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            input.remote
        )
    };
    Ok(Output::new()
        .set("remote", &input.remote)
        .set("pushed", &changed)
        .set("up_to_date", &unchanged)
        .set("deleted", input.delete)
        .summary(summary))
}

/// Checks out `into` (if given), fast-forwarded to its remote-tracking branch
/// when that is ahead; returns the current branch (`None`: detached).
fn prepare_target(
    git: &Git,
    into: Option<&String>,
    remote: &str,
) -> Result<Option<String>, StepError> {
    if let Some(into) = into {
        switch_to_branch(git, into, remote)?;
        if let Some(theirs) = git.commit_of(&format!("refs/remotes/{remote}/{into}"))? {
            let ours = git.resolve("into", "HEAD")?;
            if ours != theirs && is_ancestor(git, &ours, &theirs)? {
                git.ok(&["merge", "--ff-only", "--quiet", "--end-of-options", &theirs])?;
            }
        }
    }
    git.current_branch()
}

pub fn merge(input: input::Merge) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    check::revision("branch", &input.branch).map_err(invalid)?;
    if let Some(into) = &input.into {
        check::ref_name("into", into).map_err(invalid)?;
    }
    if let Some(message) = &input.message {
        check::message(message).map_err(invalid)?;
    }
    check::remote_name(&input.remote).map_err(invalid)?;
    let ident = ident(input.author_name.as_ref(), input.author_email.as_ref())?;
    let git = open(path, ident, Access::Write)?;
    if input.push {
        check_remote(&git, &input.remote, Access::Write)?;
    }
    if input.fetch {
        fetch_all(&git, &input.remote)?;
    }
    let source = resolve_branch(&git, "branch", &input.branch, &input.remote)?;
    let current = prepare_target(&git, input.into.as_ref(), &input.remote)?;
    if input.push && current.is_none() {
        return Err(StepError::failed(
            "HEAD is detached: give `into` to merge into a branch that can be pushed",
        ));
    }
    let into_name = current.clone().unwrap_or_else(|| "HEAD".to_owned());
    let before = git.head()?;
    let message = format!(
        "--message={}",
        input
            .message
            .clone()
            .unwrap_or_else(|| format!("Merge {} into {into_name}", input.branch))
    );
    let args = [
        "merge",
        "--no-ff",
        "--no-edit",
        "--no-verify",
        "--no-gpg-sign",
        "--no-stat",
        "--cleanup=whitespace",
        &message,
        "--end-of-options",
        &source,
    ];
    let done = git.run(&args)?;
    if !done.success() {
        let files = conflicts(&git)?;
        let stopped = git.has_ref("MERGE_HEAD")?;
        if stopped {
            git.ok(&["merge", "--abort"])?;
        }
        return Err(if files.is_empty() {
            failure(
                &args,
                &done,
                if stopped { "the merge was aborted" } else { "" },
            )
        } else {
            StepError::failed(format!(
                "merging `{}` into `{into_name}` conflicts in {}; the merge was aborted and `{into_name}` is unchanged",
                input.branch,
                conflict_list(&files)
            ))
        });
    }
    let sha = git.resolve("HEAD", "HEAD")?;
    let up_to_date = before.as_deref() == Some(sha.as_str());
    if input.push {
        push_branch(&git, &input.remote, &into_name)?;
    }
    Ok(Output::new()
        .set("sha", &sha)
        .set("branch", current.unwrap_or_default())
        .set("merged", &input.branch)
        .set("up_to_date", up_to_date)
        .set("pushed", input.push)
        .summary(if up_to_date {
            format!("{into_name} already contains {}", input.branch)
        } else {
            format!(
                "merged {} into {into_name} ({}){}",
                input.branch,
                short(&sha),
                if input.push {
                    format!(", pushed to {}", input.remote)
                } else {
                    String::new()
                }
            )
        }))
}

pub fn cherry_pick(input: input::CherryPick) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    for c in &input.commits {
        check::revision("commit", c).map_err(invalid)?;
    }
    if input.commits.is_empty() {
        return Err(invalid(
            "`commits` must list at least one commit".to_owned(),
        ));
    }
    if let Some(into) = &input.into {
        check::ref_name("into", into).map_err(invalid)?;
    }
    check::remote_name(&input.remote).map_err(invalid)?;
    let ident = ident(input.author_name.as_ref(), input.author_email.as_ref())?;
    let git = open(path, ident, Access::Write)?;
    if input.push {
        check_remote(&git, &input.remote, Access::Write)?;
    }
    if input.fetch {
        fetch_all(&git, &input.remote)?;
    }
    let shas = input
        .commits
        .iter()
        .map(|c| resolve_branch(&git, "commit", c, &input.remote))
        .collect::<Result<Vec<_>, _>>()?;
    let current = prepare_target(&git, input.into.as_ref(), &input.remote)?;
    if input.push && current.is_none() {
        return Err(StepError::failed(
            "HEAD is detached: give `into` to pick onto a branch that can be pushed",
        ));
    }
    let onto = current.clone().unwrap_or_else(|| "HEAD".to_owned());
    let before = git.resolve("HEAD", "HEAD")?;
    let mut args = vec!["cherry-pick", "--no-gpg-sign"];
    if input.record_origin {
        args.push("-x");
    }
    args.push("--end-of-options");
    args.extend(shas.iter().map(String::as_str));
    let done = git.run(&args)?;
    if !done.success() {
        let files = conflicts(&git)?;
        // Stops the sequence and restores the branch; nothing to abort is fine.
        let _ = git.run(&["cherry-pick", "--abort"])?;
        return Err(if files.is_empty() {
            failure(&args, &done, "the cherry-pick was aborted")
        } else {
            StepError::failed(format!(
                "cherry-picking onto `{onto}` conflicts in {}; the cherry-pick was aborted and `{onto}` is unchanged",
                conflict_list(&files)
            ))
        });
    }
    let range = format!("{before}..HEAD");
    let picked: Vec<String> = git
        .ok(&["rev-list", "--reverse", "--end-of-options", &range])?
        .lines()
        .map(str::to_owned)
        .collect();
    let sha = git.resolve("HEAD", "HEAD")?;
    if input.push {
        push_branch(&git, &input.remote, &onto)?;
    }
    Ok(Output::new()
        .set("sha", &sha)
        .set("branch", current.unwrap_or_default())
        .set("count", picked.len())
        .set("picked", &picked)
        .set("pushed", input.push)
        .summary(format!(
            "picked {} commit{} onto {onto} ({}){}",
            picked.len(),
            if picked.len() == 1 { "" } else { "s" },
            short(&sha),
            if input.push {
                format!(", pushed to {}", input.remote)
            } else {
                String::new()
            }
        )))
}

/// Parses `--format=tformat:%H%x00%an%x00%ae%x00%aI%x00%s%x00` output.
pub fn parse_log(out: &str) -> Vec<Value> {
    let fields: Vec<&str> = out.split('\0').collect();
    fields
        .chunks(5)
        .filter(|c| c.len() == 5)
        .map(|c| {
            json!({
                "sha": c[0].trim_start_matches('\n'),
                "author": c[1],
                "email": c[2],
                "date": c[3],
                "subject": c[4],
            })
        })
        .collect()
}

pub fn log(input: input::Log) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    if let Some(since) = &input.since {
        check::date(since).map_err(invalid)?;
    }
    if let Some(from) = &input.from {
        check::revision("from", from).map_err(invalid)?;
    }
    if let Some(to) = &input.to {
        check::revision("to", to).map_err(invalid)?;
    }
    for p in &input.paths {
        check::repo_path(p).map_err(invalid)?;
    }
    check::remote_name(&input.remote).map_err(invalid)?;
    let max = input.max.unwrap_or(DEFAULT_LOG).clamp(1, 1000);
    let access = if input.fetch {
        Access::Write
    } else {
        Access::Read
    };
    let git = open(path, Ident::default(), access)?;
    if input.fetch {
        fetch_all(&git, &input.remote)?;
    }
    let to = git.resolve("to", input.to.as_deref().unwrap_or("HEAD"))?;
    let range = match &input.from {
        Some(from) => format!("{}..{to}", git.resolve("from", from)?),
        None => to,
    };
    let count = format!("--max-count={}", max + 1);
    let since = input.since.as_ref().map(|s| format!("--since={s}"));
    let mut args = vec![
        "log",
        "--no-decorate",
        "--no-color",
        "--format=tformat:%H%x00%an%x00%ae%x00%aI%x00%s%x00",
        &count,
    ];
    args.extend(since.as_deref());
    args.extend(["--end-of-options", &range, "--"]);
    args.extend(input.paths.iter().map(String::as_str));
    let mut commits = parse_log(&git.ok(&args)?);
    let truncated = commits.len() > max as usize;
    commits.truncate(max as usize);
    let mut what = Vec::new();
    if let Some(since) = &input.since {
        what.push(format!("since {since}"));
    }
    if let Some(from) = &input.from {
        what.push(format!(
            "in {from}..{}",
            input.to.as_deref().unwrap_or("HEAD")
        ));
    }
    Ok(Output::new()
        .set("count", commits.len())
        .set("truncated", truncated)
        .set("commits", &commits)
        .summary(format!(
            "{}{} commit{}{}",
            commits.len(),
            if truncated { "+" } else { "" },
            if commits.len() == 1 { "" } else { "s" },
            if what.is_empty() {
                String::new()
            } else {
                format!(" {}", what.join(" "))
            }
        )))
}

pub fn diff_stat(input: input::DiffStat) -> Result<Output, StepError> {
    let path = location(&input.repo)?;
    check::revision("from", &input.from).map_err(invalid)?;
    if let Some(to) = &input.to {
        check::revision("to", to).map_err(invalid)?;
    }
    check::remote_name(&input.remote).map_err(invalid)?;
    let access = if input.fetch {
        Access::Write
    } else {
        Access::Read
    };
    let git = open(path, Ident::default(), access)?;
    if input.fetch {
        fetch_all(&git, &input.remote)?;
    }
    let to_name = input.to.as_deref().unwrap_or("HEAD");
    let from = git.resolve("from", &input.from)?;
    let to = git.resolve("to", to_name)?;
    let stat = parse_numstat(&git.ok(&[
        "diff",
        "--numstat",
        "-z",
        "--find-renames",
        "--no-ext-diff",
        "--no-textconv",
        "--no-color",
        "--end-of-options",
        &from,
        &to,
        "--",
    ])?);
    Ok(Output::new()
        .set("files_changed", stat.files_changed)
        .set("insertions", stat.insertions)
        .set("deletions", stat.deletions)
        .set("files", &stat.files)
        .set("from", &from)
        .set("to", &to)
        .summary(format!(
            "{}..{to_name}: {} file{} changed, {} insertion{}(+), {} deletion{}(-)",
            input.from,
            stat.files_changed,
            if stat.files_changed == 1 { "" } else { "s" },
            stat.insertions,
            if stat.insertions == 1 { "" } else { "s" },
            stat.deletions,
            if stat.deletions == 1 { "" } else { "s" },
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numstat_with_renames_and_binaries() {
        let out = concat!(
            "3\t1\tsrc/a.js\0",
            "-\t-\tlogo.png\0",
            "0\t2\t\0old/b.js\0new/b.js\0"
        );
        let stat = parse_numstat(out);
        assert_eq!(stat.files_changed, 3);
        assert_eq!(stat.insertions, 3);
        assert_eq!(stat.deletions, 3);
        assert_eq!(stat.files[1]["binary"], true);
        assert_eq!(stat.files[2]["path"], "new/b.js");
        assert_eq!(stat.files[2]["old_path"], "old/b.js");
    }

    #[test]
    fn log_records() {
        let out = "aaa\0Jane\0j@x\x002024-05-01T10:00:00Z\0fix: it\0\nbbb\0Bob\0b@x\x002024-04-30T09:00:00Z\0init\0\n";
        let commits = parse_log(out);
        assert_eq!(commits.len(), 2);
        assert_eq!(commits[1]["sha"], "bbb");
        assert_eq!(commits[0]["subject"], "fix: it");
    }

    #[test]
    fn push_porcelain() {
        let lines = porcelain(
            "To /srv/o.git\n*\trefs/heads/x:refs/heads/x\t[new branch]\n=\trefs/tags/v1:refs/tags/v1\t[up to date]\n-\t:refs/heads/y\t[deleted]\nDone\n",
        );
        assert_eq!(
            lines,
            [
                ('*', "refs/heads/x".to_owned(), "[new branch]".to_owned()),
                ('=', "refs/tags/v1".to_owned(), "[up to date]".to_owned()),
                ('-', "refs/heads/y".to_owned(), "[deleted]".to_owned()),
            ]
        );
    }
}
