//! The entries of a playbook's `grants:` that are not plain strings (paths,
//! programs, Kubernetes rules), as written: the `Written` side of the
//! [`super::capability::GrantEntry`] values that `playbook::model` holds (and
//! re-exports these types for), which each capability's parser turns into its
//! checked form (`caps::fs::Fs`, `caps::process::Process`, `caps::kube::Kube`).
//!
//! Why here and not in the model: `caps` sits below `playbook` (the model holds
//! the capabilities' parsed entries), so the types both need belong to the
//! lower of the two.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One program a plugin may run: `git`, `"npm test *"`, or the same with the
/// environment variables the plugin may set for it:
/// `{ run: "npm test *", env: [CI, NODE_ENV] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ProcessEntry {
    /// The program and its argument patterns.
    Program(String),
    /// The program and its argument patterns, with environment variables.
    Rule(ProcessRule),
}

/// A program with the environment variables the plugin may give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessRule {
    /// The program and its argument patterns, as in the short form.
    pub run: String,
    /// Names of environment variables the plugin may set for this program, beyond
    /// LANG, LANGUAGE, LC_*, TZ and NO_COLOR; `NAME_*` allows every name with that
    /// prefix. Granting a variable a program reads code or commands from
    /// (`NODE_OPTIONS`, `BASH_ENV`, `GIT_CONFIG_*`, `PYTHONSTARTUP`) grants running
    /// any code. Loader variables (`LD_*`, `DYLD_*`, `GCONV_PATH`, …) cannot be granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}

impl ProcessEntry {
    /// The program and its argument patterns, as written.
    pub fn run(&self) -> &str {
        match self {
            ProcessEntry::Program(run) => run,
            ProcessEntry::Rule(rule) => &rule.run,
        }
    }

    /// The environment variables granted with it.
    pub fn env(&self) -> &[String] {
        match self {
            ProcessEntry::Program(_) => &[],
            ProcessEntry::Rule(rule) => &rule.env,
        }
    }
}

impl From<&str> for ProcessEntry {
    fn from(run: &str) -> ProcessEntry {
        ProcessEntry::Program(run.to_owned())
    }
}

impl From<String> for ProcessEntry {
    fn from(run: String) -> ProcessEntry {
        ProcessEntry::Program(run)
    }
}

/// A path on the host granted to a plugin.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FsGrant {
    /// The path, relative to the playbook's folder or absolute. Everything below it is
    /// granted; nothing outside, whatever `..` or symlinks say.
    #[schemars(length(min = 1))]
    pub path: String,
    /// `ro` (the default) or `rw`.
    #[serde(default)]
    pub access: FsAccess,
}

/// Access mode of a granted path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FsAccess {
    #[default]
    Ro,
    Rw,
}

/// One rule of Kubernetes access: the request must match every listed field.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeGrant {
    /// Namespaces the rule covers.
    #[schemars(length(min = 1))]
    pub namespaces: Vec<String>,
    /// Resources by plural name, with the API group for non-core ones
    /// (`deployments.apps`, `pods`, `pods/log`).
    #[schemars(length(min = 1))]
    pub resources: Vec<String>,
    /// API verbs: get, list, watch, create, update, patch, delete.
    #[schemars(length(min = 1))]
    pub verbs: Vec<KubeVerb>,
    /// Object names the rule is limited to; all objects when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// A Kubernetes API verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KubeVerb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}
