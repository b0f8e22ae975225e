//! `serve.yaml`: what a server serves and who may do what.
//!
//! Why a file of its own, read once at start: the catalog (which playbooks
//! and environment files can be run), the token file, the alert routes and the
//! chat mapping are decisions of whoever runs the server, not of whoever
//! calls it; nothing in a request can widen them. Secrets (the webhook, Slack
//! and link signing keys) are never in the file: it names the environment
//! variables that hold them. Relative paths are taken from the file's folder.
//! Errors say `FILE:LINE:COL` as a playbook's do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::playbook::yaml::{Path as YamlPath, Target};
use crate::playbook::{LoadError, Problem, Source};

/// The server's configuration, paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// The folder of playbooks that may be run (`NAME.yaml` is playbook NAME).
    pub playbooks: PathBuf,
    /// The folder of environment files that runs may use (`NAME.yaml`).
    pub environments: Option<PathBuf>,
    /// The hashed API tokens.
    pub tokens: PathBuf,
    /// The URL the server is reached at, for links in messages.
    pub public_url: Option<String>,
    pub access: Access,
    /// Who executes the runs started here; `None`: the workers' queue with a
    /// shared journal, else the server.
    pub execute: Option<Execute>,
    pub limits: Limits,
    pub alertmanager: Option<Alertmanager>,
    pub webhooks: Vec<Webhook>,
    pub slack: Option<Slack>,
    pub links: Option<Links>,
}

/// Who executes the runs a server starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Execute {
    /// This process, at most `limits.concurrent_runs` at once.
    Server,
    /// `runner worker`s, through the shared journal's queue.
    Workers,
}

/// Which roles may do what besides approving (approvals take the roles the
/// playbook's step names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// Roles that may start, cancel and re-run runs, and answer approval
    /// steps that name no roles.
    #[serde(default = "default_operate")]
    pub operate: Vec<String>,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            operate: default_operate(),
        }
    }
}

fn default_operate() -> Vec<String> {
    vec!["operator".to_owned()]
}

/// How much a caller may ask of the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The largest request body taken, in bytes.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// How long a request (not a stream) may take, in seconds.
    #[serde(default = "default_timeout")]
    pub request_timeout_s: u64,
    /// Requests per minute for each principal (bursts up to that many).
    #[serde(default = "default_rate")]
    pub requests_per_minute: u32,
    /// Runs the server itself executes at once (without a shared journal);
    /// more wait for a slot.
    #[serde(default = "default_concurrent")]
    pub concurrent_runs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: default_body(),
            request_timeout_s: default_timeout(),
            requests_per_minute: default_rate(),
            concurrent_runs: default_concurrent(),
        }
    }
}

fn default_body() -> usize {
    1 << 20
}
fn default_timeout() -> u64 {
    30
}
fn default_rate() -> u32 {
    600
}
fn default_concurrent() -> usize {
    4
}

/// Alertmanager's webhook (`POST /api/v1/hooks/alertmanager`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alertmanager {
    /// The role of the token Alertmanager sends (`http_config.authorization`).
    #[serde(default = "default_alert_role")]
    pub role: String,
    /// The first route whose labels all match an alert starts its run.
    pub routes: Vec<Route>,
}

fn default_alert_role() -> String {
    "alertmanager".to_owned()
}

/// From an alert to a run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Named in the run's record (`started by NAME (alert)`).
    pub name: String,
    /// Labels the alert must have, with these values.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// A playbook of the catalog.
    pub playbook: String,
    /// An environment file of the catalog.
    #[serde(default)]
    pub environment: Option<String>,
    /// The run's inputs: a constant, `{label: NAME}` (the alert's label),
    /// `{alert: starts_at | fingerprint | status}`.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputFrom>,
}

/// Where an input's value comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum InputFrom {
    /// One of the alert's labels.
    Label { label: String },
    /// One of the alert's annotations.
    Annotation { annotation: String },
    /// A field of the alert: `starts_at`, `fingerprint`, `status`, `generator_url`.
    Alert { alert: AlertField },
    /// A value of a generic webhook's JSON body, by JSON pointer (`/service`).
    Field { field: String },
    /// The same value every time.
    Value(Scalar),
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertField {
    StartsAt,
    Fingerprint,
    Status,
    GeneratorUrl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Text(t) => t.clone(),
        }
    }
}

