//! The shape every capability has, as a trait: [`Capability`], after Spin's
//! `Factor`. A capability is a grammar of grant entries, a grant built from them
//! once per playbook, and what one step attempt gets from that grant.
//!
//! The phases, and what each may touch:
//!
//! 1. **parse**, once per entry, when the playbook or the environment file is
//!    deserialised into the model: the entry as written becomes its checked form,
//!    or problems naming what is wrong. Pure: no I/O, no other entry.
//! 2. **configure**, once per plugin of a playbook (`host::resolve`): the plugin's
//!    grant from its parsed entries. May read the host (the playbook's real
//!    folder); never sees the text of an entry.
//! 3. **prepare**, once per step attempt (`host::state`): what the attempt's store
//!    gets from the grant (preopened folders, the socket check, the `wasi:http`
//!    hooks). Fails the step before it starts when the grant cannot be honoured.
//!
//! The check itself (is this request granted?) is each capability's own method on
//! its grant, called by the host implementation of its WIT interface.
//!
//! Where a grant is parsed, and why there: at load, inside the model. Each entry
//! of `grants:` deserialises into a [`GrantEntry`], which runs its capability's
//! one parser and keeps what was written beside what it means (as wasmCloud's
//! `allowed_hosts.rs` parses at load so that matching does no parsing). Serde
//! cannot refuse a bad entry without losing where it is in the file, so the entry
//! carries its problems instead: validation reports them at the entry's
//! file:line:col (an environment file's too), and refuses the playbook. `runner
//! plan` prints the written side of the same values; configure reads only the
//! parsed side. So there is one reading of an entry: nothing parses it a second
//! time, and nothing can interpret it differently from the check. (One entry is
//! made twice: an environment file's folder, whose path is resolved against the
//! file's folder and the entry made again from the resolved path, which is what
//! it grants.)

use std::borrow::Cow;
use std::fmt::Debug;
use std::path::Path;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wasmtime_wasi::WasiCtxBuilder;

use super::Denials;

/// One capability: the grammar of its grant entries, the grant a plugin holds,
/// and what each step attempt gets from it.
pub trait Capability: Sized + 'static {
    /// The capability's name: its key under `grants:`, its word in `describe`.
    const KIND: &'static str;
    /// One entry of `grants.KIND` as the playbook writes it.
    type Written: Clone + Debug + Serialize + DeserializeOwned + JsonSchema;
    /// One entry parsed: what the grant is made of.
    type Entry: Clone + Debug;
    /// A plugin's grant: what the capability's check consults.
    type Grant: Clone + Debug + Default;
    /// What one step attempt's store keeps from the grant (`()` when the grant
    /// is consulted directly at each call).
    type Prepared;

    /// The one parser of an entry. Runs at load (see the module doc), and only
    /// there; must not panic on any input.
    fn parse(written: &Self::Written) -> Parsed<Self::Entry>;

    /// Once per plugin of a playbook: its grant from its entries. Only the parsed
    /// side of each entry is read; an entry with problems has refused the
    /// playbook before this runs, and otherwise grants what [`Parsed::entry`]
    /// kept of it.
    fn configure(entries: &[GrantEntry<Self>], context: &ConfigureContext<'_>) -> Self::Grant;

    /// Once per step attempt, before the plugin is instantiated. An error fails
    /// the step before it starts.
    fn prepare(grant: &Self::Grant, attempt: &mut Attempt<'_>) -> Result<Self::Prepared, String>;
}

/// What a parse made of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<E> {
    /// What the entry grants. With problems, the parts that parsed (never more
    /// than the written entry says), or `None`: such an entry is only ever used
    /// by a grant built without validation (a test's).
    pub entry: Option<E>,
    /// What is wrong with it, for validation to report.
    pub problems: Vec<EntryProblem>,
}

impl<E> Parsed<E> {
    /// An entry without problems.
    pub fn ok(entry: E) -> Parsed<E> {
        Parsed {
            entry: Some(entry),
            problems: Vec::new(),
        }
    }

    /// An entry that grants nothing, for `message`, about the whole entry.
    pub fn refused(message: String) -> Parsed<E> {
        Parsed {
            entry: None,
            problems: vec![EntryProblem {
                at: Spot::Entry,
                message,
            }],
        }
    }
}

