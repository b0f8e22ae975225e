//! The grant check: a plugin's request, as it crossed the boundary, becomes a
//! [`Call`] whose path and query are built from checked parts only, or a
//! [`Refusal`] naming what is wrong or which rule to add (the rules are in the
//! module doc of [`super`]).

use std::time::Duration;

use super::body;
use super::{DEFAULT_WATCH, MAX_BODY, MAX_WATCH};
use crate::caps::capability::{
    self, Attempt, Capability, ConfigureContext, EntryProblem, GrantEntry, Parsed, Spot,
};
use crate::caps::grants::{KubeGrant as Rule, KubeVerb};

/// The rules a plugin was granted.
#[derive(Debug, Clone, Default)]
pub struct KubeGrant {
    rules: Vec<Rule>,
}

/// A plugin's request, as it crossed the boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub verb: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub patch_type: Option<String>,
    pub body: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u32>,
    /// Further query parameters, from [`QUERY_PARAMETERS`].
    pub query: Vec<(String, String)>,
}

/// The further query parameters a plugin may set: they shape or filter an
/// answer, none widens what the request reaches.
pub const QUERY_PARAMETERS: &[&str] = &[
    "container",
    "tailLines",
    "sinceSeconds",
    "limitBytes",
    "timestamps",
    "previous",
    "limit",
    "continue",
    "dryRun",
    "propagationPolicy",
    "gracePeriodSeconds",
];

/// A request that passed the grant check, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: http::Method,
    /// Path and query, built from checked parts.
    pub uri: String,
    pub body: Option<Vec<u8>>,
    pub content_type: Option<&'static str>,
    /// `Some` for a watch: how long the long poll may last.
    pub watch: Option<Duration>,
}

/// Why a request was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No grant covers it: the step fails as denied.
    Denied(String),
    /// It is malformed (the plugin's or its input's fault).
    Invalid(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Denied(m) | Refusal::Invalid(m) => m,
        }
    }
}

/// The `kube` capability: entries are rules of namespaces, resources, verbs and
/// names; the host checks each call against them and sends it over the run's
/// connection, so an attempt prepares nothing.
pub struct Kube;

impl Capability for Kube {
    const KIND: &'static str = "kube";
    type Written = Rule;
    type Entry = Rule;
    type Grant = KubeGrant;
    type Prepared = ();

    /// Every namespace, resource and name of a rule is a non-empty word without
    /// white space; they are compared as written. A rule with problems is kept
    /// whole: a malformed item matches no checked request, and dropping it could
    /// empty `names`, which would widen the rule to every object.
    fn parse(rule: &Rule) -> Parsed<Rule> {
        let mut problems = Vec::new();
        for (key, list) in [
            ("namespaces", &rule.namespaces),
            ("resources", &rule.resources),
            ("names", &rule.names),
        ] {
            for (j, v) in list.iter().enumerate() {
                if v.is_empty() || v.chars().any(char::is_whitespace) {
                    problems.push(EntryProblem {
                        at: Spot::Item(key, j),
                        message: format!("`{v}` is not a valid entry of `{key}`"),
                    });
                }
            }
        }
        Parsed {
            entry: Some(rule.clone()),
            problems,
        }
    }

    fn configure(entries: &[GrantEntry<Kube>], _: &ConfigureContext<'_>) -> KubeGrant {
        KubeGrant {
            rules: capability::parsed(entries).cloned().collect(),
        }
    }

    fn prepare(_: &KubeGrant, _: &mut Attempt<'_>) -> Result<(), String> {
        Ok(())
    }
}

