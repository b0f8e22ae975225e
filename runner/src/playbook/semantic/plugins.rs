//! Plugins and their grants: each `uses:` names a built-in plugin, a `.wasm`
//! file matching its pin, or an `oci://` reference pinned by digest; memory
//! caps are in range; grants are well formed (by their capabilities' own
//! parsers, see `caps::capability`).

use sha2::{Digest, Sha256};

use super::Checker;
use crate::playbook::model::Grants;
use crate::playbook::suggest::did_you_mean;
use crate::playbook::yaml::{Path, Target};
use crate::{builtins, oci_ref};

impl Checker<'_> {
    pub(super) fn plugins(&mut self) {
        for (name, decl) in &self.pb.plugins {
            let path = Path::root().key("plugins").key(name.as_str());
            self.ident_key(name.as_str(), &path, "plugin");
            let uses = decl.uses.as_str();
            let is_path = uses.ends_with(".wasm") || uses.contains('/');
            if uses.starts_with(oci_ref::SCHEME) {
                self.plugin_oci(uses, decl.sha256.is_some(), &path);
            } else if is_path {
                self.plugin_file(uses, decl.sha256.as_deref(), &path);
            } else {
                if builtins::builtin(uses).is_none() {
                    let hint = did_you_mean(uses, builtins::BUILTINS.iter().map(|b| b.name))
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("built-in plugins are: {}; a plugin file is given by a path ending in `.wasm`",
                            builtins::BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")));
                    self.report(
                        &path.key("uses"),
                        Target::Value,
                        format!("unknown plugin `{uses}`; {hint}"),
                    );
                }
                if decl.sha256.is_some() {
                    self.report(&path.key("sha256"), Target::Key,
                        "`sha256` pins a `.wasm` file; built-in plugins are pinned by the runner's own version, so remove it");
                }
            }
            if let Some(mem) = &decl.memory
                && mem
                    .bytes()
                    .is_none_or(|b| !((1 << 20)..=(16 << 30)).contains(&b))
            {
                self.report(
                    &path.key("memory"),
                    Target::Value,
                    format!("memory `{mem}` is outside 1MiB..16GiB"),
                );
            }
            self.grants(&decl.grants, &path.key("grants"));
        }
    }

    /// An `oci://` reference: well formed and pinned by its manifest digest
    /// (nothing is fetched here; `runner validate` fetches when it loads the
    /// plugins).
    fn plugin_oci(&mut self, uses: &str, has_sha256: bool, path: &Path) {
        match oci_ref::OciRef::parse(uses) {
            Err(e) => self.report(&path.key("uses"), Target::Value, e),
            Ok(r) if r.digest.is_none() => {
                let tag = if r.tag.is_some() {
                    String::new()
                } else {
                    ":TAG".to_owned()
                };
                self.report(
                    &path.key("uses"),
                    Target::Value,
                    format!(
                        "`{uses}` is not pinned by digest: a tag can be moved to other content, so a playbook names the manifest's digest, `{uses}{tag}@sha256:…`; `runner plugins pull {uses}` prints it"
                    ),
                );
            }
            Ok(_) => {}
        }
        if has_sha256 {
            self.report(&path.key("sha256"), Target::Key,
                "`sha256` pins a `.wasm` file; an `oci://` plugin is pinned by the `@sha256:` digest in `uses:`, so remove it");
        }
    }

    fn plugin_file(&mut self, uses: &str, pin: Option<&str>, path: &Path) {
        if !uses.ends_with(".wasm") {
            self.report(&path.key("uses"), Target::Value, format!(
                "`{uses}` looks like a path but does not end in `.wasm`; plugins are WebAssembly components"));
            return;
        }
        let file = self.source.dir.join(uses);
        match std::fs::read(&file) {
            Err(e) => self.report(
                &path.key("uses"),
                Target::Value,
                format!(
                    "cannot read plugin `{}`: {e}; paths are relative to the playbook's folder",
                    file.display()
                ),
            ),
            Ok(bytes) => {
                if let Some(pin) = pin {
                    let actual = hex(&Sha256::digest(&bytes));
                    if actual != pin {
                        self.report(&path.key("sha256"), Target::Value, format!(
                            "`{uses}` does not match its pin: its sha256 is {actual}; if the new file is trusted, update the pin"));
                    }
                }
            }
        }
    }

    /// Each entry was parsed by its capability when the playbook was read;
    /// here its problems are reported where they are.
    fn grants(&mut self, g: &Grants, path: &Path) {
        let problems = crate::playbook::grant_problems(self.tree, path, g);
        self.problems.extend(problems);
    }
}

/// Lower-case hex of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
