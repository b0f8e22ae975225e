//! The grant check's deny paths: every part of a request a rule must cover,
//! bodies that name another object, and paths nothing can be smuggled into.

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
    r.body =
        Some(r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1"}}"#.into());
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
fn no_rules_no_access() {
    let e = KubeGrant::default()
        .check("k", &req("get", "v1", "pods", "prod", Some("p")))
        .unwrap_err()
        .message()
        .to_owned();
    assert!(e.contains("has no kube rules"), "{e}");
}

#[test]
fn the_capability_reports_each_malformed_item_and_keeps_the_rule_whole() {
    use crate::caps::capability::Spot;
    use KubeVerb::*;
    assert_eq!(Kube::KIND, "kube");
    let written = rule(
        &["prod", ""],
        &["pods", "deployments apps"],
        &[Get],
        &["a b"],
    );
    let p = Kube::parse(&written);
    let at: Vec<(Spot, &str)> = p
        .problems
        .iter()
        .map(|p| (p.at, p.message.as_str()))
        .collect();
    assert_eq!(
        at,
        [
            (
                Spot::Item("namespaces", 1),
                "`` is not a valid entry of `namespaces`"
            ),
            (
                Spot::Item("resources", 1),
                "`deployments apps` is not a valid entry of `resources`"
            ),
            (
                Spot::Item("names", 0),
                "`a b` is not a valid entry of `names`"
            ),
        ]
    );
    // Kept whole: dropping `a b` would leave `names` empty, which means every
    // object.
    let g = KubeGrant::new(&[written]);
    assert!(
        g.check("k", &req("get", "v1", "pods", "prod", Some("web")))
            .is_err()
    );
    assert!(
        Kube::parse(&rule(&["prod"], &["pods"], &[Get], &[]))
            .problems
            .is_empty()
    );
}