impl KubeGrant {
    /// The grant of rules as written, through [`Kube`]'s parser (a playbook's
    /// grants are configured by `host::resolve`).
    pub fn new(rules: &[Rule]) -> KubeGrant {
        capability::grant_from::<Kube>(rules, &ConfigureContext::default())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks `r` and builds the call, or says what is wrong and which grant is
    /// missing.
    pub fn check(&self, plugin: &str, r: &Request) -> Result<Call, Refusal> {
        use Refusal::{Denied, Invalid};
        let verb = parse_verb(&r.verb).map_err(Invalid)?;
        let (group, version) = parse_api_version(&r.api_version).map_err(Invalid)?;
        if !is_word(&r.resource) {
            return Err(Invalid(format!(
                "`{}` is not a resource; use its plural name in lower case, e.g. `deployments`",
                r.resource
            )));
        }
        if let Some(sub) = &r.subresource
            && !is_word(sub)
        {
            return Err(Invalid(format!(
                "`{sub}` is not a subresource, e.g. `scale` or `status`"
            )));
        }
        let Some(namespace) = &r.namespace else {
            return Err(Denied(format!(
                "cluster-scoped Kubernetes access (`{} {}`) is not granted to plugin `{plugin}`: grants cover namespaced resources only",
                r.verb, r.resource
            )));
        };
        if !is_label(namespace) {
            return Err(Invalid(format!("`{namespace}` is not a namespace name")));
        }
        let key = resource_key(&r.resource, group, r.subresource.as_deref());
        // A refusal of what the body would make the API server do.
        let refused = |why: &str| {
            Denied(format!(
                "Kubernetes `{} {key}` in namespace `{namespace}` is refused for plugin `{plugin}`: {why}",
                verb_str(verb)
            ))
        };
        if let Some(name) = &r.name
            && !is_object_name(name)
        {
            return Err(Invalid(format!("`{name}` is not an object name")));
        }
        if r.subresource.is_some() && r.name.is_none() {
            return Err(Invalid("a subresource needs the object's name".to_owned()));
        }
        let needs_name = matches!(
            verb,
            KubeVerb::Get | KubeVerb::Update | KubeVerb::Delete | KubeVerb::Patch
        );
        if needs_name && r.name.is_none() {
            return Err(Invalid(format!("`{}` needs the object's name", r.verb)));
        }
        let body = match (&r.body, verb) {
            (Some(b), KubeVerb::Create | KubeVerb::Update | KubeVerb::Patch) => {
                if b.len() > MAX_BODY {
                    return Err(Invalid(format!(
                        "the request body is larger than {} MiB",
                        MAX_BODY >> 20
                    )));
                }
                Some(body::parse(b).map_err(|e| match e {
                    body::ParseError::NotJson(e) => {
                        Invalid(format!("the request body is not JSON: {e}"))
                    }
                    body::ParseError::Repeated(why) => refused(&why),
                })?)
            }
            (None, KubeVerb::Create | KubeVerb::Update | KubeVerb::Patch) => {
                return Err(Invalid(format!("`{}` needs a body", r.verb)));
            }
            (Some(_), _) => return Err(Invalid(format!("`{}` takes no body", r.verb))),
            (None, _) => None,
        };
        let content_type = match (verb, r.patch_type.as_deref()) {
            (KubeVerb::Patch, Some("merge")) => Some("application/merge-patch+json"),
            (KubeVerb::Patch, Some("strategic") | None) => {
                Some("application/strategic-merge-patch+json")
            }
            (KubeVerb::Patch, Some("json")) => Some("application/json-patch+json"),
            (KubeVerb::Patch, Some("apply")) => Some("application/apply-patch+yaml"),
            (KubeVerb::Patch, Some(other)) => {
                return Err(Invalid(format!(
                    "`{other}` is not a patch type; use `strategic` (the default), `merge`, `json` or `apply`"
                )));
            }
            (_, Some(_)) => {
                return Err(Invalid(
                    "`patch-type` goes with the `patch` verb only".to_owned(),
                ));
            }
            (KubeVerb::Create | KubeVerb::Update, None) => Some("application/json"),
            _ => None,
        };
        let shape = if content_type == Some("application/json-patch+json") {
            body::Shape::JsonPatch
        } else {
            body::Shape::Object
        };
        let identity = match &body {
            Some(b) => body::identity(shape, b).map_err(|why| refused(&why))?,
            None => body::Identity::default(),
        };
        if let Some(ns) = &identity.namespace
            && ns != namespace
        {
            return Err(refused(&format!(
                "the body's metadata.namespace is `{ns}`, not the request's namespace; set metadata.namespace to `{namespace}` or leave it out"
            )));
        }
        // The object the grant must cover: the one the API server will act on.
        let creates = verb == KubeVerb::Create && r.subresource.is_none();
        let target = target(creates, r.name.as_deref(), &identity).map_err(|why| refused(&why))?;
        self.allows(plugin, namespace, &key, verb, target)
            .map_err(Denied)?;

        let mut path = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        path.push_str(&format!("/namespaces/{namespace}/{}", r.resource));
        // A create posts to the collection, a create of a subresource
        // (`pods/eviction`, `serviceaccounts/token`) to the object's subresource.
        let collection = matches!(verb, KubeVerb::List | KubeVerb::Watch) || creates;
        if let Some(n) = &r.name
            && !collection
        {
            path.push('/');
            path.push_str(n);
            if let Some(sub) = &r.subresource {
                path.push('/');
                path.push_str(sub);
            }
        }
        let mut query: Vec<(&str, String)> = Vec::new();
        let mut fields = r.field_selector.clone().unwrap_or_default();
        if collection
            && verb != KubeVerb::Create
            && let Some(n) = &r.name
        {
            if !fields.is_empty() {
                fields.push(',');
            }
            fields.push_str(&format!("metadata.name={n}"));
        }
        if let Some(l) = &r.label_selector {
            query.push(("labelSelector", l.clone()));
        }
        if !fields.is_empty() {
            query.push(("fieldSelector", fields));
        }
        if let Some(rv) = &r.resource_version {
            query.push(("resourceVersion", rv.clone()));
        }
        for (k, v) in &r.query {
            match QUERY_PARAMETERS.iter().find(|p| **p == k) {
                Some(p) => query.push((p, v.clone())),
                None => {
                    return Err(Invalid(format!(
                        "the query parameter `{k}` is not accepted; use the request's fields, or one of {}",
                        QUERY_PARAMETERS.join(", ")
                    )));
                }
            }
        }
        let mut watch = None;
        if verb == KubeVerb::Watch {
            let asked = r
                .timeout_seconds
                .map_or(DEFAULT_WATCH, |s| Duration::from_secs(u64::from(s.max(1))));
            let t = asked.min(MAX_WATCH);
            query.push(("watch", "true".to_owned()));
            query.push(("timeoutSeconds", t.as_secs().to_string()));
            watch = Some(t);
        }
        if matches!(verb, KubeVerb::Create | KubeVerb::Update | KubeVerb::Patch) {
            query.push(("fieldManager", "runner".to_owned()));
        }
        let uri = if query.is_empty() {
            path
        } else {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            format!("{path}?{}", q.join("&"))
        };
        Ok(Call {
            method: match verb {
                KubeVerb::Get | KubeVerb::List | KubeVerb::Watch => http::Method::GET,
                KubeVerb::Create => http::Method::POST,
                KubeVerb::Update => http::Method::PUT,
                KubeVerb::Patch => http::Method::PATCH,
                KubeVerb::Delete => http::Method::DELETE,
            },
            uri,
            body: r.body.as_ref().map(|b| b.clone().into_bytes()),
            content_type,
            watch,
        })
    }

    /// Whether a rule covers the request; the refusal names the closest rule's
    /// gaps and the rule to add.
    fn allows(
        &self,
        plugin: &str,
        namespace: &str,
        resource: &str,
        verb: KubeVerb,
        target: Target,
    ) -> Result<(), String> {
        let name = match target {
            Target::Named(n) => Some(n),
            Target::Generated | Target::Unnamed => None,
        };
        let verb_name = verb_str(verb);
        // The closest rule: fewest gaps, and among those one for this resource.
        let mut closest: Option<((usize, bool), usize, Vec<String>)> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let mut gaps = Vec::new();
            if !rule.namespaces.iter().any(|n| n == namespace) {
                gaps.push(format!("namespace `{namespace}`"));
            }
            if !rule.resources.iter().any(|r| r == resource) {
                gaps.push(format!("resource `{resource}`"));
            }
            if !rule.verbs.contains(&verb) {
                gaps.push(format!("verb `{verb_name}`"));
            }
            if !rule.names.is_empty() {
                match target {
                    Target::Named(n) if rule.names.iter().any(|x| x == n) => {}
                    Target::Named(n) => gaps.push(format!("object `{n}`")),
                    Target::Generated => gaps.push(format!(
                        "`{verb_name}` with metadata.generateName (the rule is limited to names, and the API server would choose the name)"
                    )),
                    Target::Unnamed => gaps.push(format!(
                        "`{verb_name}` without a name (the rule is limited to names)"
                    )),
                }
            }
            if gaps.is_empty() {
                return Ok(());
            }
            let score = (gaps.len(), !rule.resources.iter().any(|r| r == resource));
            if closest.as_ref().is_none_or(|(best, _, _)| score < *best) {
                closest = Some((score, i, gaps));
            }
        }
        let what = match name {
            Some(n) => format!("`{verb_name} {resource}` of `{n}` in namespace `{namespace}`"),
            None => format!("`{verb_name} {resource}` in namespace `{namespace}`"),
        };
        let names = name.map_or(String::new(), |n| format!(", names: [{n}]"));
        let hint = format!(
            "add a rule to `plugins.{plugin}.grants.kube` in the playbook, e.g. {{namespaces: [{namespace}], resources: [{resource}], verbs: [{verb_name}]{names}}}"
        );
        Err(match closest {
            None => format!(
                "Kubernetes access {what} is not granted to plugin `{plugin}` (it has no kube rules); {hint}"
            ),
            Some((_, i, gaps)) => format!(
                "Kubernetes access {what} is not granted to plugin `{plugin}`: the closest rule (#{}) does not cover the {}; {hint}",
                i + 1,
                gaps.join(", the ")
            ),
        })
    }
}

