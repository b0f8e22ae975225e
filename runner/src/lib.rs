//! `runner`: executes YAML playbooks for production emergencies.
//!
//! The modules follow the data path: [`playbook`] (load and validate), [`expr`]
//! (CEL), [`plan`] (what will run), [`host`] (plugins), and [`cli`] at the edge.

pub mod caps;
pub mod cli;
pub mod engine;
pub mod expr;
pub mod host;
pub mod identity;
pub mod plan;
pub mod playbook;
pub mod record;
pub mod report;
