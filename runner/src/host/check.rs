//! `runner plugins check`: whether a file is a plugin this runner can load, and
//! if not, every reason why, each with what to do.
//!
//! The authority is the same code that loads a plugin for a run: the file is
//! compiled by the runtime's engine, linked against the runtime's linker (WASI
//! 0.2, `wasi:http`, the `runner:plugin@0.1.0` interfaces) and described
//! through [`Runtime::load`]. What this module adds is the diagnosis: wasmtime
//! stops at the first import it cannot satisfy, so each one it names is
//! replaced by a trapping stub and the link tried again, until the component
//! links; the list of stubbed imports is the list of imports that no grant
//! could ever satisfy. Nothing of the plugin runs except `describe`, and only
//! when the component links as it is.

use std::time::{Duration, Instant};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, LinkerInstance, ResourceType};

use super::cache::Origin;
use super::runtime::{Data, Description, Runtime};

/// The contract's package, as components name it in their imports.
pub const CONTRACT: &str = "runner:plugin";
/// The contract's version this runner speaks.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// What the check found.
#[derive(Debug)]
pub struct Report {
    pub kind: FileKind,
    pub bytes: usize,
    pub sha256: Option<String>,
    /// How long the compile (or the load from the cache) took, and which.
    pub compile: Option<(Duration, Origin)>,
    pub imports: Vec<Import>,
    /// The component's exports, by name.
    pub exports: Vec<String>,
    /// `describe`'s answer, when the plugin could be described.
    pub description: Option<Description>,
    /// What prevents the runner from loading the plugin; empty when it loads.
    pub problems: Vec<String>,
    /// Worth knowing, not a reason to refuse the plugin.
    pub notes: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What the file is, from its first eight bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Component,
    CoreModule,
    /// `\0asm` with a version or layer this runner does not know.
    OtherWasm,
    NotWasm,
}

impl FileKind {
    pub fn of(bytes: &[u8]) -> FileKind {
        match bytes {
            [0, b'a', b's', b'm', 0x0d, 0, 1, 0, ..] => FileKind::Component,
            [0, b'a', b's', b'm', 1, 0, 0, 0, ..] => FileKind::CoreModule,
            [0, b'a', b's', b'm', ..] => FileKind::OtherWasm,
            _ => FileKind::NotWasm,
        }
    }
}

/// One import of the component and whether the runner provides it.
#[derive(Debug, Clone)]
pub struct Import {
    pub name: String,
    /// `instance`, `func`, `resource`, `type`, ...
    pub kind: &'static str,
    /// `None`: the runner provides it; else why it cannot.
    pub missing: Option<String>,
}

impl Import {
    /// What the runner needs to let the plugin use this import.
    pub fn provision(&self) -> &'static str {
        let name = self.name.as_str();
        let interface = name.split('@').next().unwrap_or(name);
        match interface {
            _ if self.missing.is_some() => "NOT PROVIDED",
            "runner:plugin/secrets" => "contract; values need a `secrets` grant",
            "runner:plugin/process" => "contract; programs need a `process` grant",
            "runner:plugin/kube" => "contract; requests need a `kube` grant",
            _ if interface.starts_with("runner:plugin/") => "contract; always",
            _ if interface.starts_with("wasi:http/") => "provided; requests need an `http` grant",
            _ if interface.starts_with("wasi:sockets/") => {
                "provided; connections need a `tcp` grant"
            }
            _ if interface.starts_with("wasi:filesystem/") => {
                "provided; the step's working directory, other folders need an `fs` grant"
            }
            _ => "provided; always",
        }
    }
}