/// The object a request acts on, as the API server will see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'a> {
    Named(&'a str),
    /// A create whose body asks the API server to generate the name.
    Generated,
    /// A list, a watch, or a create whose body names nothing.
    Unnamed,
}

/// The object the API server will act on, or why the body and the request
/// disagree about it. A create (`creates`) makes the object its body names, so
/// the request's name, if any, must be the body's; every other request acts on
/// the request's name, and a name in its body must be that one.
fn target<'a>(
    creates: bool,
    asked: Option<&'a str>,
    identity: &'a body::Identity,
) -> Result<Target<'a>, String> {
    if creates {
        let named = identity.name.as_deref().filter(|n| !n.is_empty());
        return match (asked, named) {
            (Some(asked), Some(n)) if asked != n => Err(format!(
                "the body's metadata.name is `{n}`, not the request's name `{asked}`, and the API server creates the body's name; set metadata.name to `{asked}`"
            )),
            (Some(asked), None) => Err(format!(
                "the request names `{asked}`, but the body has no metadata.name{}, and the API server names the object from its body; set metadata.name to `{asked}`",
                if identity.generate_name {
                    " (only metadata.generateName, so the API server would choose the name)"
                } else {
                    ""
                }
            )),
            (_, Some(n)) => Ok(Target::Named(n)),
            (None, None) if identity.generate_name => Ok(Target::Generated),
            (None, None) => Ok(Target::Unnamed),
        };
    }
    if let Some(n) = &identity.name
        && Some(n.as_str()) != asked
    {
        return Err(format!(
            "the body's metadata.name is `{n}`, not the request's name `{}`; set metadata.name to `{}` or leave it out",
            asked.unwrap_or_default(),
            asked.unwrap_or_default()
        ));
    }
    Ok(asked.map_or(Target::Unnamed, Target::Named))
}