/// A generic JSON webhook (`POST /api/v1/hooks/generic/NAME`), signed with
/// HMAC-SHA256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub name: String,
    /// The environment variable holding the signing key.
    pub secret_env: String,
    pub playbook: String,
    #[serde(default)]
    pub environment: Option<String>,
    /// Inputs: constants or `{field: /json/pointer}`.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputFrom>,
    /// A JSON pointer to a value that names the event: while a run started
    /// for a value is active, the same value starts nothing.
    #[serde(default)]
    pub dedup: Option<String>,
}

/// Slack's interactive messages (`POST /api/v1/hooks/slack/interactive`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    /// The environment variable holding the app's signing secret.
    pub signing_secret_env: String,
    /// Slack user id → principal (whose roles the token file gives).
    #[serde(default)]
    pub users: BTreeMap<String, String>,
}

/// Signed one-time approval links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// The environment variable holding the signing key.
    pub secret_env: String,
    /// How long a link is valid, in seconds.
    #[serde(default = "default_link_ttl")]
    pub ttl_s: u64,
}

fn default_link_ttl() -> u64 {
    24 * 3600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    catalog: Catalog,
    tokens: String,
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default)]
    access: Access,
    #[serde(default)]
    execute: Option<Execute>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    alertmanager: Option<Alertmanager>,
    #[serde(default)]
    webhooks: Vec<Webhook>,
    #[serde(default)]
    slack: Option<Slack>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalog {
    playbooks: String,
    #[serde(default)]
    environments: Option<String>,
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let source = Source::read(path, "server configuration")?;
        Config::from_source(source, path)
    }

    /// Checks a configuration already read from `path`.
    pub fn from_source(source: Source, path: &Path) -> Result<Config, LoadError> {
        let invalid = |source: &Source, problems: Vec<Problem>| LoadError::Invalid {
            file: Box::new(source.clone()),
            problems,
        };
        let tree = crate::playbook::yaml::parse(&source.text).map_err(|e| {
            invalid(
                &source,
                vec![Problem {
                    pos: e.pos,
                    message: e.message,
                }],
            )
        })?;
        let file: File = serde_path_to_error::deserialize(tree.to_json()).map_err(|e| {
            let mut at = YamlPath::root();
            for segment in e.path().iter() {
                at = match segment {
                    serde_path_to_error::Segment::Seq { index } => at.index(*index),
                    serde_path_to_error::Segment::Map { key } => at.key(key),
                    serde_path_to_error::Segment::Enum { variant } => at.key(variant),
                    serde_path_to_error::Segment::Unknown => at,
                };
            }
            let message = format!("not a valid server configuration: {}", e.inner());
            invalid(
                &source,
                vec![Problem::at(&tree, &at, Target::Value, message)],
            )
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_owned()
            } else {
                dir.join(p)
            }
        };
        let mut problems = Vec::new();
        let config = Config {
            file: path.to_owned(),
            playbooks: resolve(&file.catalog.playbooks),
            environments: file.catalog.environments.as_deref().map(resolve),
            tokens: resolve(&file.tokens),
            public_url: file.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            access: file.access,
            execute: file.execute,
            limits: file.limits,
            alertmanager: file.alertmanager,
            webhooks: file.webhooks,
            slack: file.slack,
            links: file.links,
        };
        if !config.playbooks.is_dir() {
            problems.push(Problem::at(
                &tree,
                &YamlPath::root().key("catalog").key("playbooks"),
                Target::Value,
                format!(
                    "the catalog's playbook folder `{}` is not a folder",
                    config.playbooks.display()
                ),
            ));
        }
        if let Some(envs) = &config.environments
            && !envs.is_dir()
        {
            problems.push(Problem::at(
                &tree,
                &YamlPath::root().key("catalog").key("environments"),
                Target::Value,
                format!(
                    "the catalog's environment folder `{}` is not a folder",
                    envs.display()
                ),
            ));
        }
        if config.limits.concurrent_runs == 0 || config.limits.requests_per_minute == 0 {
            problems.push(Problem::at(
                &tree,
                &YamlPath::root().key("limits"),
                Target::Value,
                "limits.concurrent_runs and limits.requests_per_minute must be at least 1"
                    .to_owned(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, hook) in config.webhooks.iter().enumerate() {
            if !super::catalog::is_name(&hook.name) || !names.insert(hook.name.clone()) {
                problems.push(Problem::at(
                    &tree,
                    &YamlPath::root().key("webhooks").index(i).key("name"),
                    Target::Value,
                    format!(
                        "webhook name `{}` must be unique and made of letters, digits, `-`, `_` and `.`",
                        hook.name
                    ),
                ));
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(&source, problems))
        }
    }
}
