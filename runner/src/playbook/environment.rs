//! Environment files: what a playbook runs against, kept out of the playbook.
//!
//! Why: a playbook names no hosts. The same `hotfix.yaml` runs against the local
//! sandbox, staging and production; what changes is an environment file given
//! with `--env`: input values (URLs, namespaces, the git remote), grants added
//! to the playbook's plugins (the hosts those URLs name), the kube context and
//! kubeconfig, and where secrets come from.
//!
//! ```yaml
//! kube_context: prod-eu
//! kubeconfig: ~/.kube/prod.yaml        # optional; else KUBECONFIG / ~/.kube/config
//! secrets_file: /run/secrets/runner    # optional; NAME=value lines, chmod 600
//! inputs:
//!   production_url: https://shop.example.com
//!   namespace: production
//! grants:                              # by the playbook's plugin names
//!   http_check: { http: ["https://shop.example.com"] }
//! allow:                               # where url / image-ref inputs may point here
//!   production_url: ["https://shop.example.com"]
//!   fixed_image: ["registry.example.com/shop"]
//! secrets:                             # references only, never values
//!   DB_PASSWORD: k8s://payments/db-credentials#password
//! ```
//!
//! Rules: `-i KEY=VALUE` beats the file's `inputs`, and `--kube-context` /
//! `--secrets` beat its settings. `allow` narrows an input's own `allow`
//! (a value must satisfy both); it applies to `-i` values too. Inputs the
//! playbook does not declare and grants for plugins it does not have are ignored (one file serves several
//! playbooks); grants are checked as the playbook's own are, and `runner plan`
//! shows them merged. Relative paths are relative to the file's folder; `~/`
//! is the home folder.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use serde::Deserialize;

use super::model::Grants;
use super::yaml::{Path, Target};
use super::{LoadError, Problem, Source, Validated};

/// A parsed environment file.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Where it was read from (absolute when it could be made so).
    pub path: PathBuf,
    pub kube_context: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub secrets_file: Option<PathBuf>,
    /// Input values, as the text `-i` would give.
    pub inputs: BTreeMap<String, String>,
    pub grants: BTreeMap<String, Grants>,
    /// Per input: the origins (`url`) or repositories (`image-ref`) allowed here.
    pub allow: BTreeMap<String, Vec<String>>,
    /// Secrets by reference (`k8s://NAMESPACE/SECRET#KEY`), never by value.
    pub secrets: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    kube_context: Option<String>,
    #[serde(default)]
    kubeconfig: Option<String>,
    #[serde(default)]
    secrets_file: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    grants: BTreeMap<String, Grants>,
    #[serde(default)]
    allow: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

const KEYS: &[&str] = &[
    "kube_context",
    "kubeconfig",
    "secrets_file",
    "inputs",
    "grants",
    "allow",
    "secrets",
];

impl Environment {
    /// Reads and checks the environment file at `path`; problems carry
    /// file:line:col like a playbook's.
    pub fn load(path: &FsPath) -> Result<Environment, LoadError> {
        Environment::from_source(Source::read(path, "environment file")?, path)
    }

