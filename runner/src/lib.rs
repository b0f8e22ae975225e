//! `runner`: executes YAML playbooks for production emergencies.
//!
//! The modules follow the data path: [`playbook`] (load and validate), [`expr`]
//! (CEL), [`plan`] (what will run), [`engine`] (the run) over [`host`] and
//! [`caps`] (plugins and what they may do), [`run_state`] (a run as its events
//! tell it), [`record`] and [`report`] (what happened), [`service`] (the one
//! way every front end prepares, starts and reads runs), and [`cli`] at the
//! edge. docs/architecture.md is the map.

pub mod builtins;
pub mod caps;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod expr;
pub mod host;
pub mod identity;
pub mod oci_ref;
pub mod plan;
pub mod playbook;
pub mod record;
pub mod report;
pub mod run_state;
pub mod server;
pub mod service;
pub mod settings;
