//! The `kube` capability: Kubernetes API calls made by the host, with the user's
//! credentials, for the namespaces, resources, verbs and objects a playbook
//! granted.
//!
//! Threat model: the plugin is hostile and wants the cluster: read Secrets,
//! change workloads it was not given, act in other namespaces or cluster-wide,
//! or take the credentials themselves and use them later. What must never
//! happen: a request that no grant rule covers reaches the API server; a request
//! reaches a path the host did not build from checked parts (no `..`, no query
//! smuggled in a name); the kubeconfig, a token or a client key enters the
//! plugin (the host holds the connection; the plugin sees API objects only);
//! a body makes the API server act on another object or namespace than the
//! one checked.
//!
//! Grant, checked per request: a list of rules, each with `namespaces`,
//! `resources` (plural, `.group` for non-core groups, `/subresource`:
//! `deployments.apps`, `deployments.apps/scale`, `pods/log`), `verbs` and
//! optionally `names`. A request is allowed when one rule covers its namespace,
//! resource, verb and name. As in Kubernetes RBAC, a resource does not cover its
//! subresources, and a rule limited to names does not cover `list`, `watch` or
//! `create` without a name (a `list`/`watch` by name is sent with the field
//! selector `metadata.name=NAME`). Only namespaced resources can be granted.
//!
//! Bodies, checked before the grant (`body` has the parsing rules): the name a
//! `create` is checked by is its body's `metadata.name`, the object the API
//! server creates; a name beside the body must be the same, and a body that
//! leaves the name to `metadata.generateName` is not covered by a rule limited
//! to names. An `update`, a `patch` and a create of a subresource
//! (`pods/eviction`, sent to `pods/NAME/eviction`) act on the request's name,
//! and a `metadata.name` in their body must be that name. A `metadata.namespace`
//! in any body must be the request's namespace. A JSON patch may not change
//! (`add`, `replace`, `remove`, `move`, `copy`) the document root, `/metadata`,
//! `/metadata/name` or `/metadata/namespace`. Bodies that are not JSON objects
//! (JSON lists for JSON patches), whose `metadata`, `metadata.name` or
//! `metadata.namespace` has another type, that repeat a key in one object, or
//! whose keys at the top level or in `metadata` are not ASCII or spell
//! `metadata`, `name`, `namespace` or `generateName` in another case, are
//! refused. Each such refusal fails the step as denied and names what to
//! change. The host does not interpret strategic-merge directives such as
//! `$patch`; what a granted object's body contains (a pod's image, its service
//! account) is the user's trust decision, made by granting that object.
//!
//! Connection: the cluster is chosen by the runner (`--kube-context`, else the
//! kubeconfig's current context from `KUBECONFIG` or `~/.kube/config`, else the
//! in-cluster service account), connected on the first call and shared by the
//! steps of the run. Writes carry `fieldManager=runner`, so the cluster's
//! managed fields show who changed what. A `watch` is a long poll: it returns the
//! events that arrived first, or none at its timeout (at most 300 s; the step's
//! deadline cuts it shorter).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;

use super::grants::{KubeGrant as Rule, KubeVerb};

mod body;

/// Most bytes of a response body handed to a plugin.
pub const MAX_RESPONSE: usize = 16 << 20;
/// Most bytes of a request body.
pub const MAX_BODY: usize = 4 << 20;
/// Longest watch; the default when the plugin names none is 60 s.
pub const MAX_WATCH: Duration = Duration::from_secs(300);
const DEFAULT_WATCH: Duration = Duration::from_secs(60);

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