    /// [`Environment::load`] of a text already read, for the file at `path`
    /// (relative paths in it are resolved against that file's folder): the
    /// copy a run's journal keeps, when the run is resumed where the file is
    /// not.
    pub fn from_source(source: Source, path: &FsPath) -> Result<Environment, LoadError> {
        let invalid = |source: &Source, problems: Vec<Problem>| LoadError::Invalid {
            file: Box::new(source.clone()),
            problems,
        };
        let tree = super::yaml::parse(&source.text).map_err(|e| {
            invalid(
                &source,
                vec![Problem {
                    pos: e.pos,
                    message: e.message,
                }],
            )
        })?;
        let doc = tree.to_json();
        let mut problems = Vec::new();
        match doc.as_object() {
            Some(map) => {
                for key in map.keys().filter(|k| !KEYS.contains(&k.as_str())) {
                    problems.push(Problem::at(
                        &tree,
                        &Path::root().key(key),
                        Target::Key,
                        format!(
                            "unknown key `{key}` in an environment file; keys are: {}",
                            KEYS.join(", ")
                        ),
                    ));
                }
                if let Some(inputs) = map.get("inputs").and_then(|i| i.as_object()) {
                    for (k, v) in inputs {
                        if v.is_object() || v.is_array() || v.is_null() {
                            problems.push(Problem::at(
                                &tree,
                                &Path::root().key("inputs").key(k),
                                Target::Value,
                                format!("input `{k}` must be a string, number or boolean"),
                            ));
                        }
                    }
                }
            }
            None => problems.push(Problem {
                pos: tree.pos,
                message: "an environment file is a mapping (kube_context, kubeconfig, secrets_file, inputs, grants)".to_owned(),
            }),
        }
        if !problems.is_empty() {
            return Err(invalid(&source, problems));
        }
        let file: File = serde_json::from_value(doc).map_err(|e| {
            invalid(
                &source,
                vec![Problem {
                    pos: tree.pos,
                    message: format!("not a valid environment file: {e}"),
                }],
            )
        })?;
        for (plugin, g) in &file.grants {
            let at = Path::root().key("grants").key(plugin);
            problems.extend(super::grant_problems(&tree, &at, g));
        }
        if !problems.is_empty() {
            return Err(invalid(&source, problems));
        }
        let dir = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(FsPath::to_path_buf))
            .unwrap_or_else(|| path.parent().map(FsPath::to_path_buf).unwrap_or_default());
        let resolve = |p: &str| -> PathBuf {
            match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => FsPath::new(&home).join(rest),
                _ => dir.join(p),
            }
        };
        let mut grants = file.grants;
        for g in grants.values_mut() {
            for f in &mut g.fs {
                // The path the entry means is the resolved one: the entry is
                // made again from it (a folder's entry has no problems).
                let mut written = f.written().clone();
                written.path = resolve(&written.path).display().to_string();
                *f = crate::caps::GrantEntry::new(written);
            }
        }
        Ok(Environment {
            path: path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
            kube_context: file.kube_context,
            kubeconfig: file.kubeconfig.as_deref().map(resolve),
            secrets_file: file.secrets_file.as_deref().map(resolve),
            inputs: file
                .inputs
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, text)
                })
                .collect(),
            grants,
            allow: file.allow,
            secrets: file.secrets,
        })
    }

    /// The input assignments for `validated`: this file's values for the
    /// inputs the playbook declares, unless `given` (from `-i`) sets them.
    pub fn inputs_for(
        &self,
        validated: &Validated,
        given: &[(String, String)],
    ) -> Vec<(String, String)> {
        let declared = &validated.playbook.inputs;
        let mut out: Vec<(String, String)> = self
            .inputs
            .iter()
            .filter(|(k, _)| declared.contains_key(k.as_str()))
            .filter(|(k, _)| !given.iter().any(|(g, _)| g == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.extend(given.iter().cloned());
        out
    }

    /// Hands this file's `allow:` lists to the inputs of the same names; an entry
    /// for an input whose format has no allowlist, or that is not an origin or a
    /// repository, is refused (an allowlist that silently does nothing would be
    /// worse than none).
    pub fn add_allow(&self, validated: &mut Validated) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for (name, input) in validated.playbook.inputs.iter_mut() {
            let Some(list) = self.allow.get(name.as_str()) else {
                continue;
            };
            for entry in list {
                if let Some(e) = super::constraints::allow_entry_problem(input.format, entry) {
                    errors.push(format!("{}: allow.{name}: {e}", self.path.display()));
                }
            }
            input.allow_here = Some(list.clone());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Adds this file's grants to the playbook's plugins of the same names.
    pub fn add_grants(&self, validated: &mut Validated) {
        for (name, decl) in validated.playbook.plugins.iter_mut() {
            let Some(extra) = self.grants.get(name.as_str()) else {
                continue;
            };
            decl.grants.extend(extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("runner-env-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("env.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn problems(e: LoadError) -> Vec<String> {
        match e {
            LoadError::Invalid { problems, .. } => problems
                .into_iter()
                .map(|p| format!("{}:{}: {}", p.pos.line, p.pos.col, p.message))
                .collect(),
            other => vec![other.to_string()],
        }
    }

    #[test]
    fn a_full_file_loads_with_paths_resolved() {
        let p = write(
            "full",
            "kube_context: sandbox\nkubeconfig: kube/config\nsecrets_file: secrets.env\ninputs:\n  url: http://127.0.0.1:8080\n  replicas: 4\n  dry: true\ngrants:\n  check: { http: [\"http://127.0.0.1:8080\"], fs: [{ path: git, access: rw }] }\n",
        );
        let env = Environment::load(&p).unwrap();
        let dir = p.canonicalize().unwrap().parent().unwrap().to_path_buf();
        assert_eq!(env.kube_context.as_deref(), Some("sandbox"));
        assert_eq!(env.kubeconfig, Some(dir.join("kube/config")));
        assert_eq!(env.secrets_file, Some(dir.join("secrets.env")));
        assert_eq!(env.inputs["replicas"], "4");
        assert_eq!(env.inputs["dry"], "true");
        assert_eq!(
            env.grants["check"].fs[0].written().path,
            dir.join("git").display().to_string()
        );
    }

    #[test]
    fn the_shipped_environment_files_load() {
        let dir = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../environments");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml") {
                Environment::load(&p)
                    .unwrap_or_else(|e| panic!("{}: {}", p.display(), problems(e).join("\n")));
                n += 1;
            }
        }
        assert!(n >= 1);
    }

    #[test]
    fn mistakes_are_located() {
        let p = write(
            "bad",
            "kube_contxt: x\ninputs:\n  a: [1]\ngrants:\n  check: { http: [\"ftp://x\"] }\n",
        );
        let all = problems(Environment::load(&p).unwrap_err()).join("\n");
        assert!(all.contains("1:1: unknown key `kube_contxt`"), "{all}");
        assert!(all.contains("3:6: input `a` must be a string"), "{all}");
        let p = write("bad-grant", "grants:\n  check: { http: [\"ftp://x\"] }\n");
        let all = problems(Environment::load(&p).unwrap_err()).join("\n");
        assert!(
            all.starts_with("2:19: `ftp://x` is not an HTTP grant"),
            "{all}"
        );
        let p = write("bad-shape", "grants:\n  check: { htp: [x] }\n");
        let all = problems(Environment::load(&p).unwrap_err()).join("\n");
        assert!(all.contains("htp"), "{all}");
    }

    #[test]
    fn every_kind_of_grant_is_checked_as_a_playbooks_is() {
        // Only `http` and `tcp` entries were checked here once: a process line
        // the playbook's validation refuses was granted from an environment
        // file, read by the capability in a way no check had agreed to.
        let p = write(
            "bad-kinds",
            "grants:\n  x:\n    process: [\"npm ** test\", { run: sh, env: [LD_PRELOAD] }]\n    secrets: [bad-name]\n    kube: [{ namespaces: [\"a b\"], resources: [pods], verbs: [get] }]\n",
        );
        let all = problems(Environment::load(&p).unwrap_err());
        assert_eq!(all.len(), 4, "{all:#?}");
        assert!(
            all[0].starts_with("3:15: `npm ** test` is not a process grant"),
            "{all:#?}"
        );
        assert!(
            all[1].starts_with("3:47: `LD_PRELOAD` cannot be granted"),
            "{all:#?}"
        );
        assert!(
            all[2].starts_with("5:27: `a b` is not a valid entry of `namespaces`"),
            "{all:#?}"
        );
        assert!(
            all[3].starts_with("4:15: `bad-name` is not a secret name"),
            "{all:#?}"
        );
    }
}