/// Checks `wasm` with `runtime`: the kind of file, then its imports and
/// exports against the contract, then `describe` and its input schema.
pub async fn check(runtime: &Runtime, wasm: &[u8]) -> Report {
    let mut report = Report {
        kind: FileKind::of(wasm),
        bytes: wasm.len(),
        sha256: None,
        compile: None,
        imports: Vec::new(),
        exports: Vec::new(),
        description: None,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    match report.kind {
        FileKind::Component => {}
        FileKind::CoreModule => {
            report.problems.push(
                "this is a core WebAssembly module, not a component. The runner runs components of the world `plugin` in sdk/wit: build Rust for `wasm32-wasip2`; for a module from another toolchain (C, wasm32-wasip1), embed the contract and wrap it with `wasm-tools component embed` and `wasm-tools component new` (docs/plugins.md)".into(),
            );
            return report;
        }
        FileKind::OtherWasm => {
            report.problems.push(format!(
                "this is WebAssembly of a version or layer the runner does not know (header {}); the runner runs components (layer 1, version 0x0d) built against sdk/wit",
                hex(&wasm[4..wasm.len().min(8)])
            ));
            return report;
        }
        FileKind::NotWasm => {
            report.problems.push(format!(
                "this is not a WebAssembly file: it starts with {} instead of `\\0asm`; give the .wasm component your toolchain wrote",
                first_bytes(wasm)
            ));
            return report;
        }
    }
    let start = Instant::now();
    let component = match runtime.compile(wasm) {
        Ok((component, sha256, origin)) => {
            report.sha256 = Some(sha256);
            report.compile = Some((start.elapsed(), origin));
            component
        }
        Err(e) => {
            report.problems.push(format!(
                "this is not a valid WebAssembly component: {}",
                one_line(&e)
            ));
            return report;
        }
    };
    let engine = runtime.engine();
    let ty = component.component_type();
    report.imports = ty
        .imports(engine)
        .map(|(name, item)| Import {
            name: name.to_owned(),
            kind: kind(&item.ty),
            missing: None,
        })
        .collect();
    report.exports = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();

    let linked = link(runtime.linker(), &component, &mut report);
    let exports_ok = check_exports(&component, &linked, &mut report);
    if report.ok() && exports_ok {
        describe(runtime, wasm, &mut report).await;
    } else if exports_ok {
        report
            .notes
            .push("`describe` was not called: the plugin cannot be linked as it is".into());
    }
    report
}

/// A linker like `host`'s with every import `host` cannot satisfy replaced by a
/// trapping stub, the imports marked as missing in `report` with the reason.
/// `None` when a problem cannot be stubbed (it is in `report`).
fn link(host: &Linker<Data>, component: &Component, report: &mut Report) -> Option<Linker<Data>> {
    let mut linker = host.clone();
    linker.allow_shadowing(true);
    let engine = host.engine();
    // Each round stubs one more import, so this ends; the bound guards a
    // wasmtime that names an import it then does not accept as stubbed.
    for _ in 0..=report.imports.len() {
        let e = match linker.instantiate_pre(component) {
            Ok(_) => return Some(linker),
            Err(e) => e,
        };
        let Some(name) = failing_import(&e) else {
            report.problems.push(format!(
                "the runner cannot link this component: {}",
                one_line(&e)
            ));
            return None;
        };
        let why = missing_reason(&name, &e);
        let Some(import) = report.imports.iter_mut().find(|i| i.name == name) else {
            report.problems.push(why);
            return None;
        };
        if import.missing.is_some() {
            report.problems.push(why);
            return None;
        }
        import.missing = Some(why.clone());
        report.problems.push(why);
        let stubbed = component
            .component_type()
            .get_import(engine, &name)
            .ok_or_else(|| wasmtime::format_err!("no import `{name}`"))
            .and_then(|item| stub(&mut linker.root(), &name, &item.ty, engine));
        if stubbed.is_err() {
            return None;
        }
    }
    None
}

/// The import named in wasmtime's link error: "component imports instance
/// `NAME`, but a matching implementation was not found in the linker".
fn failing_import(e: &wasmtime::Error) -> Option<String> {
    let text = e.to_string();
    let rest = text.strip_prefix("component imports ")?;
    let start = rest.find('`')? + 1;
    let end = start + rest[start..].find('`')?;
    Some(rest[start..end].to_owned())
}

/// Why the runner cannot provide import `name`, and what to do about it.
fn missing_reason(name: &str, e: &wasmtime::Error) -> String {
    let (package, version) = match name.split_once('@') {
        Some((path, version)) => (path.split('/').next().unwrap_or(path), Some(version)),
        None => (name.split('/').next().unwrap_or(name), None),
    };
    // The first link of the chain is wasmtime's "component imports ..."; the rest
    // says what does not match.
    let cause = e
        .chain()
        .skip(1)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    if package == CONTRACT && version != Some(CONTRACT_VERSION) {
        return format!(
            "imports `{name}`: the plugin was built against {CONTRACT}@{}, and this runner speaks {CONTRACT}@{CONTRACT_VERSION}; rebuild it against this runner's sdk/wit",
            version.unwrap_or("(no version)")
        );
    }
    if package == CONTRACT
        || (package.starts_with("wasi:") && version.is_some_and(|v| v.starts_with("0.2.")))
    {
        // A name the runner knows, with a function or type it does not have.
        return format!(
            "imports `{name}` in a form the runner does not provide ({cause}); rebuild against sdk/wit and WASI 0.2.12 (sdk/wasi)"
        );
    }
    format!(
        "imports `{name}`, which the runner does not provide and no grant can make it provide (plugins get WASI 0.2, `wasi:http/outgoing-handler` and the interfaces of {CONTRACT}@{CONTRACT_VERSION}); build against the world `plugin` in sdk/wit without it"
    )
}

/// Defines `name` in `at` as a stub shaped like `item`: functions that trap,
/// resources without behaviour. Only used to type-check, never run.
fn stub(
    at: &mut LinkerInstance<'_, Data>,
    name: &str,
    item: &ComponentItem,
    engine: &wasmtime::Engine,
) -> wasmtime::Result<()> {
    struct Stub;
    match item {
        ComponentItem::ComponentFunc(_) => {
            let name_owned = name.to_owned();
            at.func_new(name, move |_, _, _, _| {
                wasmtime::bail!("`{name_owned}` is not provided by the runner")
            })
        }
        ComponentItem::ComponentInstance(instance) => {
            let mut inner = at.instance(name)?;
            for (export, item) in instance.exports(engine) {
                stub(&mut inner, export, &item.ty, engine)?;
            }
            Ok(())
        }
        ComponentItem::Resource(_) => {
            at.resource(name, ResourceType::host::<Stub>(), |_, _| Ok(()))
        }
        ComponentItem::Type(_) => Ok(()),
        ComponentItem::CoreFunc(_) | ComponentItem::Module(_) | ComponentItem::Component(_) => {
            wasmtime::bail!("cannot stand in for a {} import", kind(item))
        }
    }
}

/// Whether the component exports `describe` and `run` as the contract types
/// them; problems go to `report`.
fn check_exports(
    component: &Component,
    linked: &Option<Linker<Data>>,
    report: &mut Report,
) -> bool {
    let absent: Vec<&str> = ["describe", "run"]
        .into_iter()
        .filter(|f| !report.exports.iter().any(|e| e == f))
        .collect();
    if !absent.is_empty() {
        let has = if report.exports.is_empty() {
            "it exports nothing".to_owned()
        } else {
            format!("it exports {}", quoted(&report.exports))
        };
        report.problems.push(format!(
            "does not export {} of the world `{CONTRACT}/plugin@{CONTRACT_VERSION}` ({has}); a plugin exports `describe: func() -> plugin-info` and `run: func(input: string) -> result<step-output, step-error>`: build against the world `plugin` in sdk/wit",
            quoted(&absent)
        ));
        return false;
    }
    // The signatures: what the runner's own bindings check when it loads a plugin.
    let Some(linker) = linked else {
        return true;
    };
    let checked = linker
        .instantiate_pre(component)
        .and_then(super::bindings::PluginPre::new);
    if let Err(e) = checked {
        report.problems.push(format!(
            "its `describe` or `run` does not have the contract's type ({}); build against the world `plugin` in sdk/wit ({CONTRACT}@{CONTRACT_VERSION})",
            one_line(&e)
        ));
        return false;
    }
    true
}

/// Calls `describe` the way a run would, and checks what it returns.
async fn describe(runtime: &Runtime, wasm: &[u8], report: &mut Report) {
    match runtime.load(wasm).await {
        Ok(plugin) => {
            let d = plugin.description;
            // Toolchains import what their runtime might use (ComponentizeJS
            // imports `wasi:http` for `fetch` whether the code fetches or not).
            let imports_http = report
                .imports
                .iter()
                .any(|i| i.name.starts_with("wasi:http/"));
            let declares_http = d
                .capabilities
                .iter()
                .chain(&d.optional)
                .any(|c| c == "http");
            if imports_http && !declares_http {
                report.notes.push("it imports `wasi:http` but does not declare `http`: the runner refuses its requests (declare `http`, or build without HTTP, e.g. ComponentizeJS's `-d http fetch-event`)".into());
            }
            report.description = Some(d);
        }
        Err(e) => report.problems.push(e.to_string()),
    }
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

fn quoted<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An error and its causes on one line.
fn one_line(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| c.to_string().replace('\n', " "))
        .collect::<Vec<_>>()
        .join(": ")
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first bytes of a file that is not WebAssembly, as text when they are.
fn first_bytes(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(8)];
    if head.is_empty() {
        return "nothing (the file is empty)".into();
    }
    match std::str::from_utf8(head) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
            format!("the text {text:?}")
        }
        _ => format!("the bytes {}", hex(head)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_tells_components_from_modules_and_other_files() {
        assert_eq!(FileKind::of(b"\0asm\x0d\0\x01\0rest"), FileKind::Component);
        assert_eq!(FileKind::of(b"\0asm\x01\0\0\0"), FileKind::CoreModule);
        assert_eq!(FileKind::of(b"\0asm\x0e\0\x01\0"), FileKind::OtherWasm);
        assert_eq!(FileKind::of(b"#!/bin/sh"), FileKind::NotWasm);
        assert_eq!(FileKind::of(b""), FileKind::NotWasm);
    }

    #[test]
    fn the_failing_import_is_read_from_the_link_error() {
        let e = wasmtime::format_err!("function implementation is missing").context(
            "component imports instance `acme:evil/steal@1.0.0`, but a matching implementation was not found in the linker",
        );
        assert_eq!(failing_import(&e).as_deref(), Some("acme:evil/steal@1.0.0"));
        assert_eq!(failing_import(&wasmtime::format_err!("other")), None);
    }

    #[test]
    fn a_contract_of_another_version_is_named_as_such() {
        let e = wasmtime::format_err!("x");
        let why = missing_reason("runner:plugin/log@0.2.0", &e);
        assert!(why.contains("built against runner:plugin@0.2.0"), "{why}");
        let why = missing_reason("acme:evil/steal@1.0.0", &e);
        assert!(why.contains("no grant can make it provide"), "{why}");
    }

    #[test]
    fn what_is_not_wasm_is_shown_as_text_or_bytes() {
        assert_eq!(first_bytes(b"hello world"), "the text \"hello wo\"");
        assert_eq!(first_bytes(b"ok\n"), "the text \"ok\\n\"");
        assert_eq!(
            first_bytes(b"\x7fELF\x02\x01\x01\0"),
            "the bytes 7f 45 4c 46 02 01 01 00"
        );
        assert_eq!(first_bytes(b""), "nothing (the file is empty)");
    }
}
