//! `runner plan --rbac`: the Kubernetes Role and RoleBinding a runner's
//! service account needs for a playbook's `kube` grants, and nothing more.
//!
//! Why: a worker in a cluster calls the API server with its service account
//! (`caps::kube`), so the account must be allowed what the playbook grants its
//! plugins. Granting it more (a ClusterRole, `*` verbs) would let any playbook
//! run by that worker do more than its own grants say if the runner's check
//! had a flaw; so the roles are derived from the grants: one Role per
//! namespace, one rule per granted (resource, verbs, names), bound to the
//! service account.
//!
//! Where RBAC is wider than the runner's own check: RBAC cannot limit `create`
//! to object names (the name is in the body), so a granted `create` limited to
//! names is given without them, with a comment; the runner still checks the
//! name (`caps::kube`). A `list` or `watch` limited to names is given with
//! them: the runner sends those by name (`fieldSelector=metadata.name=`),
//! which RBAC allows for a name rule.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::caps::grants::{KubeGrant, KubeVerb};

/// Who the Role is bound to.
#[derive(Debug, Clone)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
}

fn verb(v: KubeVerb) -> &'static str {
    match v {
        KubeVerb::Get => "get",
        KubeVerb::List => "list",
        KubeVerb::Watch => "watch",
        KubeVerb::Create => "create",
        KubeVerb::Update => "update",
        KubeVerb::Patch => "patch",
        KubeVerb::Delete => "delete",
    }
}

/// `deployments.apps/scale` → (`apps`, `deployments/scale`); `pods/log` →
/// (``, `pods/log`).
fn split(resource: &str) -> (String, String) {
    let (main, sub) = match resource.split_once('/') {
        Some((m, s)) => (m, Some(s)),
        None => (resource, None),
    };
    let (plural, group) = match main.split_once('.') {
        Some((p, g)) => (p, g),
        None => (main, ""),
    };
    let name = match sub {
        Some(s) => format!("{plural}/{s}"),
        None => plural.to_owned(),
    };
    (group.to_owned(), name)
}

/// One rule of a Role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    group: String,
    resource: String,
    verbs: Vec<&'static str>,
    names: Vec<String>,
    /// Why it is wider than the grant, if it is.
    note: Option<&'static str>,
}

/// The rules per namespace for `grants` (each plugin's `kube` entries, with
/// the plugin's name).
fn rules<'g>(grants: impl IntoIterator<Item = &'g KubeGrant>) -> BTreeMap<String, Vec<Rule>> {
    let mut out: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    for g in grants {
        let mut verbs: Vec<&'static str> = g.verbs.iter().map(|v| verb(*v)).collect();
        verbs.sort_unstable();
        verbs.dedup();
        for ns in &g.namespaces {
            for resource in &g.resources {
                let (group, resource) = split(resource);
                let mut push = |verbs: Vec<&'static str>, names: Vec<String>, note| {
                    if !verbs.is_empty() {
                        out.entry(ns.clone()).or_default().push(Rule {
                            group: group.clone(),
                            resource: resource.clone(),
                            verbs,
                            names,
                            note,
                        });
                    }
                };
                if g.names.is_empty() {
                    push(verbs.clone(), Vec::new(), None);
                } else {
                    let (create, named): (Vec<_>, Vec<_>) =
                        verbs.iter().partition(|v| **v == "create");
                    push(named, g.names.clone(), None);
                    push(
                        create,
                        Vec::new(),
                        Some(
                            "RBAC cannot limit create to names; the runner checks the name in the body",
                        ),
                    );
                }
            }
        }
    }
    for rules in out.values_mut() {
        rules.sort();
        rules.dedup();
    }
    out
}

/// A JSON string: valid YAML, whatever it holds.
fn q(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

fn list(items: &[impl AsRef<str>]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| q(i.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// The Roles and RoleBindings for `grants`, as YAML documents; a comment
/// when the playbook grants no Kubernetes access.
pub fn render<'g>(
    playbook: &str,
    grants: impl IntoIterator<Item = &'g KubeGrant>,
    subject: &Subject,
) -> String {
    let per_namespace = rules(grants);
    let mut out = String::new();
    if per_namespace.is_empty() {
        let _ = writeln!(
            out,
            "# playbook {playbook} grants no Kubernetes access: its runner's service account needs no Role"
        );
        return out;
    }
    let name = format!("runner-{playbook}");
    for (ns, rules) in &per_namespace {
        let _ = writeln!(
            out,
            "# What playbook {playbook} grants its plugins in namespace {ns} (runner plan --rbac)."
        );
        let _ = writeln!(
            out,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {}\n  namespace: {}\nrules:",
            q(&name),
            q(ns)
        );
        for r in rules {
            if let Some(note) = r.note {
                let _ = writeln!(out, "  # {note}");
            }
            let _ = writeln!(
                out,
                "  - apiGroups: [{}]\n    resources: [{}]\n    verbs: {}",
                q(&r.group),
                q(&r.resource),
                list(&r.verbs)
            );
            if !r.names.is_empty() {
                let _ = writeln!(out, "    resourceNames: {}", list(&r.names));
            }
        }
        let _ = writeln!(
            out,
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {}\n  namespace: {}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {}\nsubjects:\n  - kind: ServiceAccount\n    name: {}\n    namespace: {}\n---",
            q(&name),
            q(ns),
            q(&name),
            q(&subject.name),
            q(&subject.namespace)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ns: &[&str], resources: &[&str], verbs: &[KubeVerb], names: &[&str]) -> KubeGrant {
        KubeGrant {
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
            verbs: verbs.to_vec(),
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn groups_subresources_and_names_become_rbac_rules() {
        use KubeVerb::*;
        let grants = [
            grant(
                &["prod"],
                &["deployments.apps", "deployments.apps/scale"],
                &[Get, Patch, Get],
                &["api"],
            ),
            grant(
                &["prod", "staging"],
                &["pods", "pods/log"],
                &[List, Get],
                &[],
            ),
            grant(&["prod"], &["configmaps"], &[Create, Get], &["flags"]),
        ];
        let subject = Subject {
            namespace: "runner".into(),
            name: "runner-worker".into(),
        };
        let yaml = render("rollback", &grants, &subject);
        let prod = yaml.split("namespace: \"staging\"").next().unwrap();
        assert!(prod.contains("  - apiGroups: [\"apps\"]\n    resources: [\"deployments\"]\n    verbs: [\"get\", \"patch\"]\n    resourceNames: [\"api\"]"), "{yaml}");
        assert!(
            prod.contains("resources: [\"deployments/scale\"]"),
            "{yaml}"
        );
        assert!(prod.contains("  - apiGroups: [\"\"]\n    resources: [\"pods/log\"]\n    verbs: [\"get\", \"list\"]\n"), "{yaml}");
        assert!(prod.contains("# RBAC cannot limit create to names; the runner checks the name in the body\n  - apiGroups: [\"\"]\n    resources: [\"configmaps\"]\n    verbs: [\"create\"]\n"), "{yaml}");
        assert!(
            prod.contains(
                "resources: [\"configmaps\"]\n    verbs: [\"get\"]\n    resourceNames: [\"flags\"]"
            ),
            "{yaml}"
        );
        assert!(yaml.contains("kind: RoleBinding"), "{yaml}");
        assert!(
            yaml.contains("    name: \"runner-worker\"\n    namespace: \"runner\""),
            "{yaml}"
        );
        assert_eq!(
            yaml.matches("\nkind: Role\n").count(),
            2,
            "one Role per namespace"
        );
        assert!(render("p", &[], &subject).starts_with("# playbook p grants no Kubernetes access"));
    }
}
