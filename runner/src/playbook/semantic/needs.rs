//! The order of a stage's steps: what each step's `needs` names exists in
//! the stage, and the steps wait for each other without a cycle.

use std::collections::HashMap;

use super::Checker;
use crate::playbook::model::Step;
use crate::playbook::suggest::did_you_mean;
use crate::playbook::yaml::{Path, Target};

impl Checker<'_> {
    /// For each step of a stage, the indices of the steps it waits for. Reports
    /// unknown, self and duplicate `needs`, and cycles (after which the graph is
    /// treated as having no edges on the cycle, so later checks still run).
    pub(super) fn dependencies(&mut self, steps: &[Step], path: &Path) -> Vec<Vec<usize>> {
        let index: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let Some(needs) = &step.needs else {
                deps.push(if i == 0 { vec![] } else { vec![i - 1] });
                continue;
            };
            let mut own = Vec::new();
            for (k, need) in needs.iter().enumerate() {
                let np = path.index(i).key("needs").index(k);
                match index.get(need.as_str()) {
                    Some(&j) if j == i => self.report(
                        &np,
                        Target::Value,
                        format!("step `{need}` cannot need itself"),
                    ),
                    Some(&j) if own.contains(&j) => self.report(
                        &np,
                        Target::Value,
                        format!("`{need}` is listed twice in `needs`"),
                    ),
                    Some(&j) => own.push(j),
                    None => {
                        let elsewhere = self.steps.contains_key(need.as_str());
                        let hint = if elsewhere {
                            " (it is in another stage or a handler; `needs` only orders steps of the same stage, earlier stages always finish first)".to_owned()
                        } else {
                            did_you_mean(need.as_str(), index.keys().copied())
                                .map(|s| format!("; did you mean `{s}`?"))
                                .unwrap_or_default()
                        };
                        self.report(
                            &np,
                            Target::Value,
                            format!(
                                "`needs` names `{need}`, which is not a step of this stage{hint}"
                            ),
                        );
                    }
                }
            }
            deps.push(own);
        }
        if let Some(cycle) = find_cycle(&deps) {
            let names: Vec<&str> = cycle
                .iter()
                .chain(cycle.first())
                .map(|&i| steps[i].id.as_str())
                .collect();
            let at = path.index(cycle[0]).key("needs");
            self.report(
                &at,
                Target::Key,
                format!(
                    "`needs` forms a cycle: {}; no step of it could ever start",
                    names.join(" → ")
                ),
            );
            for &i in &cycle {
                deps[i].clear();
            }
        }
        deps
    }
}

/// A cycle in a dependency graph (node indices in order), if there is one.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: usize,
        deps: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[n] = Mark::Open;
        stack.push(n);
        for &d in &deps[n] {
            match marks[d] {
                Mark::Open => {
                    let from = stack.iter().position(|&x| x == d).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.reverse();
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, deps, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[n] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; deps.len()];
    (0..deps.len()).find_map(|n| {
        if marks[n] == Mark::New {
            visit(n, deps, &mut marks, &mut Vec::new())
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found() {
        assert_eq!(find_cycle(&[vec![], vec![0], vec![1]]), None);
        let c = find_cycle(&[vec![2], vec![0], vec![1]]).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0]));
    }
}