/// Something wrong with one grant entry, and where in the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryProblem {
    pub at: Spot,
    pub message: String,
}

/// Where in an entry a problem is; validation turns it into a file position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spot {
    /// The entry's value.
    Entry,
    /// The value of one of its keys (`run` of a process entry).
    Key(&'static str),
    /// An item of one of its lists (`env[2]`, `namespaces[0]`).
    Item(&'static str, usize),
}

/// One entry of `grants.KIND`: as written, and what its capability's parser
/// made of it. Serialises as written (the schema and `runner plan` show what the
/// user wrote); deserialising parses.
pub struct GrantEntry<C: Capability> {
    written: C::Written,
    parsed: Option<C::Entry>,
    problems: Vec<EntryProblem>,
}

impl<C: Capability> GrantEntry<C> {
    /// Parses `written` with the capability's parser.
    pub fn new(written: C::Written) -> GrantEntry<C> {
        let Parsed { entry, problems } = C::parse(&written);
        GrantEntry {
            written,
            parsed: entry,
            problems,
        }
    }

    /// The entry as the file wrote it.
    pub fn written(&self) -> &C::Written {
        &self.written
    }

    /// What it grants, if anything.
    pub fn parsed(&self) -> Option<&C::Entry> {
        self.parsed.as_ref()
    }

    /// What is wrong with it.
    pub fn problems(&self) -> &[EntryProblem] {
        &self.problems
    }
}

/// The grant of `C` made from entries as written: what a test or a tool that
/// builds a grant directly calls; the same parser and configure as a playbook's.
pub fn grant_from<C: Capability>(
    written: &[C::Written],
    context: &ConfigureContext<'_>,
) -> C::Grant {
    let entries: Vec<GrantEntry<C>> = written.iter().cloned().map(GrantEntry::new).collect();
    C::configure(&entries, context)
}

/// The parsed side of `entries`, in order; entries that grant nothing are left
/// out.
pub fn parsed<C: Capability>(entries: &[GrantEntry<C>]) -> impl Iterator<Item = &C::Entry> {
    entries.iter().filter_map(GrantEntry::parsed)
}

impl<C: Capability> Clone for GrantEntry<C> {
    fn clone(&self) -> Self {
        GrantEntry {
            written: self.written.clone(),
            parsed: self.parsed.clone(),
            problems: self.problems.clone(),
        }
    }
}

impl<C: Capability> Debug for GrantEntry<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantEntry")
            .field("kind", &C::KIND)
            .field("written", &self.written)
            .field("parsed", &self.parsed)
            .field("problems", &self.problems)
            .finish()
    }
}

impl<C: Capability> Serialize for GrantEntry<C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.written.serialize(serializer)
    }
}

impl<'de, C: Capability> Deserialize<'de> for GrantEntry<C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        C::Written::deserialize(deserializer).map(GrantEntry::new)
    }
}

/// The schema of the written form: the file is written, not parsed.
impl<C: Capability> JsonSchema for GrantEntry<C> {
    fn inline_schema() -> bool {
        C::Written::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        C::Written::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        C::Written::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        C::Written::json_schema(generator)
    }
}

/// A plugin's entries of one capability, whatever the capability: what loops
/// over all capabilities (validation, the kinds a plugin is granted) walk.
pub trait Entries {
    /// [`Capability::KIND`].
    fn kind(&self) -> &'static str;
    fn is_empty(&self) -> bool;
    /// Each problem, with the index of its entry.
    fn problems(&self) -> Vec<(usize, &EntryProblem)>;
}

impl<C: Capability> Entries for Vec<GrantEntry<C>> {
    fn kind(&self) -> &'static str {
        C::KIND
    }

    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }

    fn problems(&self) -> Vec<(usize, &EntryProblem)> {
        self.iter()
            .enumerate()
            .flat_map(|(i, e)| e.problems.iter().map(move |p| (i, p)))
            .collect()
    }
}

/// What configuring a grant may know of the playbook.
#[derive(Debug, Clone, Copy)]
pub struct ConfigureContext<'a> {
    /// The playbook's folder: relative paths in grants are relative to it.
    pub playbook_dir: &'a Path,
}

