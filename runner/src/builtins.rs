//! The plugins that ship inside the runner: their names, what each does, and
//! the components themselves, embedded at build time (`runner/build.rs` builds
//! `plugins/` and leaves the `.wasm` files in `OUT_DIR`).
//!
//! Why here and not in `host`, which runs them: the playbook's checks must know
//! which names are built in (`uses: echo` or a typo of it), and `playbook` sits
//! below `host`. A table of data needs nothing from either, so it sits under
//! both; `host::BUILTINS` and `host::builtin` name the same items.

/// A plugin that ships inside the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    pub summary: &'static str,
    /// The component, embedded at build time (see `runner/build.rs`); `None` for a
    /// plugin whose implementation has not landed yet.
    pub wasm: Option<&'static [u8]>,
}

macro_rules! embedded {
    ($name:literal) => {
        Some(include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".wasm")).as_slice())
    };
}

/// The built-in plugins, by the name a playbook's `uses:` gives them.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "echo",
        summary: "returns its inputs; can sleep or fail on request (tests, benchmarks)",
        wasm: embedded!("echo"),
    },
    Builtin {
        name: "exec",
        summary: "run an allowlisted program (tests, builds, audits)",
        wasm: embedded!("exec"),
    },
    Builtin {
        name: "fs",
        summary: "write, append and copy files in granted folders",
        wasm: embedded!("fs"),
    },
    Builtin {
        name: "git",
        summary: "branch, commit, tag, push, merge with the real git",
        wasm: embedded!("git"),
    },
    Builtin {
        name: "http-check",
        summary: "health and smoke checks with assertions",
        wasm: embedded!("http-check"),
    },
    Builtin {
        name: "kubectl",
        summary: "set image, rollout status / undo / history, scale, canary weights, get, patch",
        wasm: embedded!("kubectl"),
    },
    Builtin {
        name: "load-test",
        summary: "HTTP load with latency percentiles and thresholds",
        wasm: embedded!("load-test"),
    },
    Builtin {
        name: "notify",
        summary: "Slack, webhook and e-mail notifications",
        wasm: embedded!("notify"),
    },
    Builtin {
        name: "prometheus",
        summary: "PromQL queries for metric gates",
        wasm: embedded!("prometheus"),
    },
    Builtin {
        name: "report",
        summary: "write a rendered markdown report into a granted folder",
        wasm: embedded!("report"),
    },
];

/// The built-in plugin called `name`.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}
