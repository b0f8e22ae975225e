//! Kubernetes writes whose body names another object or namespace than the
//! request and the grant (issue 15, item 5). The `kube-create` plugin sends the
//! request its input describes to a stand-in API server on loopback that
//! records every request: a refused one must end the step as denied with the
//! host's message and never reach it; the control cases show that the same
//! grant lets the matching request through.

use super::*;

use runner::caps::kube::{Cluster, KubeGrant};
use runner::playbook::model::{KubeGrant as Rule, KubeVerb};

/// A stand-in for the Kubernetes API server on 127.0.0.1: records the method,
/// path and body of each request and answers `201 {}`; stopped when dropped.
struct FakeApi {
    kubeconfig: PathBuf,
    server: std::sync::Arc<tiny_http::Server>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApi {
    fn start() -> FakeApi {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, log) = (server.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for mut request in s.incoming_requests() {
                let mut body = String::new();
                let _ = std::io::Read::read_to_string(request.as_reader(), &mut body);
                log.lock().unwrap().push((
                    request.method().to_string(),
                    request.url().to_owned(),
                    body,
                ));
                let json =
                    tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
                let _ = request.respond(
                    tiny_http::Response::from_string("{}")
                        .with_status_code(201)
                        .with_header(json),
                );
            }
        });
        let kubeconfig = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "fake-api-{}-{}.yaml",
            std::process::id(),
            addr.port()
        ));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n"
            ),
        )
        .unwrap();
        FakeApi {
            kubeconfig,
            server,
            seen,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<(String, String, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// Grants `rules` on this server's cluster.
    fn granted(&self, rules: &[Rule]) -> Granted {
        Granted {
            kube: KubeGrant::new(rules),
            cluster: Some(Cluster::new(None, Some(self.kubeconfig.clone()))),
            ..granted(&[])
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn rule(resources: &[&str], verbs: &[KubeVerb], names: &[&str]) -> Rule {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
    Rule {
        namespaces: vec!["prod".into()],
        resources: s(resources),
        verbs: verbs.to_vec(),
        names: s(names),
    }
}

/// Creating config maps in `prod`, only the one named `flags`.
fn create_flags() -> Vec<Rule> {
    vec![rule(&["configmaps"], &[KubeVerb::Create], &["flags"])]
}

/// `kube-create` with `input` (namespace `prod`, core `configmaps` unless
/// given), against a fresh stand-in server; the result and what reached it.
fn send(rules: &[Rule], input: Value) -> (StepResult, Vec<(String, String, String)>) {
    let api = FakeApi::start();
    let mut full = json!({
        "verb": "create",
        "api_version": "v1",
        "resource": "configmaps",
        "namespace": "prod",
    });
    if let (Some(full), Some(input)) = (full.as_object_mut(), input.as_object()) {
        full.extend(input.clone());
    }
    let r = run_with("kube-create", full, limits(10_000, 64), api.granted(rules));
    let seen = api.requests();
    (r, seen)
}

/// Runs `input` under `rules` and asserts that it is denied with `message`
/// and never reaches the API server.
fn denied(rules: &[Rule], input: Value, message: &str) {
    let (r, seen) = send(rules, input.clone());
    assert_eq!(
        failure(r),
        StepFailure::Denied(message.to_owned()),
        "{input}"
    );
    assert_eq!(
        seen,
        vec![],
        "{input}: a refused request reached the API server"
    );
}

const CREATE: &str =
    "Kubernetes `create configmaps` in namespace `prod` is refused for plugin `hostile`: ";

#[test]
fn a_create_named_by_its_body_reaches_the_api_server() {
    // The control case: the refusals below are for their reasons.
    for input in [
        json!({ "body": r#"{"metadata":{"name":"flags"},"data":{"on":"1"}}"# }),
        json!({ "name": "flags", "body": r#"{"metadata":{"name":"flags","namespace":"prod"}}"# }),
    ] {
        let (r, seen) = send(&create_flags(), input.clone());
        let out = r.outcome.unwrap_or_else(|f| panic!("{input}: {f:?}"));
        assert_eq!(out.outputs["status"], json!(201));
        let body = input["body"].as_str().unwrap().to_owned();
        assert_eq!(
            seen,
            vec![(
                "POST".to_owned(),
                "/api/v1/namespaces/prod/configmaps?fieldManager=runner".to_owned(),
                body
            )]
        );
    }
}

#[test]
fn a_create_whose_body_names_another_object_is_denied() {
    denied(
        &create_flags(),
        json!({ "name": "flags", "body": r#"{"metadata":{"name":"other"}}"# }),
        &format!(
            "{CREATE}the body's metadata.name is `other`, not the request's name `flags`, and the API server creates the body's name; set metadata.name to `flags`"
        ),
    );
    // Without a name beside it, the body's name is checked against the grant.
    denied(
        &create_flags(),
        json!({ "body": r#"{"metadata":{"name":"other"}}"# }),
        "Kubernetes access `create configmaps` of `other` in namespace `prod` is not granted to plugin `hostile`: the closest rule (#1) does not cover the object `other`; add a rule to `plugins.hostile.grants.kube` in the playbook, e.g. {namespaces: [prod], resources: [configmaps], verbs: [create], names: [other]}",
    );
}

#[test]
fn a_create_whose_body_names_another_namespace_is_denied() {
    denied(
        &create_flags(),
        json!({ "body": r#"{"metadata":{"name":"flags","namespace":"kube-system"}}"# }),
        &format!(
            "{CREATE}the body's metadata.namespace is `kube-system`, not the request's namespace; set metadata.namespace to `prod` or leave it out"
        ),
    );
}

#[test]
fn a_generated_name_under_a_names_rule_is_denied() {
    denied(
        &create_flags(),
        json!({ "body": r#"{"metadata":{"generateName":"flags-"}}"# }),
        "Kubernetes access `create configmaps` in namespace `prod` is not granted to plugin `hostile`: the closest rule (#1) does not cover the `create` with metadata.generateName (the rule is limited to names, and the API server would choose the name); add a rule to `plugins.hostile.grants.kube` in the playbook, e.g. {namespaces: [prod], resources: [configmaps], verbs: [create]}",
    );
    denied(
        &create_flags(),
        json!({ "name": "flags", "body": r#"{"metadata":{"generateName":"flags-"}}"# }),
        &format!(
            "{CREATE}the request names `flags`, but the body has no metadata.name (only metadata.generateName, so the API server would choose the name), and the API server names the object from its body; set metadata.name to `flags`"
        ),
    );
}

#[test]
fn a_body_that_is_not_an_object_is_denied() {
    denied(
        &create_flags(),
        json!({ "name": "flags", "body": r#"[{"metadata":{"name":"flags"}}]"# }),
        &format!(
            "{CREATE}the body is a list, not a JSON object; send the object (or, for `patch-type: json`, a list of operations)"
        ),
    );
    denied(
        &create_flags(),
        json!({ "name": "flags", "body": r#"{"metadata":"flags"}"# }),
        &format!(
            "{CREATE}the body's metadata is a string, not an object; write metadata as an object"
        ),
    );
}

#[test]
fn a_body_with_a_repeated_key_is_denied() {
    // serde_json keeps the last `name`; a decoder keeping the first would
    // create `other`.
    denied(
        &create_flags(),
        json!({ "body": r#"{"metadata":{"name":"other","name":"flags"}}"# }),
        &format!(
            "{CREATE}the body repeats the key `name` in one object (line 1, column 34), and a decoder that keeps the other copy would act on what the runner did not check; write each key once"
        ),
    );
    denied(
        &create_flags(),
        json!({ "body": r#"{"metadata":{"name":"flags"},"metadata":{"name":"other"}}"# }),
        &format!(
            "{CREATE}the body repeats the key `metadata` in one object (line 1, column 39), and a decoder that keeps the other copy would act on what the runner did not check; write each key once"
        ),
    );
}

#[test]
fn a_body_naming_fields_in_another_case_is_denied() {
    denied(
        &create_flags(),
        json!({ "body": r#"{"metadata":{"name":"flags","Name":"other"}}"# }),
        &format!(
            "{CREATE}the body has the key `Name` in metadata, which decoders that ignore case read as `name`; spell it `name`"
        ),
    );
    denied(
        &create_flags(),
        json!({ "body": r#"{"metadata":{"name":"flags","nameſpace":"kube-system"}}"# }),
        &format!(
            "{CREATE}the body has the key `nameſpace` in metadata, which is not ASCII (some decoders read such a key as an ASCII field name); write field names in ASCII"
        ),
    );
}

#[test]
fn an_update_whose_body_renames_the_object_is_denied() {
    let rules = [rule(
        &["deployments.apps"],
        &[KubeVerb::Update, KubeVerb::Patch],
        &["web"],
    )];
    let update = |body: &str| {
        json!({
            "verb": "update", "api_version": "apps/v1", "resource": "deployments",
            "name": "web", "body": body,
        })
    };
    denied(
        &rules,
        update(r#"{"metadata":{"name":"api"},"spec":{}}"#),
        "Kubernetes `update deployments.apps` in namespace `prod` is refused for plugin `hostile`: the body's metadata.name is `api`, not the request's name `web`; set metadata.name to `web` or leave it out",
    );
    denied(
        &rules,
        json!({
            "verb": "patch", "api_version": "apps/v1", "resource": "deployments",
            "name": "web", "patch_type": "json",
            "body": r#"[{"op":"replace","path":"/metadata/namespace","value":"kube-system"}]"#,
        }),
        "Kubernetes `patch deployments.apps` in namespace `prod` is refused for plugin `hostile`: JSON patch operation #1 (`replace` of `/metadata/namespace`) would change the object's name or namespace; a patch may change neither, so leave out that operation",
    );
    // The control: the same update naming `web` reaches the server, at `web`.
    let (r, seen) = send(&rules, update(r#"{"metadata":{"name":"web"},"spec":{}}"#));
    assert_eq!(
        r.outcome.map(|o| o.outputs["status"].clone()),
        Ok(json!(201))
    );
    assert_eq!(
        seen.iter()
            .map(|(m, u, _)| (m.as_str(), u.as_str()))
            .collect::<Vec<_>>(),
        [(
            "PUT",
            "/apis/apps/v1/namespaces/prod/deployments/web?fieldManager=runner"
        )]
    );
}

#[test]
fn a_create_of_a_subresource_goes_to_that_subresource_only() {
    // Before, a granted `pods/eviction` create was posted to the pods
    // collection: the body, a whole pod, would have been created.
    let rules = [rule(&["pods/eviction"], &[KubeVerb::Create], &["web-1"])];
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-1"},"spec":{"containers":[{"name":"x","image":"evil"}]}}"#;
    let (r, seen) = send(
        &rules,
        json!({ "resource": "pods", "subresource": "eviction", "name": "web-1", "body": pod }),
    );
    assert_eq!(
        r.outcome.map(|o| o.outputs["status"].clone()),
        Ok(json!(201))
    );
    assert_eq!(
        seen.iter()
            .map(|(m, u, _)| (m.as_str(), u.as_str()))
            .collect::<Vec<_>>(),
        [(
            "POST",
            "/api/v1/namespaces/prod/pods/web-1/eviction?fieldManager=runner"
        )]
    );
    denied(
        &rules,
        json!({
            "resource": "pods", "subresource": "eviction", "name": "web-1",
            "body": r#"{"metadata":{"name":"web-2"}}"#,
        }),
        "Kubernetes `create pods/eviction` in namespace `prod` is refused for plugin `hostile`: the body's metadata.name is `web-2`, not the request's name `web-1`; set metadata.name to `web-1` or leave it out",
    );
}
