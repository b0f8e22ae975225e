//! From a playbook's `plugins:` to loaded plugins with their grants: built-in
//! names come from the runner binary, `.wasm` paths from disk (checked against
//! their pin), `oci://…@sha256:…` references from the OCI store or their
//! registry (checked against their digest, see `host::oci`), and each plugin's
//! declared capabilities are checked against its grants before any step runs.
//!
//! Here each capability is configured, once per playbook, from the grant entries
//! parsed when the playbook was read (`caps::capability`); the kinds a plugin is
//! granted come from a loop over them. [`Granted`] has a field per capability,
//! so building it names each one (through the same trait).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::cache::hex;
use super::runtime::{LoadedPlugin, Runtime};
use super::state::Granted;
use crate::caps::fs::Fs;
use crate::caps::http::Http;
use crate::caps::kube::Kube;
use crate::caps::process::Process;
use crate::caps::secrets::Secrets;
use crate::caps::tcp::Tcp;
use crate::caps::{Capability, ConfigureContext};
use crate::playbook::Validated;
use crate::playbook::model::{Grants, PluginDecl};

/// Plugins ready to run, by local name, with what each may do.
pub struct Resolved {
    pub plugins: HashMap<String, LoadedPlugin>,
    pub grants: HashMap<String, Granted>,
    pub memory: HashMap<String, usize>,
}

/// The capability kinds a grant block provides.
pub fn granted_kinds(g: &Grants) -> Vec<&'static str> {
    g.each()
        .into_iter()
        .filter(|entries| !entries.is_empty())
        .map(|entries| entries.kind())
        .collect()
}

/// The component bytes for a declaration. An `oci://` reference is taken
/// from the OCI store when it is there, else from its registry.
pub async fn wasm_for(
    runtime: &Runtime,
    validated: &Validated,
    decl: &PluginDecl,
) -> Result<Vec<u8>, String> {
    if decl.uses.starts_with(super::oci::SCHEME) {
        let reference = super::oci::OciRef::parse(&decl.uses)?;
        // Pulled components live beside the compiled ones.
        let store = runtime
            .cache_dir()
            .map(super::oci::store::BlobStore::in_cache);
        return super::oci::fetch(&reference, store.as_ref())
            .await
            .map(|f| f.wasm)
            .map_err(|e| e.to_string());
    }
    if let Some(b) = super::builtin(&decl.uses) {
        return b.wasm.map(<[u8]>::to_vec).ok_or_else(|| {
            format!(
                "the built-in plugin `{}` is not part of this runner build yet",
                decl.uses
            )
        });
    }
    let path = validated.source.dir.join(&decl.uses);
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if let Some(pin) = &decl.sha256 {
        let actual = hex(&Sha256::digest(&bytes));
        if &actual != pin {
            return Err(format!(
                "`{}` does not match its sha256 pin (it is {actual})",
                decl.uses
            ));
        }
    }
    Ok(bytes)
}

