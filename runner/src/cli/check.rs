//! `runner plugins check`: the report of `host::check` for a person.
//!
//! What the plugin is, its imports (each with what the runner needs to let the
//! plugin use it), its exports and `describe`'s answer go to stdout; the
//! problems go to stderr as `FILE: problem` lines, so a script can tell a
//! refused plugin by the exit code alone.

use std::io::Write;

use super::{EXIT_INVALID, EXIT_OK, print};
use crate::host;
use crate::host::cache::Origin;
use crate::host::check::Report;

pub fn plugins_check(target: &str) -> u8 {
    if target.starts_with(host::oci::SCHEME) {
        return match super::registry::fetch_for_check(target) {
            Ok(wasm) => check_bytes(target.to_owned(), &wasm),
            Err(code) => code,
        };
    }
    let (label, wasm) = match host::builtin(target) {
        Some(b) => match b.wasm {
            Some(w) => (format!("built-in `{target}`"), w.to_vec()),
            None => {
                eprintln!("the built-in plugin `{target}` is not part of this runner build yet");
                return EXIT_INVALID;
            }
        },
        None => match std::fs::read(target) {
            Ok(w) => (target.to_owned(), w),
            Err(e) => {
                eprintln!(
                    "cannot read `{target}`: {e}; give the path of a .wasm component, or a built-in plugin's name (`runner plugins list`)"
                );
                return EXIT_INVALID;
            }
        },
    };
    check_bytes(label, &wasm)
}

fn check_bytes(label: String, wasm: &[u8]) -> u8 {
    let runtime = match super::exec::service(None).runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_INVALID;
        }
    };
    let tokio = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return EXIT_INVALID;
        }
    };
    let report = tokio.block_on(host::check::check(&runtime, wasm));
    print(&render(&label, &report));
    let mut stderr = std::io::stderr().lock();
    for problem in &report.problems {
        let _ = writeln!(stderr, "{label}: {problem}");
    }
    if report.ok() {
        EXIT_OK
    } else {
        let n = report.problems.len();
        let _ = writeln!(
            stderr,
            "{label}: {n} problem{}; the runner would refuse this plugin",
            if n == 1 { "" } else { "s" }
        );
        EXIT_INVALID
    }
}

/// The report, except its problems.
fn render(label: &str, r: &Report) -> String {
    use host::check::FileKind;
    let mut out = String::new();
    let what = match r.kind {
        FileKind::Component => "WebAssembly component",
        FileKind::CoreModule => "core WebAssembly module",
        FileKind::OtherWasm => "WebAssembly of an unknown kind",
        FileKind::NotWasm => "not WebAssembly",
    };
    out.push_str(&format!("{label}: {what}, {}", size(r.bytes)));
    if let Some(sha) = &r.sha256 {
        out.push_str(&format!(", sha256 {sha}"));
    }
    out.push('\n');
    if let Some((time, origin)) = r.compile {
        let how = match origin {
            Origin::Compiled => "compiled",
            Origin::Cached => "loaded from the compile cache",
        };
        out.push_str(&format!("{how} in {:.2} s\n", time.as_secs_f64()));
    }
    if r.kind != FileKind::Component || r.sha256.is_none() {
        return out;
    }
    out.push_str(&format!("\nimports ({}):\n", r.imports.len()));
    let width = r.imports.iter().map(|i| i.name.len()).max().unwrap_or(0);
    for i in &r.imports {
        out.push_str(&format!(
            "  {:<width$}  {:<8}  {}\n",
            i.name,
            i.kind,
            i.provision()
        ));
    }
    out.push_str(&format!(
        "\nexports: {}\n",
        if r.exports.is_empty() {
            "none".to_owned()
        } else {
            r.exports.join(", ")
        }
    ));
    if let Some(d) = &r.description {
        out.push_str("\ndescribe:\n");
        out.push_str(&serde_json::to_string_pretty(d).unwrap_or_default());
        out.push('\n');
    }
    for note in &r.notes {
        out.push_str(&format!("\nnote: {note}\n"));
    }
    if r.ok() {
        out.push_str(&format!("\n{label}: ok, the runner can load this plugin\n"));
    }
    out
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} bytes"),
    }
}