impl Default for ConfigureContext<'_> {
    /// No playbook: relative paths stay relative.
    fn default() -> Self {
        ConfigureContext {
            playbook_dir: Path::new(""),
        }
    }
}

/// What preparing a grant for one step attempt may touch.
pub struct Attempt<'a> {
    /// The plugin's local name in the playbook, for messages.
    pub plugin: &'a str,
    /// The capabilities it declared in `describe` (optional ones too).
    pub declared: &'a [String],
    /// The attempt's fresh working directory.
    pub workdir: &'a Path,
    /// The WASI context being built for the attempt's store.
    pub wasi: &'a mut WasiCtxBuilder,
    /// The attempt's refusals, shared with whatever checks during it.
    pub denials: &'a Denials,
}

impl Attempt<'_> {
    /// Whether the plugin declared capability `kind`.
    pub fn declares(&self, kind: &str) -> bool {
        self.declared.iter().any(|c| c == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capability of single words, to test the shared parts alone.
    struct Words;

    impl Capability for Words {
        const KIND: &'static str = "words";
        type Written = String;
        type Entry = String;
        type Grant = Vec<String>;
        type Prepared = ();

        fn parse(written: &String) -> Parsed<String> {
            if written.contains(' ') {
                Parsed::refused(format!("`{written}` is two words"))
            } else {
                Parsed::ok(written.to_uppercase())
            }
        }

        fn configure(entries: &[GrantEntry<Words>], _: &ConfigureContext<'_>) -> Vec<String> {
            parsed(entries).cloned().collect()
        }

        fn prepare(_: &Vec<String>, _: &mut Attempt<'_>) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn an_entry_deserialises_parsed_and_serialises_as_written() {
        let entries: Vec<GrantEntry<Words>> =
            serde_json::from_value(serde_json::json!(["one", "two words", "three"])).unwrap();
        assert_eq!(entries[0].written(), "one");
        assert_eq!(entries[0].parsed().map(String::as_str), Some("ONE"));
        assert_eq!(entries[1].parsed(), None);
        assert_eq!(
            entries[1].problems(),
            [EntryProblem {
                at: Spot::Entry,
                message: "`two words` is two words".into()
            }]
        );
        assert_eq!(
            serde_json::to_value(&entries).unwrap(),
            serde_json::json!(["one", "two words", "three"])
        );
        // Configure reads the parsed side only; the refused entry grants nothing.
        assert_eq!(
            Words::configure(&entries, &ConfigureContext::default()),
            ["ONE", "THREE"]
        );
        assert_eq!(
            grant_from::<Words>(&["a".into(), "b c".into()], &ConfigureContext::default()),
            ["A"]
        );
    }

    #[test]
    fn entries_tell_their_kind_and_problems_by_index() {
        let entries: Vec<GrantEntry<Words>> = ["ok", "not ok", "fine", "bad one"]
            .into_iter()
            .map(|w| GrantEntry::new(w.to_owned()))
            .collect();
        let list: &dyn Entries = &entries;
        assert_eq!(list.kind(), "words");
        assert!(!list.is_empty());
        let at: Vec<usize> = list.problems().into_iter().map(|(i, _)| i).collect();
        assert_eq!(at, [1, 3]);
        assert!(Entries::is_empty(&Vec::<GrantEntry<Words>>::new()));
    }

    #[test]
    fn the_schema_is_the_written_forms() {
        let mut a = SchemaGenerator::default();
        let mut b = SchemaGenerator::default();
        assert_eq!(
            <Vec<GrantEntry<Words>>>::json_schema(&mut a),
            <Vec<String>>::json_schema(&mut b)
        );
        assert_eq!(GrantEntry::<Words>::schema_id(), String::schema_id());
        assert_eq!(
            GrantEntry::<Words>::inline_schema(),
            String::inline_schema()
        );
    }

    #[test]
    fn an_attempt_knows_what_was_declared() {
        let mut wasi = WasiCtxBuilder::new();
        let declared = vec!["http".to_owned()];
        let attempt = Attempt {
            plugin: "p",
            declared: &declared,
            workdir: Path::new("/tmp"),
            wasi: &mut wasi,
            denials: &Denials::default(),
        };
        assert!(attempt.declares("http"));
        assert!(!attempt.declares("tcp"));
    }
}
