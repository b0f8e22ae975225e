//! From a playbook's `plugins:` to loaded plugins with their grants: built-in
//! names come from the runner binary, `.wasm` paths from disk (checked against
//! their pin), and each plugin's declared capabilities are checked against its
//! grants before any step runs.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::cache::hex;
use super::runtime::{LoadedPlugin, Runtime};
use super::state::Granted;
use crate::playbook::Validated;
use crate::playbook::model::{Grants, PluginDecl};

/// Plugins ready to run, by local name, with what each may do.
pub struct Resolved {
    pub plugins: HashMap<String, LoadedPlugin>,
    pub grants: HashMap<String, Granted>,
    pub memory: HashMap<String, usize>,
}

/// Where secret values come from: an environment variable of the same name.
fn secret_value(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The capability kinds a grant block provides.
pub fn granted_kinds(g: &Grants) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    for (kind, present) in [
        ("http", !g.http.is_empty()),
        ("fs", !g.fs.is_empty()),
        ("process", !g.process.is_empty()),
        ("kube", !g.kube.is_empty()),
        ("secrets", !g.secrets.is_empty()),
    ] {
        if present {
            kinds.push(kind);
        }
    }
    kinds
}

/// The component bytes for a declaration.
pub fn wasm_for(validated: &Validated, decl: &PluginDecl) -> Result<Vec<u8>, String> {
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

/// Loads every declared plugin; all problems are reported together.
pub async fn resolve(runtime: &Runtime, validated: &Validated) -> Result<Resolved, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Resolved {
        plugins: HashMap::new(),
        grants: HashMap::new(),
        memory: HashMap::new(),
    };
    for (name, decl) in &validated.playbook.plugins {
        let wasm = match wasm_for(validated, decl) {
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
        let kinds = granted_kinds(&decl.grants);
        for needed in &loaded.description.capabilities {
            if needed != "log" && !kinds.contains(&needed.as_str()) {
                problems.push(format!(
                    "plugin `{name}` ({}) needs the `{needed}` capability; grant it under `plugins.{name}.grants.{needed}`",
                    decl.uses
                ));
            }
        }
        let mut secrets = std::collections::BTreeMap::new();
        for s in &decl.grants.secrets {
            match secret_value(s) {
                Some(v) => {
                    secrets.insert(s.clone(), v);
                }
                None => problems.push(format!(
                    "secret `{s}` granted to plugin `{name}` has no value; set the environment variable `{s}`"
                )),
            }
        }
        out.grants.insert(
            name.to_string(),
            Granted {
                plugin: name.to_string(),
                secrets,
                process: crate::caps::process::ProcessGrant {
                    programs: decl.grants.process.clone(),
                },
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
