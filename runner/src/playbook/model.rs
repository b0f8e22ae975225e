//! The playbook format, version 1, as plain data.
//!
//! These types are the single source of truth for the format: the JSON Schema in
//! `schemas/playbook.schema.json` is generated from them (doc comments become the
//! descriptions an editor shows), and a test fails when the committed schema and
//! these types drift apart. They hold no I/O and no engine types, so the loader,
//! the planner, the engine and external tools can share them.
//!
//! Deserialisation happens only after the document passed the schema, so serde's
//! own errors are not what users see; the schema errors are (see `validate`).
//!
//! Grant entries are the one exception to "as written": each is a
//! [`GrantEntry`], parsed by its capability as it is deserialised and carrying
//! what it means beside what was written (why there: `caps::capability`). Data
//! still, without I/O; validation reports the problems they carry.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::scalars::{Cel, DurationSpec, Ident, MemorySize, Template};
// The grant entries are the capabilities' own types: `caps` parses them and
// must not depend on the playbook, so they live there and are named here too.
use crate::caps::fs::Fs;
pub use crate::caps::grants::{FsAccess, FsGrant, KubeGrant, KubeVerb, ProcessEntry, ProcessRule};
use crate::caps::http::Http;
use crate::caps::kube::Kube;
use crate::caps::process::Process;
use crate::caps::secrets::Secrets;
use crate::caps::tcp::Tcp;
use crate::caps::{Entries, GrantEntry};

/// A runner playbook: the process to follow in a production emergency, written once
/// and run the same way on a laptop and in CI.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runner playbook, format version 1")]
pub struct Playbook {
    /// Format version of this file. Only `1` exists.
    pub version: FormatVersion,
    /// Short name: used in reports, run history and file names.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub name: String,
    /// What this playbook is for, in a sentence or two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Typed inputs, given with `--input KEY=VALUE` or an environment file. Referenced as
    /// `inputs.KEY` in expressions.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub inputs: IndexMap<Ident, Input>,
    /// The plugins steps may use, each under a local name, with the capabilities granted
    /// to it. A plugin with no grants can compute, log and return outputs, nothing else.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub plugins: IndexMap<Ident, PluginDecl>,
    /// Runs that share a concurrency group never run at the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Hard limit for the whole run: when it passes, running steps are stopped and the
    /// failure handlers run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Soft limit for the whole run: when it passes, the `on_budget_exceeded` handlers run
    /// and decide whether the run goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<DurationSpec>,
    /// How many independent steps of one stage may run at once.
    #[serde(default = "default_max_parallel")]
    #[schemars(range(min = 1, max = 64))]
    pub max_parallel: u32,
    /// The stages, run in order.
    #[schemars(length(min = 1))]
    pub stages: Vec<Stage>,
    /// Steps that run when the run fails, blows its budget, or ends in any way.
    #[serde(default, skip_serializing_if = "Handlers::is_empty")]
    pub handlers: Handlers,
}

fn default_max_parallel() -> u32 {
    4
}

/// The format version. Only `1` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "u64", into = "u64")]
#[schemars(with = "FormatVersionSchema")]
pub struct FormatVersion;

#[derive(JsonSchema)]
#[schemars(transform = version_one)]
#[allow(dead_code)] // only its schema is used
struct FormatVersionSchema(u64);

fn version_one(schema: &mut schemars::Schema) {
    schema.remove("format");
    schema.remove("minimum");
    schema.insert("const".into(), 1.into());
}

impl TryFrom<u64> for FormatVersion {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        if v == 1 {
            Ok(FormatVersion)
        } else {
            Err(format!(
                "unsupported playbook version {v}; this runner reads version 1"
            ))
        }
    }
}

impl From<FormatVersion> for u64 {
    fn from(_: FormatVersion) -> u64 {
        1
    }
}

