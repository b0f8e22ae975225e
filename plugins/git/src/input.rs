//! The step's `with:`: one operation (`op`) and its fields, and the JSON Schema
//! the runner checks it against before the plugin runs.

use runner_sdk::serde_json::{Map, Value, json};
use serde::Deserialize;

use crate::version::Bump;

fn origin() -> String {
    "origin".to_owned()
}

fn yes() -> bool {
    true
}

fn v() -> String {
    "v".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Input {
    Clone(Clone),
    Fetch(Fetch),
    Checkout(Checkout),
    #[serde(alias = "branch-from-tag")]
    Branch(Branch),
    Commit(Commit),
    Tag(Tag),
    Push(Push),
    Merge(Merge),
    CherryPick(CherryPick),
    Log(Log),
    DiffStat(DiffStat),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clone {
    pub repo: String,
    pub url: String,
    pub branch: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetch {
    pub repo: String,
    #[serde(default = "origin")]
    pub remote: String,
    pub branch: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkout {
    pub repo: String,
    #[serde(rename = "ref")]
    pub target: String,
    #[serde(default)]
    pub fetch: bool,
    #[serde(default = "origin")]
    pub remote: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    pub repo: String,
    pub branch: String,
    pub from: Option<String>,
    pub tag: Option<String>,
    #[serde(default = "yes")]
    pub checkout: bool,
    #[serde(default)]
    pub fetch: bool,
    #[serde(default = "origin")]
    pub remote: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    pub repo: String,
    pub message: String,
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub allow_empty: bool,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub repo: String,
    pub tag: Option<String>,
    pub bump: Option<Bump>,
    #[serde(default = "v")]
    pub prefix: String,
    pub from: Option<String>,
    #[serde(rename = "ref")]
    pub target: Option<String>,
    pub message: Option<String>,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub repo: String,
    #[serde(default = "origin")]
    pub remote: String,
    #[serde(default)]
    pub refs: Vec<String>,
    #[serde(default)]
    pub delete: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Merge {
    pub repo: String,
    pub branch: String,
    pub into: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub fetch: bool,
    #[serde(default)]
    pub push: bool,
    #[serde(default = "origin")]
    pub remote: String,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CherryPick {
    pub repo: String,
    pub commits: Vec<String>,
    pub into: Option<String>,
    #[serde(default = "yes")]
    pub record_origin: bool,
    #[serde(default)]
    pub fetch: bool,
    #[serde(default)]
    pub push: bool,
    #[serde(default = "origin")]
    pub remote: String,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub repo: String,
    pub since: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    pub max: Option<u32>,
    #[serde(default)]
    pub fetch: bool,
    #[serde(default = "origin")]
    pub remote: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffStat {
    pub repo: String,
    pub from: String,
    pub to: Option<String>,
    #[serde(default)]
    pub fetch: bool,
    #[serde(default = "origin")]
    pub remote: String,
}

/// One field of an operation's schema.
fn field(kind: &str, description: &str) -> Value {
    json!({ "type": kind, "description": description })
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "minLength": 1, "description": description })
}

fn list(description: &str, min: usize) -> Value {
    json!({
        "type": "array",
        "items": { "type": "string", "minLength": 1 },
        "minItems": min,
        "description": description
    })
}

/// `(op, what it does, its own fields, required fields)`.
type OpSchema = (
    &'static str,
    &'static str,
    Vec<(&'static str, Value)>,
    &'static [&'static str],
);

fn ops() -> Vec<OpSchema> {
    let repo = || {
        text(
            "The working copy: an absolute path inside a folder granted under `fs` (`access: rw` \
             unless the operation only reads).",
        )
    };
    let remote = || text("The remote's name. Default `origin`.");
    let fetch = || {
        field(
            "boolean",
            "Fetch branches and tags from `remote` first. Default false.",
        )
    };
    let author = || {
        [
            (
                "author_name",
                text("Author and committer name. Default `runner`."),
            ),
            (
                "author_email",
                text("Author and committer e-mail. Default `runner@localhost`."),
            ),
        ]
    };
    let mut commit = vec![
        ("repo", repo()),
        ("message", text("The commit message.")),
        (
            "all",
            field(
                "boolean",
                "Stage every change in the working copy first, new files included (like `git add --all`).",
            ),
        ),
        (
            "paths",
            list("Stage these paths (relative to the repository) first.", 1),
        ),
        (
            "allow_empty",
            field(
                "boolean",
                "Commit even when nothing changed. Default false.",
            ),
        ),
    ];
    commit.extend(author());
    let mut tag = vec![
        ("repo", repo()),
        ("tag", text("The tag's name. Exclusive with `bump`.")),
        (
            "bump",
            json!({
                "enum": ["patch", "minor", "major"],
                "description": "Name the tag by bumping the latest `<prefix>MAJOR.MINOR.PATCH` tag reachable from `ref` (or `from`)."
            }),
        ),
        (
            "prefix",
            json!({ "type": "string", "description": "Prefix of version tags. Default `v`." }),
        ),
        (
            "from",
            text("With `bump`: the version tag to bump instead of the latest reachable one."),
        ),
        ("ref", text("The commit to tag. Default HEAD.")),
        (
            "message",
            text("The annotated tag's message. Default `Release <tag>`."),
        ),
    ];
    tag.extend(author());
    let mut merge = vec![
        ("repo", repo()),
        ("branch", text("The branch (or any commit) to merge.")),
        (
            "into",
            text(
                "Check out this branch first (fast-forwarded to `<remote>/<into>` when that is ahead). Default: the current branch.",
            ),
        ),
        (
            "message",
            text("The merge commit's message. Default `Merge <branch> into <into>`."),
        ),
        ("fetch", fetch()),
        (
            "push",
            field(
                "boolean",
                "Push the branch merged into to `remote` afterwards.",
            ),
        ),
        ("remote", remote()),
    ];
    merge.extend(author());
    let mut pick = vec![
        ("repo", repo()),
        (
            "commits",
            list("Commits to apply, in order (object names or refs).", 1),
        ),
        (
            "into",
            text("Check out this branch first. Default: the current branch."),
        ),
        (
            "record_origin",
            field(
                "boolean",
                "Add `(cherry picked from commit …)` to each message (`-x`). Default true.",
            ),
        ),
        ("fetch", fetch()),
        (
            "push",
            field("boolean", "Push the branch to `remote` afterwards."),
        ),
        ("remote", remote()),
    ];
    pick.extend(author());
    vec![
        (
            "clone",
            "Clone `url` into `repo` (missing or empty).",
            vec![
                ("repo", repo()),
                ("url", {
                    let mut url = text(
                        "https://… (no credentials), file:///… or an absolute path inside a granted folder.",
                    );
                    url["x-runner-sink"] = "url".into();
                    url
                }),
                (
                    "branch",
                    text("Branch or tag to check out instead of the remote's HEAD."),
                ),
            ],
            &["url"],
        ),
        (
            "fetch",
            "Fetch branches and tags; with `branch`, fast-forward the local branch to the remote's.",
            vec![
                ("repo", repo()),
                ("remote", remote()),
                (
                    "branch",
                    text(
                        "Also bring this local branch up to `<remote>/<branch>` (fast-forward only; created if missing).",
                    ),
                ),
            ],
            &[],
        ),
        (
            "checkout",
            "Check out a branch (a local one, or one of `remote`'s), or a tag or commit (detached).",
            vec![
                ("repo", repo()),
                ("ref", text("Branch, tag or commit.")),
                ("fetch", fetch()),
                ("remote", remote()),
            ],
            &["ref"],
        ),
        (
            "branch",
            "Create a branch from a tag, a branch or a commit, and check it out.",
            vec![
                ("repo", repo()),
                ("branch", text("The new branch's name.")),
                (
                    "tag",
                    text("Start from this tag (it must be a tag). Exclusive with `from`."),
                ),
                (
                    "from",
                    text("Start from this branch, tag or commit. Default HEAD."),
                ),
                (
                    "checkout",
                    field("boolean", "Check the new branch out. Default true."),
                ),
                ("fetch", fetch()),
                ("remote", remote()),
            ],
            &["branch"],
        ),
        (
            "commit",
            "Commit staged changes (or `all` / `paths`).",
            commit,
            &["message"],
        ),
        (
            "tag",
            "Create an annotated tag, named explicitly or by a semver bump.",
            tag,
            &[],
        ),
        (
            "push",
            "Push branches and tags (never forced), or delete them on the remote.",
            vec![
                ("repo", repo()),
                ("remote", remote()),
                (
                    "refs",
                    list(
                        "Local branches and tags to push, by name. Default: the current branch.",
                        0,
                    ),
                ),
                (
                    "delete",
                    field("boolean", "Delete `refs` on the remote instead."),
                ),
            ],
            &[],
        ),
        (
            "merge",
            "Merge a branch with a merge commit (`--no-ff`); a conflict aborts the merge and fails.",
            merge,
            &["branch"],
        ),
        (
            "cherry-pick",
            "Apply commits onto the current branch (or `into`); a conflict aborts and fails.",
            pick,
            &["commits"],
        ),
        (
            "log",
            "List commits: since a date and/or in the range `from..to`.",
            vec![
                ("repo", repo()),
                (
                    "since",
                    text(
                        "Only commits after this date: `24 hours ago`, `2024-05-01`, `2024-05-01T10:00:00Z`.",
                    ),
                ),
                (
                    "from",
                    text("Only commits not reachable from this one (range start, excluded)."),
                ),
                ("to", text("The commit to list from. Default HEAD.")),
                ("paths", list("Only commits that touch these paths.", 1)),
                (
                    "max",
                    json!({ "type": "integer", "minimum": 1, "maximum": 1000, "description": "Most commits listed. Default 200." }),
                ),
                ("fetch", fetch()),
                ("remote", remote()),
            ],
            &[],
        ),
        (
            "diff-stat",
            "Files changed, lines inserted and deleted between two commits.",
            vec![
                ("repo", repo()),
                ("from", text("The older commit (branch, tag, object name).")),
                ("to", text("The newer commit. Default HEAD.")),
                ("fetch", fetch()),
                ("remote", remote()),
            ],
            &["from"],
        ),
    ]
}

/// The input schema: `op` picks the operation, and each operation's fields are
/// checked by an `if`/`then` branch that allows no other field.
///
/// (`if`/`then` rather than `oneOf`: a `oneOf` failure says only "no branch
/// matched", while a failing `then` names the unknown or missing field.)
pub fn schema() -> Value {
    let all = ops();
    let names: Vec<&str> = all
        .iter()
        .map(|(op, ..)| *op)
        .chain(["branch-from-tag"])
        .collect();
    let ops_doc: Vec<String> = all
        .iter()
        .map(|(op, what, ..)| format!("`{op}`: {}", what.trim_end_matches('.')))
        .collect();
    let mut branches = Vec::new();
    for (op, what, fields, required) in all {
        let mut properties = Map::new();
        for (name, schema) in fields {
            properties.insert(name.into(), schema);
        }
        let mut needed = vec!["op", "repo"];
        needed.extend(required);
        // `branch-from-tag` (the name the bundled hotfix playbook uses) is `branch`.
        let op_match = if op == "branch" {
            json!({ "enum": ["branch", "branch-from-tag"] })
        } else {
            json!({ "const": op })
        };
        let mut op_schema = op_match.clone();
        op_schema["description"] = Value::String(what.to_owned());
        properties.insert("op".into(), op_schema);
        branches.push(json!({
            "if": { "properties": { "op": op_match }, "required": ["op"] },
            "then": {
                "properties": properties,
                "required": needed,
                "additionalProperties": false
            }
        }));
    }
    json!({
        "type": "object",
        "description": "One git operation. Every value is checked before git sees it; see docs/plugins/git.md.",
        "properties": {
            "op": {
                "enum": names,
                "description": format!("The operation. {}. (`branch-from-tag` is `branch` with `tag`.)", ops_doc.join("; "))
            },
            "repo": {
                "type": "string",
                "minLength": 1,
                "description": "The working copy: an absolute path inside a folder granted by its absolute path under `fs` (`access: rw` to write), or a path inside the step's own working directory."
            }
        },
        "required": ["op", "repo"],
        "allOf": branches
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runner_sdk::serde_json::from_value;

    #[test]
    fn ops_deserialise_with_their_own_fields_only() {
        let i: Input = from_value(json!({
            "op": "branch-from-tag", "repo": "/w", "tag": "v1.2.3", "branch": "hotfix/x", "fetch": true
        }))
        .unwrap();
        assert!(matches!(
            i,
            Input::Branch(Branch {
                checkout: true,
                fetch: true,
                ..
            })
        ));
        let i: Input = from_value(json!({ "op": "tag", "repo": "/w", "bump": "patch" })).unwrap();
        assert!(matches!(
            i,
            Input::Tag(Tag {
                bump: Some(Bump::Patch),
                ..
            })
        ));
        let i: Input =
            from_value(json!({ "op": "diff-stat", "repo": "/w", "from": "v1" })).unwrap();
        assert!(matches!(i, Input::DiffStat(_)));
        let i: Input =
            from_value(json!({ "op": "cherry-pick", "repo": "/w", "commits": ["abc"] })).unwrap();
        assert!(matches!(
            i,
            Input::CherryPick(CherryPick {
                record_origin: true,
                ..
            })
        ));
        assert!(from_value::<Input>(json!({ "op": "log", "repo": "/w", "branch": "x" })).is_err());
        assert!(from_value::<Input>(json!({ "op": "rebase", "repo": "/w" })).is_err());
    }

    #[test]
    fn every_op_has_a_schema_branch_that_allows_only_its_fields() {
        let s = schema();
        let ops = s["properties"]["op"]["enum"].as_array().unwrap();
        assert_eq!(ops.len(), 12);
        let branches = s["allOf"].as_array().unwrap();
        assert_eq!(branches.len(), 11);
        for b in branches {
            assert_eq!(b["then"]["additionalProperties"], false);
            assert!(b["then"]["properties"]["repo"].is_object());
        }
    }
}
