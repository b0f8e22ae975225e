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
//! Grant, parsed once at load by [`Kube`] and checked per request: a list of
//! rules, each with `namespaces`, `resources` (plural, `.group` for non-core
//! groups, `/subresource`: `deployments.apps`, `deployments.apps/scale`,
//! `pods/log`), `verbs` and optionally `names`. A request is allowed when one rule covers its namespace,
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
//!
//! The files: [`check`] turns a plugin's request into a call or a refusal (the
//! grant rules and the path built from checked parts), `body` reads what a
//! request body says about its object, [`cluster`] holds the run's connection
//! and sends allowed calls, and [`credentials`] keeps the cluster's credentials
//! out of folder grants.

use std::time::Duration;

mod body;
pub mod check;
pub mod cluster;
pub mod credentials;

pub use check::{Call, Kube, KubeGrant, QUERY_PARAMETERS, Refusal, Request};
pub use cluster::{Cluster, Response};
pub use credentials::{check_fs_grant, credential_paths};

/// Most bytes of a response body handed to a plugin.
pub const MAX_RESPONSE: usize = 16 << 20;
/// Most bytes of a request body.
pub const MAX_BODY: usize = 4 << 20;
/// Longest watch; the default when the plugin names none is 60 s.
pub const MAX_WATCH: Duration = Duration::from_secs(300);
const DEFAULT_WATCH: Duration = Duration::from_secs(60);