/// A typed input.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The type of the value: `string`, `number`, `bool` or `duration` (like `90s`, `5m`).
    #[serde(rename = "type")]
    pub kind: InputType,
    /// What the input means; shown by `runner plan` and in errors about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The run refuses to start without this input. An input with a default is never
    /// missing, so `required` and `default` exclude each other.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Value used when the input is not given. Must have the input's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The only values allowed, each of the input's type.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub allowed: Option<Vec<Value>>,
    /// A regular expression the whole value must match (`^(?:…)$` is implied), e.g.
    /// `INC-[0-9]+`. Strings only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// What the value is, checked before the run: `dns-label`, `dns-subdomain`,
    /// `image-ref`, `url`, `url-path`, `git-ref` or `email`. Strings only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<InputFormat>,
    /// Where a `url` may point (origins, `https://shop.example.com`) or where an
    /// `image-ref` may come from (repositories, `registry.example.com/shop`). An
    /// environment file's `allow:` narrows it further.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub allow: Option<Vec<String>>,
    /// The longest value, in characters. Strings only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Refuse line breaks (the default: text reaches titles, subjects and commit
    /// subjects). `false` allows several lines. Strings only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_line: Option<bool>,
    /// The smallest number allowed. Numbers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// The largest number allowed. Numbers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// The environment file's `allow:` for this input (not part of the playbook).
    #[serde(skip)]
    #[schemars(skip)]
    pub allow_here: Option<Vec<String>>,
}

/// A named format of a string input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// A Kubernetes-style name: `shop`, `payments-api` (RFC 1123 label).
    DnsLabel,
    /// Dot-separated labels: `shop.v2`, `api.example.com`.
    DnsSubdomain,
    /// An OCI image reference: `registry.example.com/shop:1.4.3`.
    ImageRef,
    /// An absolute http(s) URL without user information.
    Url,
    /// The path of a URL, joined to a base URL: `/health`; never a host.
    UrlPath,
    /// A git branch or tag name: `v1.4.2`, `hotfix/INC-1`.
    GitRef,
    /// A plain e-mail address.
    Email,
}

impl InputFormat {
    /// "a dns-label", for messages.
    pub fn describe(self) -> &'static str {
        match self {
            InputFormat::DnsLabel => "a dns-label",
            InputFormat::DnsSubdomain => "a dns-subdomain",
            InputFormat::ImageRef => "an image-ref",
            InputFormat::Url => "a url",
            InputFormat::UrlPath => "a url-path",
            InputFormat::GitRef => "a git-ref",
            InputFormat::Email => "an email",
        }
    }
}

/// The type of an input value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Bool,
    Duration,
}

/// A plugin made available to steps under a local name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginDecl {
    /// A built-in plugin (`git`, `kubectl`, `http-check`, …), a path to a `.wasm`
    /// component, relative to the playbook (`./plugins/check.wasm`), or a component
    /// in an OCI registry pinned by its manifest digest
    /// (`oci://ghcr.io/acme/check:1.0@sha256:…`; `runner plugins pull` prints it).
    #[schemars(length(min = 1))]
    pub uses: String,
    /// Pin for a `.wasm` path: the file's SHA-256 in hex. The run refuses a file that
    /// does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,
    /// Memory cap for one instance of the plugin (`256MiB` when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySize>,
    /// What the plugin may do beyond computing and logging. Nothing is granted by default.
    #[serde(default, skip_serializing_if = "Grants::is_empty")]
    pub grants: Grants,
}