/// Loads every declared plugin; all problems are reported together. `cluster`
/// is the run's Kubernetes connection, handed to plugins granted `kube`.
pub async fn resolve(
    runtime: &Runtime,
    validated: &Validated,
    secrets: &crate::caps::secrets::SecretSource,
    cluster: &std::sync::Arc<crate::caps::kube::Cluster>,
) -> Result<Resolved, Vec<String>> {
    let mut problems = Vec::new();
    let mut credentials = crate::caps::kube::credential_paths();
    if let Some(file) = cluster.kubeconfig() {
        credentials.push(std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()));
    }
    let registry_credentials = super::oci::credentials::config_path()
        .filter(|p| p.exists())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let mut out = Resolved {
        plugins: HashMap::new(),
        grants: HashMap::new(),
        memory: HashMap::new(),
    };
    for (name, decl) in &validated.playbook.plugins {
        let wasm = match wasm_for(runtime, validated, decl).await {
            Ok(w) => w,
            Err(e) => {
                problems.push(format!("plugin `{name}`: {e}"));
                continue;
            }
        };
        let loaded = match runtime.load(&wasm).await {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("plugin `{name}` ({}) {e}", decl.uses));
                continue;
            }
        };
        // Configure: each capability's grant from the entries parsed at load.
        let context = ConfigureContext {
            playbook_dir: &validated.source.dir,
        };
        let g = &decl.grants;
        let fs = Fs::configure(&g.fs, &context);
        for folder in &fs.paths {
            if let Err(e) =
                crate::caps::kube::check_fs_grant(name.as_str(), &folder.host, &credentials)
            {
                problems.push(e);
            }
            if let Some(config) = &registry_credentials
                && let Err(e) =
                    super::oci::credentials::check_fs_grant(name.as_str(), &folder.host, config)
            {
                problems.push(e);
            }
        }
        let kinds = granted_kinds(&decl.grants);
        for needed in &loaded.description.capabilities {
            if needed != "log" && !kinds.contains(&needed.as_str()) {
                let where_ = if NETWORK.contains(&needed.as_str()) {
                    format!(
                        "the environment file (`grants: {{ {name}: {{ {needed}: [...] }} }}`) or the playbook"
                    )
                } else {
                    "the playbook".to_owned()
                };
                problems.push(format!(
                    "plugin `{name}` ({}) needs the `{needed}` capability and nothing grants it; grant it in {where_} under `plugins.{name}.grants.{needed}`",
                    decl.uses
                ));
            }
        }
        let mut values = std::collections::BTreeMap::new();
        for s in &Secrets::configure(&g.secrets, &context) {
            match secrets.get(s) {
                Some(crate::caps::secrets::Entry::Value(v)) => {
                    values.insert(s.clone(), v);
                }
                // Read before the first step: a Secret the runner may not
                // read stops the run before anything changes.
                Some(crate::caps::secrets::Entry::Kube(r)) => match r.read(cluster).await {
                    Ok(v) => {
                        values.insert(s.clone(), v);
                    }
                    Err(e) => problems.push(format!(
                        "secret `{s}` granted to plugin `{name}`: {e}"
                    )),
                },
                None => problems.push(format!(
                    "secret `{s}` granted to plugin `{name}` has no value; put it in the secrets file (--secrets) or set the environment variable `{s}`"
                )),
            }
        }
        out.grants.insert(
            name.to_string(),
            Granted {
                plugin: name.to_string(),
                secrets: values,
                process: Process::configure(&g.process, &context),
                fs,
                http: Http::configure(&g.http, &context),
                tcp: Tcp::configure(&g.tcp, &context),
                kube: Kube::configure(&g.kube, &context),
                cluster: (!g.kube.is_empty()).then(|| cluster.clone()),
                ..Granted::default()
            },
        );
        out.memory.insert(
            name.to_string(),
            decl.memory
                .as_ref()
                .and_then(|m| m.bytes())
                .map_or(super::runtime::DEFAULT_MEMORY, |b| b as usize),
        );
        out.plugins.insert(name.to_string(), loaded);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Checks a validated playbook against its plugins: each plugin loads and
/// describes itself, each step's `with:` satisfies the plugin's input schema, and
/// each plugin's declared capabilities are granted. Built-in plugins that are not
/// in this build are skipped (the playbook check already knows their names).
///
/// A `with:` value that is still a `${{ }}` template is only known at run time, so
/// schema errors at or below such a value are not reported here.
/// Capabilities whose grants name hosts. Hosts differ between the sandbox,
/// staging and production, so a playbook may leave them to the environment
/// file: `runner validate` notes it, and `runner exec` refuses to start when
/// neither grants them.
const NETWORK: &[&str] = &["http", "tcp"];

