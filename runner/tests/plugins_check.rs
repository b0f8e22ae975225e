//! `runner plugins check` end to end: a plugin that loads passes; every way a
//! file can fail the contract is refused with exit code 2 and a message that
//! says what is wrong and what to do. The malformed components are built here
//! with `wasm-encoder`; the plugins whose `describe` is wrong come from
//! tests/hostile.

use std::path::Path;
use std::process::Command;

use wasm_encoder::{
    Alias, CanonicalFunctionSection, CodeSection, Component, ComponentAliasSection,
    ComponentExportKind, ComponentExportSection, ComponentImportSection, ComponentTypeRef,
    ComponentTypeSection, ExportKind, ExportSection, Function, FunctionSection, InstanceSection,
    InstanceType, Instruction, Module, ModuleArg, ModuleSection, PrimitiveValType, TypeSection,
    ValType,
};

mod common;

struct Checked {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(target: &str) -> Checked {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .args(["plugins", "check", target])
        .output()
        .unwrap();
    Checked {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check_bytes(name: &str, bytes: &[u8]) -> Checked {
    let dir = common::scratch("plugins-check");
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    let checked = check(file.to_str().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    checked
}

/// A component importing one instance per name, each exporting `steal: func()`.
fn component_importing(names: &[&str]) -> Vec<u8> {
    let mut types = ComponentTypeSection::new();
    let mut instance = InstanceType::new();
    instance
        .ty()
        .function()
        .params(Vec::<(&str, PrimitiveValType)>::new())
        .result(None);
    instance.export("steal", ComponentTypeRef::Func(0));
    types.instance(&instance);
    let mut imports = ComponentImportSection::new();
    for name in names {
        imports.import(*name, ComponentTypeRef::Instance(0));
    }
    let mut c = Component::new();
    c.section(&types).section(&imports);
    c.finish()
}

/// A component exporting `describe` and `run` as `func() -> u32`.
fn component_with_wrong_exports() -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut exports = ExportSection::new();
    exports.export("f", ExportKind::Func, 0);
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    body.instruction(&Instruction::I32Const(7));
    body.instruction(&Instruction::End);
    code.function(&body);
    m.section(&types)
        .section(&functions)
        .section(&exports)
        .section(&code);

    let mut c = Component::new();
    c.section(&ModuleSection(&m));
    let mut instances = InstanceSection::new();
    instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    c.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::CoreInstanceExport {
        instance: 0,
        kind: ExportKind::Func,
        name: "f",
    });
    c.section(&aliases);
    let mut types = ComponentTypeSection::new();
    types
        .function()
        .params(Vec::<(&str, PrimitiveValType)>::new())
        .result(Some(PrimitiveValType::U32.into()));
    c.section(&types);
    let mut canon = CanonicalFunctionSection::new();
    canon.lift(0, 0, []);
    c.section(&canon);
    let mut exports = ComponentExportSection::new();
    exports.export("describe", ComponentExportKind::Func, 0, None);
    exports.export("run", ComponentExportKind::Func, 0, None);
    c.section(&exports);
    c.finish()
}

#[test]
fn a_plugin_that_loads_passes_with_its_imports_and_description() {
    let r = check("echo");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("built-in `echo`: WebAssembly component, "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("runner:plugin/log@0.1.0")
                && l.ends_with("contract; always")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("\nexports: describe, run\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\"name\": \"echo\""), "{}", r.stdout);
    assert!(
        r.stdout
            .ends_with("built-in `echo`: ok, the runner can load this plugin\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_file_that_is_not_webassembly_is_refused() {
    let r = check_bytes("notes.wasm", b"#!/bin/sh\necho hi\n");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(
            "notes.wasm: this is not a WebAssembly file: it starts with the text \"#!/bin/s\" instead of `\\0asm`"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .ends_with("notes.wasm: 1 problem; the runner would refuse this plugin\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_core_module_is_refused_with_how_to_make_a_component() {
    let r = check_bytes("module.wasm", &Module::new().finish());
    assert_eq!(r.code, 2);
    assert!(
        r.stdout
            .contains("module.wasm: core WebAssembly module, 8 bytes"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("this is a core WebAssembly module, not a component")
            && r.stderr.contains("wasm-tools component new"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_component_without_the_contract_exports_is_refused() {
    let r = check_bytes("empty.wasm", &Component::new().finish());
    assert_eq!(r.code, 2);
    assert!(r.stdout.contains("\nexports: none\n"), "{}", r.stdout);
    assert!(
        r.stderr.contains(
            "does not export `describe`, `run` of the world `runner:plugin/plugin@0.1.0` (it exports nothing)"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn exports_of_the_wrong_type_are_refused() {
    let r = check_bytes("wrong.wasm", &component_with_wrong_exports());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("\nexports: describe, run\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("its `describe` or `run` does not have the contract's type"),
        "{}",
        r.stderr
    );
}

#[test]
fn every_import_the_runner_cannot_provide_is_flagged() {
    let r = check_bytes(
        "importer.wasm",
        &component_importing(&[
            "acme:evil/steal@1.0.0",
            "wasi:cli/environment@0.2.0",
            "runner:plugin/log@0.2.0",
        ]),
    );
    assert_eq!(r.code, 2);
    let row = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {}", r.stdout))
            .to_owned()
    };
    assert!(row("acme:evil/steal@1.0.0").ends_with("NOT PROVIDED"));
    assert!(row("runner:plugin/log@0.2.0").ends_with("NOT PROVIDED"));
    // A real WASI interface, but without a `steal` function.
    assert!(row("wasi:cli/environment@0.2.0").ends_with("NOT PROVIDED"));
    assert!(
        r.stderr.contains(
            "imports `acme:evil/steal@1.0.0`, which the runner does not provide and no grant can make it provide"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "imports `runner:plugin/log@0.2.0`: the plugin was built against runner:plugin@0.2.0, and this runner speaks runner:plugin@0.1.0"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("imports `wasi:cli/environment@0.2.0` in a form the runner does not provide"),
        "{}",
        r.stderr
    );
    // Three imports and the missing exports.
    assert!(
        r.stderr
            .ends_with("importer.wasm: 4 problems; the runner would refuse this plugin\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_input_schema_that_is_not_json_schema_is_refused() {
    let plugin = common::hostile_plugin("bad_schema");
    let r = check(plugin.to_str().unwrap());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("\nexports: describe, run\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("`describe` returned an input schema that is not a valid JSON Schema"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_unknown_capability_is_refused() {
    let plugin = common::hostile_plugin("unknown_capability");
    let r = check(plugin.to_str().unwrap());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("`describe` names the capability `root`, which does not exist"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_missing_file_is_named() {
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-plugin.wasm");
    let r = check(missing.to_str().unwrap());
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with(&format!("cannot read `{}`: ", missing.display())),
        "{}",
        r.stderr
    );
}