/// Capabilities granted to a plugin. Each key is one capability; an absent key grants
/// nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Outgoing HTTP: `scheme://host[:port]`, with `*.` allowed as the first label of
    /// the host (`https://*.example.com`). A name that resolves to a loopback, private,
    /// link-local or metadata address is refused unless that address is granted too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<GrantEntry<Http>>,
    /// Outgoing TCP connections (SMTP, a database port): `host:port` endpoints. Names
    /// are resolved by the runner; nothing else is reachable, nothing can listen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<GrantEntry<Tcp>>,
    /// Paths on the host the plugin may open, read-only unless `access: rw`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fs: Vec<GrantEntry<Fs>>,
    /// Programs the plugin may run through the `process` capability: a name looked
    /// up on `PATH` or an absolute path, optionally followed by one pattern per
    /// argument (`*` within an argument; `**` last allows any further arguments), like
    /// `npm test *`; or `{ run: "npm test *", env: [CI, NODE_ENV] }` to let the plugin
    /// also pass those environment variables. The host's environment is never passed
    /// on; without `env`, a program may be given only LANG, LANGUAGE, LC_*, TZ and
    /// NO_COLOR, and loader variables (LD_*, …) can never be granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub process: Vec<GrantEntry<Process>>,
    /// Kubernetes API access, checked by the host; credentials never enter the plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kube: Vec<GrantEntry<Kube>>,
    /// Names of secrets the plugin may read. Their values are redacted from logs,
    /// journal and reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<GrantEntry<Secrets>>,
}

impl Grants {
    /// Every capability's entries, in the order above: the one list that
    /// validation and `host::resolve` loop over.
    pub fn each(&self) -> [&dyn Entries; 6] {
        [
            &self.http,
            &self.tcp,
            &self.fs,
            &self.process,
            &self.kube,
            &self.secrets,
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.each().iter().all(|entries| entries.is_empty())
    }

    /// Adds `other`'s entries after this block's (an environment file's grants
    /// to a playbook's plugin).
    pub fn extend(&mut self, other: &Grants) {
        self.http.extend(other.http.iter().cloned());
        self.tcp.extend(other.tcp.iter().cloned());
        self.fs.extend(other.fs.iter().cloned());
        self.process.extend(other.process.iter().cloned());
        self.kube.extend(other.kube.iter().cloned());
        self.secrets.extend(other.secrets.iter().cloned());
    }
}

/// Keeps runs of one group apart.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// Group name; `${{ }}` may use inputs, e.g. `deploy-${{ inputs.service }}`.
    pub group: Template,
    /// What a run does when another run of its group is going: `wait` for it (the
    /// default) or `fail` at once.
    #[serde(default)]
    pub on_conflict: OnConflict,
}

/// What a run does when its concurrency group is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    #[default]
    Wait,
    Fail,
}

/// A stage: a named group of steps with its own budget, timeout and handlers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Identifier, unique among stages; `stages.ID` in expressions.
    pub id: Ident,
    /// Human-readable name for progress and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// CEL condition; the stage is skipped when it is false.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Cel>,
    /// Hard limit for this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Soft limit for this stage: when it passes, the stage's `on_budget_exceeded`
    /// handlers run (or the run's, when the stage has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<DurationSpec>,
    /// The steps. They run in order unless a step lists its `needs`.
    #[schemars(length(min = 1))]
    pub steps: Vec<Step>,
    /// Steps that run when this stage fails, blows its budget, or ends.
    #[serde(default, skip_serializing_if = "Handlers::is_empty")]
    pub handlers: Handlers,
}

/// Handler steps, run by the engine when something happens rather than in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Handlers {
    /// Run when a step, gate or timeout fails the stage or run: the rollback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Step>,
    /// Run when the budget is blown: notify, ask a human. If all succeed the run goes
    /// on; if one fails (an approval is refused), the run fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_budget_exceeded: Vec<Step>,
    /// Always run last: after success, failure, timeout or interruption.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finally: Vec<Step>,
}

impl Handlers {
    pub fn is_empty(&self) -> bool {
        self.on_failure.is_empty() && self.on_budget_exceeded.is_empty() && self.finally.is_empty()
    }

