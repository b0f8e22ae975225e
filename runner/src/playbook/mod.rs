//! Loading a playbook: text → located YAML tree → JSON Schema → typed model →
//! semantic checks.
//!
//! Each stage reports every problem it finds, not just the first, and each problem
//! carries a position in the file. A stage runs only when the one before it found
//! nothing: semantic checks on a document that failed the schema would mostly repeat
//! what the schema already said.

pub mod constraints;
pub mod environment;
pub mod model;
pub mod scalars;
pub mod schema;
mod semantic;
pub mod source;
pub mod suggest;
pub mod yaml;

use std::path::Path as FsPath;

pub use model::Playbook;
pub use source::{MAX_PLAYBOOK_BYTES, ReadError, Source};
use yaml::{Node, Path, Pos, Target};

/// One thing wrong with a playbook, at a position in its file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub pos: Pos,
    pub message: String,
}

impl Problem {
    /// A problem at `path` in `tree`, pointing at its key or its value.
    pub fn at(tree: &Node, path: &Path, target: Target, message: String) -> Problem {
        Problem {
            pos: tree.locate(path, target),
            message,
        }
    }
}

/// The problems that `grants`' entries carry (their capabilities' parsers found
/// them when the file was read), each at its place below `at`, the path of a
/// `grants:` block in `tree`: a playbook's and an environment file's grants are
/// refused in the same words at the same places.
pub fn grant_problems(tree: &Node, at: &Path, grants: &model::Grants) -> Vec<Problem> {
    use crate::caps::capability::Spot;
    let mut problems = Vec::new();
    for entries in grants.each() {
        for (i, problem) in entries.problems() {
            let entry = at.key(entries.kind()).index(i);
            let path = match problem.at {
                Spot::Entry => entry,
                Spot::Key(key) => entry.key(key),
                Spot::Item(key, j) => entry.key(key).index(j),
            };
            problems.push(Problem::at(
                tree,
                &path,
                Target::Value,
                problem.message.clone(),
            ));
        }
    }
    problems
}

/// A playbook that passed every check.
#[derive(Debug, Clone)]
pub struct Validated {
    pub source: Source,
    pub tree: Node,
    pub playbook: Playbook,
    /// What `runner validate` says without refusing the playbook: things it
    /// leaves to the environment file or to the run, each at its position.
    pub notes: Vec<Problem>,
}

impl Validated {
    /// Calls `each` with every step of the playbook, handlers' too, and its path.
    pub fn each_step(&self, mut each: impl FnMut(&model::Step, yaml::Path)) {
        use yaml::Path;
        for (i, stage) in self.playbook.stages.iter().enumerate() {
            let sp = Path::root().key("stages").index(i);
            for (j, step) in stage.steps.iter().enumerate() {
                each(step, sp.key("steps").index(j));
            }
            for (key, list) in stage.handlers.lists() {
                for (j, step) in list.iter().enumerate() {
                    each(step, sp.key("handlers").key(key).index(j));
                }
            }
        }
        for (key, list) in self.playbook.handlers.lists() {
            for (j, step) in list.iter().enumerate() {
                each(step, Path::root().key("handlers").key(key).index(j));
            }
        }
    }
}

/// Why a playbook cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{} problem(s) in {}", problems.len(), file.name)]
    Invalid {
        file: Box<Source>,
        problems: Vec<Problem>,
    },
}

/// Reads and validates the playbook at `path`.
pub fn load(path: &FsPath) -> Result<Validated, LoadError> {
    validate(Source::read(path, "playbook")?)
}

/// Validates a playbook already read.
pub fn validate(source: Source) -> Result<Validated, LoadError> {
    let invalid = |source: Source, problems| {
        Err(LoadError::Invalid {
            file: Box::new(source),
            problems,
        })
    };
    let tree = match yaml::parse(&source.text) {
        Ok(tree) => tree,
        Err(e) => {
            return invalid(
                source,
                vec![Problem {
                    pos: e.pos,
                    message: e.message,
                }],
            );
        }
    };
    let doc = tree.to_json();
    let problems = schema::check(&doc, &tree);
    if !problems.is_empty() {
        return invalid(source, problems);
    }
    let playbook: Playbook = match serde_json::from_value(doc) {
        Ok(p) => p,
        Err(e) => {
            // The schema accepted what the model refuses: a bug in the schema generation.
            let message = format!(
                "internal error: the schema and the model disagree ({e}); please report this"
            );
            return invalid(
                source,
                vec![Problem {
                    pos: tree.pos,
                    message,
                }],
            );
        }
    };
    let problems = semantic::check(&playbook, &tree, &source);
    if !problems.is_empty() {
        return invalid(source, problems);
    }
    Ok(Validated {
        source,
        tree,
        playbook,
        notes: Vec::new(),
    })
}