/// `plural[.group][/subresource]`, the way grants name resources.
fn resource_key(resource: &str, group: &str, sub: Option<&str>) -> String {
    let mut k = resource.to_owned();
    if !group.is_empty() {
        k.push('.');
        k.push_str(group);
    }
    if let Some(s) = sub {
        k.push('/');
        k.push_str(s);
    }
    k
}

fn verb_str(v: KubeVerb) -> &'static str {
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

fn parse_verb(v: &str) -> Result<KubeVerb, String> {
    Ok(match v {
        "get" => KubeVerb::Get,
        "list" => KubeVerb::List,
        "watch" => KubeVerb::Watch,
        "create" => KubeVerb::Create,
        "update" => KubeVerb::Update,
        "patch" => KubeVerb::Patch,
        "delete" => KubeVerb::Delete,
        other => {
            return Err(format!(
                "`{other}` is not a Kubernetes verb; use get, list, watch, create, update, patch or delete"
            ));
        }
    })
}

/// `v1` → ("", "v1"); `apps/v1` → ("apps", "v1").
fn parse_api_version(s: &str) -> Result<(&str, &str), String> {
    let (group, version) = s.split_once('/').unwrap_or(("", s));
    let version_ok = version.starts_with('v')
        && version.len() > 1
        && version
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let group_ok = (group.is_empty() && !s.contains('/')) || is_subdomain(group);
    if version_ok && group_ok {
        Ok((group, version))
    } else {
        Err(format!(
            "`{s}` is not an API version; write `v1` for the core group or `GROUP/VERSION`, e.g. `apps/v1`"
        ))
    }
}

/// Lower-case letters and digits: a resource's plural name or a subresource.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// A DNS label (RFC 1123): namespaces.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS subdomain: API groups.
fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

/// An object name: a DNS subdomain, which rules out `/`, `..`, `?` and `%`.
fn is_object_name(s: &str) -> bool {
    is_subdomain(s)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