    /// The handler lists with their key names, in the order the engine runs them.
    pub fn lists(&self) -> [(&'static str, &[Step]); 3] {
        [
            ("on_failure", &self.on_failure),
            ("on_budget_exceeded", &self.on_budget_exceeded),
            ("finally", &self.finally),
        ]
    }
}

/// One step. It does exactly one thing: runs a plugin (`uses`, optionally repeated by
/// `watch`), checks a `gate`, or waits for an `approval`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Identifier, unique in the playbook; `steps.ID` in expressions.
    pub id: Ident,
    /// Human-readable name for progress and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Local name of a plugin declared under `plugins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<Ident>,
    /// Inputs for the plugin, checked against the plugin's own schema. Strings may hold
    /// `${{ }}`; a string that is one whole `${{ }}` keeps the expression's type.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub with: IndexMap<String, Value>,
    /// Run the plugin repeatedly and judge each measurement (only with `uses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<Watch>,
    /// A checkpoint with three outcomes: pass, fail, inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    /// Wait for a human decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// CEL condition; the step is skipped when it is false.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Cel>,
    /// Steps of the same stage that must finish first. Without `needs`, a step waits
    /// for the step before it; `needs: []` starts it with the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<Ident>>,
    /// Hard limit for one attempt of this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Retry a failed attempt. Only errors the plugin marks retryable are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// A failure of this step is recorded but does not fail the stage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
    /// Running the step twice does no harm. When the runner died while this step
    /// was running, `runner resume` runs it again if it is idempotent (or has
    /// retry attempts left), and otherwise fails it so the failure handlers run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

impl Watch {
    /// The limit on failed measurements in all, `None` when there is none: an unset
    /// `failure_limit` means 0, except next to a `consecutive_failure_limit`, which
    /// would otherwise never be reached.
    pub fn effective_failure_limit(&self) -> Option<u32> {
        match (self.failure_limit, self.consecutive_failure_limit) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(0),
        }
    }
}

/// Which of the three kinds a step is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepKind<'a> {
    Plugin(&'a Ident),
    Gate(&'a Gate),
    Approval(&'a Approval),
}

impl Step {
    /// The step's kind, or `None` when it declares none or several (a validation error).
    pub fn kind(&self) -> Option<StepKind<'_>> {
        match (&self.uses, &self.gate, &self.approval) {
            (Some(p), None, None) => Some(StepKind::Plugin(p)),
            (None, Some(g), None) => Some(StepKind::Gate(g)),
            (None, None, Some(a)) => Some(StepKind::Approval(a)),
            _ => None,
        }
    }
}

/// Retry policy: exponential backoff between attempts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first one included.
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: u32,
    /// Wait before the second attempt (`1s` when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DurationSpec>,
    /// Each further wait is the previous one times this factor (2 when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub factor: Option<f64>,
    /// Upper bound of a single wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<DurationSpec>,
}

/// A gate: CEL conditions over inputs and earlier steps, with three outcomes.
///
/// `fail` is checked first: true means fail. Then `pass`: true means pass. Otherwise
/// the gate is inconclusive. Without `fail`, a gate whose `pass` is false fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// CEL condition for passing.
    pub pass: Cel,
    /// CEL condition for failing; without it, "not pass" is a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<Cel>,
    /// What an inconclusive outcome does: `approve` (pause for a human, the default),
    /// `fail`, or `continue`.
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
}

/// What an inconclusive gate or watch does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnInconclusive {
    #[default]
    Approve,
    Fail,
    Continue,
}

/// A manual approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The question, shown on the terminal and in notifications; `${{ }}` allowed.
    pub prompt: Template,
    /// Roles that must each approve (e.g. `tech-lead`, `on-call`); one approval from
    /// anyone when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// How long to wait for the decision.
    pub timeout: DurationSpec,
    /// What happens when nobody answers in time: `continue` as if approved, `fail` the
    /// step, or `rollback`: fail the run at once, whatever `continue_on_error` says, so
    /// the failure handlers run.
    pub on_timeout: OnTimeout,
    /// The one who started the run may not approve it (they may still reject
    /// it): another person must.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_self_approval: bool,
}

/// What an approval that timed out does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    Continue,
    Fail,
    Rollback,
}

