//! The Kubernetes test fixture lives in the `runner-sandbox` crate
//! (`sandbox/src/control_plane.rs`), shared with the local sandbox; this re-export
//! keeps `common::kube::…` working in the tests.

#[allow(unused_imports)] // each test file uses a subset
pub use runner_sandbox::control_plane::*;