/// The API server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl KubeGrant {
    pub fn new(rules: &[Rule]) -> KubeGrant {
        KubeGrant {
            rules: rules.to_vec(),
        }
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

/// Files holding Kubernetes credentials on this machine: the kubeconfig files
/// (`KUBECONFIG`, else `~/.kube/config`) and the pod's service-account folder.
pub fn credential_paths() -> Vec<std::path::PathBuf> {
    let mut paths: Vec<std::path::PathBuf> = match std::env::var_os("KUBECONFIG") {
        Some(list) => std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => std::env::var_os("HOME")
            .map(|h| vec![std::path::Path::new(&h).join(".kube/config")])
            .unwrap_or_default(),
    };
    paths.push("/var/run/secrets/kubernetes.io/serviceaccount".into());
    paths
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect()
}

/// Refuses a folder grant that would let a plugin read cluster credentials:
/// the folder, or anything in it, is one of `credentials`.
pub fn check_fs_grant(
    plugin: &str,
    folder: &std::path::Path,
    credentials: &[std::path::PathBuf],
) -> Result<(), String> {
    let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
    match credentials.iter().find(|c| c.starts_with(&folder)) {
        Some(c) => Err(format!(
            "plugin `{plugin}` is granted the folder `{}`, which holds the Kubernetes credentials `{}`; grant a narrower folder (plugins reach the cluster through `grants.kube`, never through the kubeconfig)",
            folder.display(),
            c.display()
        )),
        None => Ok(()),
    }
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

/// The cluster of a run: which kubeconfig context, and the connection, made on
/// the first call and shared by every step.
#[derive(Default)]
pub struct Cluster {
    context: Option<String>,
    kubeconfig: Option<std::path::PathBuf>,
    client: tokio::sync::OnceCell<Result<kube::Client, String>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("context", &self.context)
            .field("connected", &self.client.initialized())
            .finish()
    }
}

impl Cluster {
    /// `context`: a kubeconfig context; `None`: the current one (or in-cluster).
    /// `kubeconfig`: a file to read instead of KUBECONFIG / ~/.kube/config.
    pub fn new(context: Option<String>, kubeconfig: Option<std::path::PathBuf>) -> Arc<Cluster> {
        Arc::new(Cluster {
            context,
            kubeconfig,
            client: tokio::sync::OnceCell::new(),
        })
    }

    /// The kubeconfig file this cluster is read from, when not the default.
    pub fn kubeconfig(&self) -> Option<&std::path::Path> {
        self.kubeconfig.as_deref()
    }

    /// Reads the kubeconfig (or in-cluster config) and sets up the client,
    /// without contacting the server: a missing kubeconfig or an unknown
    /// context is found before the run starts.
    pub async fn prepare(&self) -> Result<(), String> {
        self.client().await.map(|_| ())
    }

    async fn client(&self) -> Result<&kube::Client, String> {
        self.client
            .get_or_init(|| connect(self.context.clone(), self.kubeconfig.clone()))
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Sends an allowed call. An error is a connection problem; the API
    /// server's own refusals (403, 404, 409, …) are responses.
    pub async fn send(&self, call: &Call) -> Result<Response, String> {
        let client = self.client().await?;
        let mut req = http::Request::builder()
            .method(call.method.clone())
            .uri(&call.uri)
            .header(http::header::ACCEPT, "application/json");
        if let Some(ct) = call.content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(kube::client::Body::from(
                call.body.clone().unwrap_or_default(),
            ))
            .map_err(|e| format!("cannot build the Kubernetes request: {e}"))?;
        let exchange = async {
            let res = client
                .send(req)
                .await
                .map_err(|e| format!("the Kubernetes API server did not answer: {e}"))?;
            let status = res.status().as_u16();
            let body = if call.watch.is_some() && status == 200 {
                first_events(res.into_body()).await?
            } else {
                read_all(res.into_body()).await?
            };
            Ok(Response { status, body })
        };
        match call.watch {
            // The server ends the watch at `timeoutSeconds`; this is the backstop.
            Some(t) => tokio::time::timeout(t + Duration::from_secs(10), exchange)
                .await
                .unwrap_or_else(|_| {
                    Ok(Response {
                        status: 200,
                        body: "[]".to_owned(),
                    })
                }),
            None => exchange.await,
        }
    }
}

async fn connect(
    context: Option<String>,
    kubeconfig: Option<std::path::PathBuf>,
) -> Result<kube::Client, String> {
    let options = kube::config::KubeConfigOptions {
        context: context.clone(),
        ..Default::default()
    };
    let config = match (&kubeconfig, &context) {
        (Some(file), _) => {
            let parsed = kube::config::Kubeconfig::read_from(file).map_err(|e| {
                format!("cannot read the kubeconfig `{}`: {e}", file.display())
            })?;
            kube::Config::from_custom_kubeconfig(parsed, &options)
                .await
                .map_err(|e| {
                    format!(
                        "cannot use the kubeconfig `{}`{}: {e}; check the environment file's kubeconfig and kube_context",
                        file.display(),
                        context.as_deref().map(|c| format!(" with context `{c}`")).unwrap_or_default()
                    )
                })?
        }
        (None, Some(c)) => kube::Config::from_kubeconfig(&options).await.map_err(|e| {
            format!(
                "cannot use the kube context `{c}`: {e}; check `--kube-context` / RUNNER_KUBE_CONTEXT and the kubeconfig (KUBECONFIG or ~/.kube/config)"
            )
        })?,
        (None, None) => kube::Config::infer().await.map_err(|e| {
            format!(
                "no Kubernetes cluster configured: {e}; set KUBECONFIG (or ~/.kube/config) and choose a context with `--kube-context`"
            )
        })?,
    };
    let mut config = config;
    config.connect_timeout = Some(Duration::from_secs(10));
    let server = config.cluster_url.to_string();
    kube::Client::try_from(config).map_err(|e| {
        format!("cannot set up the connection to the Kubernetes API server {server}: {e}")
    })
}

async fn read_all(mut body: kube::client::Body) -> Result<String, String> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| format!("the Kubernetes API server's answer broke off: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_RESPONSE {
                return Err(format!(
                    "the Kubernetes API server's answer is larger than {} MiB; narrow the request (a label or field selector)",
                    MAX_RESPONSE >> 20
                ));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Reads a watch stream until at least one whole event has arrived, takes the
/// ones already received with it, and returns them as a JSON array (`[]` when the
/// watch ended without events).
async fn first_events(mut body: kube::client::Body) -> Result<String, String> {
    use futures_util::FutureExt;
    let mut buf = Vec::new();
    let mut events = Vec::new();
    loop {
        let frame = if events.is_empty() {
            body.frame().await
        } else {
            // Events already received come along; do not wait for more.
            match body.frame().now_or_never() {
                Some(f) => f,
                None => break,
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| format!("the Kubernetes watch broke off: {e}"))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > MAX_RESPONSE {
                return Err(format!(
                    "a Kubernetes watch event is larger than {} MiB",
                    MAX_RESPONSE >> 20
                ));
            }
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                if !line.is_empty() {
                    let event: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                        format!("the Kubernetes watch sent something that is not JSON: {e}")
                    })?;
                    events.push(event);
                }
            }
        }
    }
    Ok(serde_json::Value::Array(events).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ns: &[&str], res: &[&str], verbs: &[KubeVerb], names: &[&str]) -> Rule {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Rule {
            namespaces: s(ns),
            resources: s(res),
            verbs: verbs.to_vec(),
            names: s(names),
        }
    }

    fn req(verb: &str, api: &str, res: &str, ns: &str, name: Option<&str>) -> Request {
        Request {
            verb: verb.into(),
            api_version: api.into(),
            resource: res.into(),
            namespace: Some(ns.into()),
            name: name.map(Into::into),
            ..Request::default()
        }
    }

    fn grant() -> KubeGrant {
        use KubeVerb::*;
        KubeGrant::new(&[
            rule(
                &["prod"],
                &["deployments.apps"],
                &[Get, List, Watch, Patch],
                &[],
            ),
            rule(&["prod"], &["deployments.apps/scale"], &[Patch], &["web"]),
            rule(&["prod", "staging"], &["pods"], &[List], &[]),
        ])
    }

    #[test]
    fn granted_requests_become_paths_built_from_checked_parts() {
        let g = grant();
        let c = g
            .check(
                "k",
                &req("get", "apps/v1", "deployments", "prod", Some("web")),
            )
            .unwrap();
        assert_eq!(c.method, http::Method::GET);
        assert_eq!(c.uri, "/apis/apps/v1/namespaces/prod/deployments/web");
        let c = g
            .check("k", &req("list", "v1", "pods", "staging", None))
            .unwrap();
        assert_eq!(c.uri, "/api/v1/namespaces/staging/pods");
        let mut r = req("patch", "apps/v1", "deployments", "prod", Some("web"));
        r.subresource = Some("scale".into());
        r.patch_type = Some("merge".into());
        r.body = Some(r#"{"spec":{"replicas":3}}"#.into());
        let c = g.check("k", &r).unwrap();
        assert_eq!(c.method, http::Method::PATCH);
        assert_eq!(
            c.uri,
            "/apis/apps/v1/namespaces/prod/deployments/web/scale?fieldManager=runner"
        );
        assert_eq!(c.content_type, Some("application/merge-patch+json"));
    }

    #[test]
    fn watches_are_bounded_and_by_name_become_field_selectors() {
        let g = grant();
        let mut r = req("watch", "apps/v1", "deployments", "prod", Some("web"));
        r.resource_version = Some("42".into());
        r.timeout_seconds = Some(10_000);
        let c = g.check("k", &r).unwrap();
        assert_eq!(c.watch, Some(MAX_WATCH));
        assert_eq!(
            c.uri,
            "/apis/apps/v1/namespaces/prod/deployments?fieldSelector=metadata.name%3Dweb&resourceVersion=42&watch=true&timeoutSeconds=300"
        );
        let mut r = req("list", "v1", "pods", "prod", None);
        r.label_selector = Some("app=web,track in (stable)".into());
        let c = g.check("k", &r).unwrap();
        assert_eq!(
            c.uri,
            "/api/v1/namespaces/prod/pods?labelSelector=app%3Dweb%2Ctrack%20in%20%28stable%29"
        );
    }

    #[test]
    fn each_missing_part_of_a_grant_is_refused_and_named() {
        let g = grant();
        let cases = [
            (
                req("get", "apps/v1", "deployments", "staging", Some("web")),
                "namespace `staging`",
            ),
            (
                req("delete", "apps/v1", "deployments", "prod", Some("web")),
                "verb `delete`",
            ),
            (
                req("get", "v1", "secrets", "prod", Some("db")),
                "resource `secrets`",
            ),
            // The core group's `deployments` is not `deployments.apps`.
            (
                req("get", "v1", "deployments", "prod", Some("web")),
                "resource `deployments`",
            ),
            (
                req("get", "apps/v1", "replicasets", "prod", Some("web")),
                "resource `replicasets.apps`",
            ),
        ];
        for (r, gap) in cases {
            let e = g.check("k", &r).unwrap_err().message().to_owned();
            assert!(
                e.contains("is not granted to plugin `k`") && e.contains(gap),
                "{gap}: {e}"
            );
            assert!(e.contains("add a rule to `plugins.k.grants.kube`"), "{e}");
        }
    }

    #[test]
    fn a_resource_does_not_cover_its_subresources_nor_names_other_objects() {
        let g = grant();
        let mut r = req("get", "apps/v1", "deployments", "prod", Some("web"));
        r.subresource = Some("status".into());
        let e = g.check("k", &r).unwrap_err().message().to_owned();
        assert!(e.contains("resource `deployments.apps/status`"), "{e}");
        let mut r = req("patch", "apps/v1", "deployments", "prod", Some("api"));
        r.subresource = Some("scale".into());
        r.body = Some("{}".into());
        let e = g.check("k", &r).unwrap_err().message().to_owned();
        assert!(e.contains("object `api`"), "{e}");
    }

    #[test]
    fn name_limited_rules_cover_neither_unnamed_lists_nor_creates_of_other_names() {
        use KubeVerb::*;
        let g = KubeGrant::new(&[rule(
            &["prod"],
            &["configmaps"],
            &[List, Create],
            &["flags"],
        )]);
        let e = g
            .check("k", &req("list", "v1", "configmaps", "prod", None))
            .unwrap_err()
            .message()
            .to_owned();
        assert!(e.contains("without a name"), "{e}");
        let c = g
            .check("k", &req("list", "v1", "configmaps", "prod", Some("flags")))
            .unwrap();
        assert_eq!(
            c.uri,
            "/api/v1/namespaces/prod/configmaps?fieldSelector=metadata.name%3Dflags"
        );
        let mut r = req("create", "v1", "configmaps", "prod", None);
        r.body = Some(r#"{"metadata":{"name":"other"}}"#.into());
        assert!(
            g.check("k", &r)
                .unwrap_err()
                .message()
                .contains("object `other`")
        );
        r.body = Some(r#"{"metadata":{"generateName":"flags"}}"#.into());
        assert!(
            g.check("k", &r)
                .unwrap_err()
                .message()
                .contains("`create` with metadata.generateName (the rule is limited to names")
        );
        r.body = Some(r#"{"metadata":{}}"#.into());
        assert!(
            g.check("k", &r)
                .unwrap_err()
                .message()
                .contains("without a name")
        );
        r.body = Some(r#"{"metadata":{"name":"flags"}}"#.into());
        let c = g.check("k", &r).unwrap();
        assert_eq!(
            (c.method, c.uri.as_str()),
            (
                http::Method::POST,
                "/api/v1/namespaces/prod/configmaps?fieldManager=runner"
            )
        );
    }

    /// A `create configmaps` in `prod` limited to `flags`, and a patch and an
    /// update of deployment `web`.
    fn named_grant() -> KubeGrant {
        use KubeVerb::*;
        KubeGrant::new(&[
            rule(&["prod"], &["configmaps"], &[Create], &["flags"]),
            rule(&["prod"], &["deployments.apps"], &[Update, Patch], &["web"]),
            rule(&["prod"], &["pods/eviction"], &[Create], &["web-1"]),
        ])
    }

    fn create(name: Option<&str>, body: &str) -> Request {
        let mut r = req("create", "v1", "configmaps", "prod", name);
        r.body = Some(body.into());
        r
    }

    fn denied(g: &KubeGrant, r: &Request) -> String {
        match g.check("k", r) {
            Err(Refusal::Denied(m)) => m,
            other => panic!("{r:?}: expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn a_create_is_checked_against_the_name_the_api_server_creates() {
        let g = named_grant();
        // The control: a body naming the granted object, with or without the
        // same name beside it.
        for name in [None, Some("flags")] {
            let c = g
                .check("k", &create(name, r#"{"metadata":{"name":"flags"}}"#))
                .unwrap();
            assert_eq!(
                c.uri,
                "/api/v1/namespaces/prod/configmaps?fieldManager=runner"
            );
        }
        assert_eq!(
            denied(
                &g,
                &create(Some("flags"), r#"{"metadata":{"name":"other"}}"#)
            ),
            "Kubernetes `create configmaps` in namespace `prod` is refused for plugin `k`: the body's metadata.name is `other`, not the request's name `flags`, and the API server creates the body's name; set metadata.name to `flags`"
        );
        assert_eq!(
            denied(
                &g,
                &create(Some("flags"), r#"{"metadata":{"generateName":"flags-"}}"#)
            ),
            "Kubernetes `create configmaps` in namespace `prod` is refused for plugin `k`: the request names `flags`, but the body has no metadata.name (only metadata.generateName, so the API server would choose the name), and the API server names the object from its body; set metadata.name to `flags`"
        );
        assert!(
            denied(&g, &create(Some("flags"), r#"{"data":{}}"#))
                .contains("the request names `flags`, but the body has no metadata.name, and")
        );
        assert_eq!(
            denied(
                &g,
                &create(
                    None,
                    r#"{"metadata":{"name":"flags","namespace":"kube-system"}}"#
                )
            ),
            "Kubernetes `create configmaps` in namespace `prod` is refused for plugin `k`: the body's metadata.namespace is `kube-system`, not the request's namespace; set metadata.namespace to `prod` or leave it out"
        );
        // The same namespace, written out, is fine.
        assert!(
            g.check(
                "k",
                &create(None, r#"{"metadata":{"name":"flags","namespace":"prod"}}"#)
            )
            .is_ok()
        );
        // With both, the API server uses the name.
        assert!(
            g.check(
                "k",
                &create(None, r#"{"metadata":{"name":"flags","generateName":"x-"}}"#)
            )
            .is_ok()
        );
        for (body, part) in [
            ("[]", "the body is a list, not a JSON object"),
            (
                r#"{"metadata":"flags"}"#,
                "metadata is a string, not an object",
            ),
            (
                r#"{"metadata":{"name":"flags","name":"other"}}"#,
                "the body repeats the key `name`",
            ),
            (
                r#"{"metadata":{"name":"flags","Name":"other"}}"#,
                "the key `Name` in metadata",
            ),
        ] {
            let m = denied(&g, &create(None, body));
            assert!(
                m.starts_with(
                    "Kubernetes `create configmaps` in namespace `prod` is refused for plugin `k`: "
                ) && m.contains(part),
                "{body}: {m}"
            );
        }
    }

    #[test]
    fn an_update_or_patch_body_names_the_requests_object_or_none() {
        let g = named_grant();
        let mut r = req("update", "apps/v1", "deployments", "prod", Some("web"));
        r.body = Some(r#"{"metadata":{"name":"web","namespace":"prod"},"spec":{}}"#.into());
        let c = g.check("k", &r).unwrap();
        assert_eq!(
            (c.method, c.uri.as_str()),
            (
                http::Method::PUT,
                "/apis/apps/v1/namespaces/prod/deployments/web?fieldManager=runner"
            )
        );
        r.body = Some(r#"{"metadata":{"name":"api"}}"#.into());
        assert_eq!(
            denied(&g, &r),
            "Kubernetes `update deployments.apps` in namespace `prod` is refused for plugin `k`: the body's metadata.name is `api`, not the request's name `web`; set metadata.name to `web` or leave it out"
        );
        let mut r = req("patch", "apps/v1", "deployments", "prod", Some("web"));
        r.body = Some(r#"{"spec":{"replicas":2}}"#.into());
        assert!(g.check("k", &r).is_ok());
        r.body = Some(r#"{"metadata":{"namespace":"kube-system"}}"#.into());
        assert!(denied(&g, &r).contains("metadata.namespace is `kube-system`"));
        r.body = Some(r#"{"metadata":{"name":null}}"#.into());
        assert!(denied(&g, &r).contains("metadata.name is null, not a string"));
        r.patch_type = Some("json".into());
        r.body = Some(r#"[{"op":"replace","path":"/metadata/name","value":"api"}]"#.into());
        assert!(denied(&g, &r).contains("would change the object's name or namespace"));
        r.body = Some(r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#.into());
        assert!(g.check("k", &r).is_ok());
    }

    #[test]
    fn a_create_of_a_subresource_goes_to_the_named_objects_subresource() {
        let g = named_grant();
        let mut r = req("create", "v1", "pods", "prod", Some("web-1"));
        r.subresource = Some("eviction".into());
        r.body = Some(
            r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1"}}"#.into(),
        );
        let c = g.check("k", &r).unwrap();
        assert_eq!(
            (c.method, c.uri.as_str()),
            (
                http::Method::POST,
                "/api/v1/namespaces/prod/pods/web-1/eviction?fieldManager=runner"
            ),
            "never the pods collection: that would create a pod"
        );
        r.body = Some(r#"{"metadata":{"name":"web-2"}}"#.into());
        assert!(
            denied(&g, &r)
                .contains("the body's metadata.name is `web-2`, not the request's name `web-1`")
        );
    }

    #[test]
    fn cluster_scoped_requests_are_refused() {
        use KubeVerb::*;
        let g = KubeGrant::new(&[rule(&["prod"], &["nodes", "namespaces"], &[List], &[])]);
        let mut r = req("list", "v1", "nodes", "prod", None);
        r.namespace = None;
        let e = g.check("k", &r).unwrap_err().message().to_owned();
        assert!(
            e.contains("cluster-scoped") && e.contains("namespaced resources only"),
            "{e}"
        );
    }

    #[test]
    fn nothing_can_be_smuggled_into_the_path() {
        let g = grant();
        let bad = [
            req(
                "get",
                "apps/v1",
                "deployments",
                "prod",
                Some("../../secrets/db"),
            ),
            req("get", "apps/v1", "deployments", "prod", Some("web?watch=1")),
            req("get", "apps/v1", "deployments", "prod", Some("web%2F..")),
            req("get", "apps/v1", "deployments", "prod", Some("..")),
            req(
                "get",
                "apps/v1",
                "deployments",
                "prod/../kube-system",
                Some("web"),
            ),
            req("get", "apps/v1", "deployments/..", "prod", Some("web")),
            req("get", "../v1", "deployments", "prod", Some("web")),
            req(
                "get",
                "apps/v1/namespaces",
                "deployments",
                "prod",
                Some("web"),
            ),
            req("get", "apps/", "deployments", "prod", Some("web")),
            req("GET", "apps/v1", "deployments", "prod", Some("web")),
            req("deletecollection", "apps/v1", "deployments", "prod", None),
        ];
        for r in bad {
            let e = g.check("k", &r).unwrap_err().message().to_owned();
            assert!(!e.is_empty(), "{r:?}");
        }
    }

    #[test]
    fn only_listed_query_parameters_pass() {
        let g = grant();
        let mut r = req("list", "v1", "pods", "prod", None);
        r.query = vec![
            ("tailLines".into(), "10".into()),
            ("pretty".into(), "1".into()),
        ];
        let e = g.check("k", &r).unwrap_err();
        assert!(
            matches!(&e, Refusal::Invalid(m) if m.contains("`pretty` is not accepted")),
            "{e:?}"
        );
        r.query.pop();
        assert!(g.check("k", &r).unwrap().uri.ends_with("?tailLines=10"));
    }

    #[test]
    fn bodies_and_patch_types_are_checked() {
        let g = grant();
        let mut r = req("patch", "apps/v1", "deployments", "prod", Some("web"));
        assert!(
            g.check("k", &r)
                .unwrap_err()
                .message()
                .contains("needs a body")
        );
        r.body = Some("{not json".into());
        assert!(g.check("k", &r).unwrap_err().message().contains("not JSON"));
        r.body = Some("{}".into());
        r.patch_type = Some("xml".into());
        assert!(
            g.check("k", &r)
                .unwrap_err()
                .message()
                .contains("not a patch type")
        );
        r.patch_type = None;
        assert_eq!(
            g.check("k", &r).unwrap().content_type,
            Some("application/strategic-merge-patch+json")
        );
        let mut r = req("get", "apps/v1", "deployments", "prod", Some("web"));
        r.body = Some("{}".into());
        assert!(
            g.check("k", &r)
                .unwrap_err()
                .message()
                .contains("takes no body")
        );
        let r = req("get", "apps/v1", "deployments", "prod", None);
        assert!(
            g.check("k", &r)
                .unwrap_err()
                .message()
                .contains("needs the object's name")
        );
    }

    #[test]
    fn folders_holding_credentials_cannot_be_granted() {
        let creds = vec![std::path::PathBuf::from("/home/me/.kube/config")];
        for bad in [
            "/",
            "/home",
            "/home/me",
            "/home/me/.kube",
            "/home/me/.kube/config",
        ] {
            let e = check_fs_grant("p", std::path::Path::new(bad), &creds).unwrap_err();
            assert!(e.contains("holds the Kubernetes credentials"), "{bad}: {e}");
        }
        for fine in ["/home/me/work", "/home/mel", "/tmp"] {
            assert!(
                check_fs_grant("p", std::path::Path::new(fine), &creds).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn no_rules_no_access() {
        let e = KubeGrant::default()
            .check("k", &req("get", "v1", "pods", "prod", Some("p")))
            .unwrap_err()
            .message()
            .to_owned();
        assert!(e.contains("has no kube rules"), "{e}");
    }
}