/// Repeated measurement: run the step's plugin every `interval` and judge each result.
///
/// Each measurement is successful, failed, inconclusive or an error (the plugin itself
/// failed). A limit is the number of such measurements tolerated: the watch fails on
/// the first measurement that makes a count go *above* its limit. So
/// `consecutive_failure_limit: 1` fails on the second failure in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// Time between the starts of two measurements.
    pub interval: DurationSpec,
    /// Number of measurements. Exactly one of `count` and `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub count: Option<u32>,
    /// How long to keep measuring. Exactly one of `count` and `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationSpec>,
    /// CEL condition over `result` (this measurement's outputs) for a successful one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<Cel>,
    /// CEL condition over `result` for a failed one; checked before `success`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Cel>,
    /// Failed measurements tolerated in all. When not set: 0, unless
    /// `consecutive_failure_limit` is set, in which case only that limit applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
    /// Failed measurements in a row tolerated (no limit of its own when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failure_limit: Option<u32>,
    /// Inconclusive measurements tolerated in all (0 when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<u32>,
    /// Plugin errors in a row tolerated (4 when not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<u32>,
    /// What the watch does when the inconclusive limit is passed: `approve` (the
    /// default), `fail` or `continue`.
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(failure_limit: Option<u32>, consecutive: Option<u32>) -> Watch {
        Watch {
            interval: DurationSpec("10s".into()),
            count: Some(3),
            duration: None,
            success: None,
            failure: None,
            failure_limit,
            consecutive_failure_limit: consecutive,
            inconclusive_limit: None,
            consecutive_error_limit: None,
            on_inconclusive: OnInconclusive::Approve,
        }
    }

    #[test]
    fn consecutive_limit_alone_is_not_shadowed_by_the_total() {
        assert_eq!(watch(None, None).effective_failure_limit(), Some(0));
        assert_eq!(watch(None, Some(1)).effective_failure_limit(), None);
        assert_eq!(watch(Some(3), Some(1)).effective_failure_limit(), Some(3));
        assert_eq!(watch(Some(2), None).effective_failure_limit(), Some(2));
    }

    fn grants(json: serde_json::Value) -> Grants {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn each_capability_is_listed_under_its_own_key() {
        let g = grants(serde_json::json!({
            "http": ["https://example.com"],
            "tcp": ["127.0.0.1:25"],
            "fs": [{ "path": "data" }],
            "process": ["git"],
            "kube": [{ "namespaces": ["a"], "resources": ["pods"], "verbs": ["get"] }],
            "secrets": ["TOKEN"],
        }));
        let keys: Vec<String> = serde_json::to_value(&g)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let kinds: Vec<&str> = g.each().iter().map(|e| e.kind()).collect();
        assert_eq!(keys, kinds);
        assert!(
            g.each()
                .iter()
                .all(|e| !e.is_empty() && e.problems().is_empty())
        );
        assert!(!g.is_empty());
        assert!(Grants::default().is_empty());
    }

    #[test]
    fn entries_are_parsed_as_they_are_read_and_written_back_as_read() {
        let written = serde_json::json!({
            "http": ["ftp://x", "https://API.example.com"],
            "process": [{ "run": "sh", "env": ["LD_PRELOAD"] }],
            "secrets": ["bad-name"],
        });
        let g = grants(written.clone());
        assert_eq!(serde_json::to_value(&g).unwrap(), written);
        let problems: Vec<(&str, usize)> = g
            .each()
            .iter()
            .flat_map(|e| e.problems().into_iter().map(|(i, _)| (e.kind(), i)))
            .collect();
        assert_eq!(problems, [("http", 0), ("process", 0), ("secrets", 0)]);
        assert!(g.http[1].parsed().is_some());
        let mut more = Grants::default();
        more.extend(&g);
        more.extend(&g);
        assert_eq!(more.http.len(), 4);
        assert_eq!(more.process[1].problems().len(), 1);
    }
}