pub async fn check(runtime: &Runtime, validated: &mut Validated) -> Vec<crate::playbook::Problem> {
    use crate::playbook::Problem;
    use crate::playbook::yaml::{Path, Target};
    let tree = &validated.tree;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut loaded = HashMap::new();
    for (name, decl) in &validated.playbook.plugins {
        let at = Path::root().key("plugins").key(name.as_str());
        if super::builtin(&decl.uses).is_some_and(|b| b.wasm.is_none()) {
            continue;
        }
        let wasm = match wasm_for(runtime, validated, decl).await {
            Ok(w) => w,
            Err(e) => {
                problems.push(Problem::at(tree, &at.key("uses"), Target::Value, e));
                continue;
            }
        };
        match runtime.load(&wasm).await {
            Err(e) => problems.push(Problem::at(
                tree,
                &at.key("uses"),
                Target::Value,
                format!("plugin {e}"),
            )),
            Ok(p) => {
                let kinds = granted_kinds(&decl.grants);
                for needed in &p.description.capabilities {
                    if NETWORK.contains(&needed.as_str()) && !kinds.contains(&needed.as_str()) {
                        notes.push(Problem::at(
                            tree,
                            &at,
                            Target::Key,
                            format!(
                                "plugin `{name}` ({}) needs `{needed}` and the playbook grants no host: the environment file must (`grants: {{ {name}: {{ {needed}: [...] }} }}`), or `runner exec` refuses to start",
                                decl.uses
                            ),
                        ));
                    } else if needed != "log" && !kinds.contains(&needed.as_str()) {
                        problems.push(Problem::at(
                            tree,
                            &at,
                            Target::Key,
                            format!(
                                "plugin `{name}` ({}) needs the `{needed}` capability; grant it under `plugins.{name}.grants.{needed}`",
                                decl.uses
                            ),
                        ));
                    }
                }
                loaded.insert(name.to_string(), p);
            }
        }
    }
    problems.extend(with_problems(validated, &loaded));
    problems.sort();
    problems.dedup();
    notes.extend(super::sinks::notes(validated, &loaded));
    notes.sort();
    validated.notes.extend(notes);
    problems
}

/// Each step's `with:` (handlers' too) against the input schema of its plugin,
/// among `loaded`; a value that is still a `${{ }}` template is checked when the
/// step runs. Used by `runner validate` (through [`check`]) and by `runner exec`
/// before the first step, so exit 2 means that nothing ran.
pub fn with_problems(
    validated: &Validated,
    loaded: &HashMap<String, LoadedPlugin>,
) -> Vec<crate::playbook::Problem> {
    use crate::playbook::Problem;
    use crate::playbook::yaml::Path;
    let tree = &validated.tree;
    let mut problems = Vec::new();
    let mut each = |step: &crate::playbook::model::Step, path: Path| {
        let Some(plugin) = step.uses.as_ref().and_then(|u| loaded.get(u.as_str())) else {
            return;
        };
        let with = serde_json::Value::Object(
            step.with
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        for (rel, target, message) in plugin.input_problems(&with) {
            if templated(&with, &rel.to_string()) {
                continue;
            }
            let mut at = path.key("with");
            for seg in rel.segments() {
                at = match seg {
                    crate::playbook::yaml::Seg::Key(k) => at.key(&k),
                    crate::playbook::yaml::Seg::Index(i) => at.index(i),
                };
            }
            problems.push(Problem::at(
                tree,
                &at,
                target,
                format!(
                    "{message} (input schema of plugin `{}`)",
                    plugin.description.name
                ),
            ));
        }
    };
    each_step(validated, &mut each);
    problems.sort();
    problems.dedup();
    problems
}

/// Calls `each` with every step of the playbook, handlers' too, and its path:
/// [`Validated::each_step`], under the name `cli` calls it by.
pub fn each_step(
    validated: &Validated,
    each: impl FnMut(&crate::playbook::model::Step, crate::playbook::yaml::Path),
) {
    validated.each_step(each);
}

/// Whether the value at JSON `pointer` in `v`, or one of its ancestors, is a string
/// holding `${{`.
fn templated(v: &serde_json::Value, pointer: &str) -> bool {
    let mut at = v;
    if at.as_str().is_some_and(|s| s.contains("${{")) {
        return true;
    }
    for seg in pointer.split('/').skip(1) {
        let next = match at {
            serde_json::Value::Object(m) => m.get(&seg.replace("~1", "/").replace("~0", "~")),
            serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return false,
        }
        if at.as_str().is_some_and(|s| s.contains("${{")) {
            return true;
        }
    }
    false
}
