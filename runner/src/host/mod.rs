//! The plugin host.
//!
//! The wasmtime host (engine, component cache, capabilities) is the next slice of
//! work; what exists now is the catalogue of built-in plugins, so that validation can
//! reject a `uses:` that names no plugin before anything runs.

/// A plugin that ships inside the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    pub summary: &'static str,
}

/// The built-in plugins, by the name a playbook's `uses:` gives them.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "exec",
        summary: "run an allowlisted program (tests, builds, audits)",
    },
    Builtin {
        name: "fs",
        summary: "write and copy artifact files in granted folders",
    },
    Builtin {
        name: "git",
        summary: "branch, commit, tag, push, merge with the real git",
    },
    Builtin {
        name: "http-check",
        summary: "health and smoke checks with assertions",
    },
    Builtin {
        name: "kubectl",
        summary: "set image, rollout status / undo, scale, canary weights",
    },
    Builtin {
        name: "load-test",
        summary: "HTTP load with latency percentiles and thresholds",
    },
    Builtin {
        name: "notify",
        summary: "Slack, webhook and e-mail notifications",
    },
    Builtin {
        name: "prometheus",
        summary: "PromQL queries for metric gates",
    },
    Builtin {
        name: "report",
        summary: "render markdown reports from templates and the run journal",
    },
];

/// The built-in plugin called `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}
