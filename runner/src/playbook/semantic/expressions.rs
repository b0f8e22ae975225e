//! Expressions: every `${{ }}` and condition compiles, reads only what exists
//! where it stands (inputs, steps that have finished, earlier stages, a watch's
//! `result`) and has a type that fits its place; problems point into the
//! string, at the character where they are.

use serde_json::Value;

use super::{Checked, Checker, RUN_FIELDS, STAGE_FIELDS, STEP_FIELDS, Scope};
use crate::expr::{self, Piece, Reference};
use crate::playbook::suggest::did_you_mean;
use crate::playbook::yaml::{Path, Pos, Target};

impl Checker<'_> {
    pub(super) fn with_value(&mut self, v: &Value, path: &Path, scope: Scope<'_>) {
        match v {
            Value::String(s) => self.template(s, path, scope),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.with_value(item, &path.index(i), scope);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.with_value(item, &path.key(k), scope);
                }
            }
            _ => {}
        }
    }

    pub(super) fn template(&mut self, text: &str, path: &Path, scope: Scope<'_>) {
        match expr::parse_template(text) {
            Err(e) => {
                let pos = self.pos_in(path, text, e.offset);
                self.report_at(pos, e.to_string());
            }
            Ok(pieces) => {
                for piece in pieces {
                    if let Piece::Expr { source, offset } = piece {
                        self.expression(source, offset, text, path, scope, false);
                    }
                }
            }
        }
    }

    pub(super) fn condition(&mut self, text: &str, path: &Path, scope: Scope<'_>) {
        let inner = expr::unwrap_condition(text);
        let offset = inner.as_ptr() as usize - text.as_ptr() as usize;
        self.expression(inner, offset, text, path, scope, true);
    }

    /// Compiles `source` (found at byte `offset` of the node's string `whole`),
    /// checks what it references and its types; a `condition` must be able to
    /// give a `bool`.
    fn expression(
        &mut self,
        source: &str,
        offset: usize,
        whole: &str,
        path: &Path,
        scope: Scope<'_>,
        condition: bool,
    ) {
        if !self.compiled.contains_key(source) {
            let result = expr::compile(source).map(|c| Checked {
                references: c.references(),
                as_value: c.type_check(false).err(),
                as_condition: c.type_check(true).err(),
            });
            self.compiled.insert(source.to_owned(), result);
        }
        let problems: Vec<(usize, String)> = match &self.compiled[source] {
            Err(e) => vec![(
                byte_offset(source, e.line, e.col),
                format!("invalid expression `{}`: {}", source.trim(), e.message),
            )],
            Ok(checked) => {
                let unresolved: Vec<(usize, String)> = checked
                    .references
                    .iter()
                    .filter_map(|r| {
                        let message = self.reference(r, scope).err()?;
                        // Only now, with a problem to show, is the position worth a re-parse.
                        let at = expr::compile(source).map_or(0, |c| c.offset_of(r));
                        Some((at, message))
                    })
                    .collect();
                let typed = if condition {
                    &checked.as_condition
                } else {
                    &checked.as_value
                };
                match typed {
                    Some((at, message)) if unresolved.is_empty() => {
                        vec![(*at, format!("`{}` cannot run: {message}", source.trim()))]
                    }
                    _ => unresolved,
                }
            }
        };
        for (at, message) in problems {
            let pos = self.pos_in(path, whole, offset + at);
            self.report_at(pos, message);
        }
    }

    fn reference(&self, r: &Reference, scope: Scope<'_>) -> Result<(), String> {
        let field = |i: usize| r.fields.get(i).map(String::as_str);
        if scope.static_only
            && r.root != "inputs"
            && !(r.root == "run" && field(0) == Some("playbook"))
        {
            return Err(format!(
                "`{}` is not known before the run starts; only `inputs` (and `run.playbook`) can be used here",
                r.dotted(2)
            ));
        }
        match r.root.as_str() {
            "inputs" => match field(0) {
                None => Ok(()),
                Some(name) if self.pb.inputs.contains_key(name) => Ok(()),
                Some(name) => Err(format!(
                    "unknown input `{name}`{}",
                    self.hint(name, self.pb.inputs.keys().map(|k| k.as_str()), "inputs")
                )),
            },
            "steps" => {
                let Some(id) = field(0) else { return Ok(()) };
                if !self.steps.contains_key(id) {
                    return Err(format!(
                        "unknown step `{id}`{}",
                        self.hint(id, self.steps.keys().copied(), "steps")
                    ));
                }
                if let Some(earlier) = scope.steps
                    && !earlier.contains(id)
                    && !scope.stage.is_some_and(|s| s.finished_before(id))
                {
                    return Err(format!(
                        "step `{id}` has not run yet at this point; a step can use the results of steps of earlier stages and of the steps it waits for (list `{id}` in `needs`, or move this after it)"
                    ));
                }
                match field(1) {
                    Some(f) if !STEP_FIELDS.contains(&f) => Err(format!(
                        "`steps.{id}` has no field `{f}`{}",
                        self.hint(f, STEP_FIELDS.iter().copied(), "fields")
                    )),
                    _ => Ok(()),
                }
            }
            "stages" => {
                let Some(id) = field(0) else { return Ok(()) };
                let ids: Vec<&str> = self.pb.stages.iter().map(|s| s.id.as_str()).collect();
                if !ids.contains(&id) {
                    return Err(format!(
                        "unknown stage `{id}`{}",
                        self.hint(id, ids.iter().copied(), "stages")
                    ));
                }
                if let Some(done) = scope.stages
                    && !done.contains(id)
                {
                    return Err(format!(
                        "stage `{id}` has not finished at this point; only earlier stages can be read"
                    ));
                }
                match field(1) {
                    Some(f) if !STAGE_FIELDS.contains(&f) => Err(format!(
                        "`stages.{id}` has no field `{f}`{}",
                        self.hint(f, STAGE_FIELDS.iter().copied(), "fields")
                    )),
                    _ => Ok(()),
                }
            }
            "run" => match field(0) {
                Some(f) if !RUN_FIELDS.contains(&f) => Err(format!(
                    "`run` has no field `{f}`{}",
                    self.hint(f, RUN_FIELDS.iter().copied(), "fields")
                )),
                _ => Ok(()),
            },
            "result" if scope.result => Ok(()),
            "result" => Err(
                "`result` exists only in a watch's `success` and `failure` conditions".to_owned(),
            ),
            other => {
                let mut roots = vec!["inputs", "steps", "stages", "run"];
                if scope.result {
                    roots.push("result");
                }
                let hint = did_you_mean(other, roots.iter().copied())
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                Err(format!(
                    "unknown name `{other}`; {hint}expressions can read {}",
                    roots.join(", ")
                ))
            }
        }
    }

    fn hint<'c>(
        &self,
        name: &str,
        candidates: impl Iterator<Item = &'c str> + Clone,
        what: &str,
    ) -> String {
        match did_you_mean(name, candidates.clone()) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => {
                let mut all: Vec<&str> = candidates.collect();
                all.sort_unstable();
                if all.is_empty() || all.len() > 12 {
                    String::new()
                } else {
                    format!("; known {what}: {}", all.join(", "))
                }
            }
        }
    }

    /// The file position of byte `offset` inside the string value at `path`: exact
    /// when the value is written on one line (plain or quoted, without escapes before
    /// the offset), otherwise the start of the value.
    fn pos_in(&self, path: &Path, whole: &str, offset: usize) -> Pos {
        let start = self.tree.locate(path, Target::Value);
        let Some(line) = self.source.line(start.line) else {
            return start;
        };
        let rest: String = line.chars().skip(start.col.saturating_sub(1)).collect();
        let prefix = whole.get(..offset).unwrap_or_default();
        if prefix.contains('\n') {
            return start;
        }
        let shift = if rest.starts_with(prefix) {
            0
        } else if rest.starts_with(['"', '\'']) && rest[1..].starts_with(prefix) {
            1
        } else {
            return start;
        };
        Pos {
            line: start.line,
            col: start.col + shift + prefix.chars().count(),
        }
    }
}

/// Byte offset of a 1-based (line, column-in-characters) position in `text`.
fn byte_offset(text: &str, line: usize, col: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[line_start.min(text.len())..];
    line_start
        + rest
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_offsets_count_characters() {
        assert_eq!(byte_offset("ab", 1, 2), 1);
        assert_eq!(byte_offset("a\nbc", 2, 2), 3);
        assert_eq!(byte_offset("é x", 1, 3), 3);
    }
}
