//! What kubectl 1.20 decides about Deployments, as pure functions of API objects,
//! so that they are unit-tested without a cluster and agree with `kubectl`:
//! rollout status (`DeploymentStatusViewer`), which ReplicaSet a rollback goes
//! to and the patch it sends (`DeploymentRollbacker`), the revision history, and
//! how a canary weight splits replicas.

use runner_sdk::serde_json::{Map, Value, json};

/// Annotation holding a Deployment's (and its ReplicaSets') revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Annotation `kubectl --record` sets; the history shows it.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Done: every replica updated and available, no old ones left.
    Complete,
    /// Still going; the message says what it waits for (kubectl's words).
    Waiting(String),
    /// The controller gave up: the progress deadline passed.
    DeadlineExceeded(String),
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl's rollout status of a Deployment object.
pub fn status(deploy: &Value) -> Status {
    let name = deploy
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    if int(deploy, "/metadata/generation") > int(deploy, "/status/observedGeneration") {
        return Status::Waiting("Waiting for deployment spec update to be observed...".into());
    }
    let progressing = deploy
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Progressing"))
        });
    if progressing
        .and_then(|c| c.get("reason"))
        .and_then(Value::as_str)
        == Some("ProgressDeadlineExceeded")
    {
        return Status::DeadlineExceeded(format!(
            "deployment \"{name}\" exceeded its progress deadline"
        ));
    }
    let want = deploy
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let replicas = int(deploy, "/status/replicas");
    let updated = int(deploy, "/status/updatedReplicas");
    let available = int(deploy, "/status/availableReplicas");
    if updated < want {
        return Status::Waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {want} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return Status::Waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return Status::Waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    Status::Complete
}

/// The numbers a gate wants from a Deployment.
/// Whether the Deployment runs exactly `spec.replicas` pods, all ready.
pub fn settled(deploy: &Value) -> bool {
    let want = deploy
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let has = |field: &str| {
        deploy
            .pointer(&format!("/status/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    has("replicas") == want && has("readyReplicas") == want
}

pub fn counts(deploy: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "replicas".into(),
        json!(
            deploy
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
    );
    for (key, field) in [
        ("ready_replicas", "readyReplicas"),
        ("updated_replicas", "updatedReplicas"),
        ("available_replicas", "availableReplicas"),
        ("unavailable_replicas", "unavailableReplicas"),
    ] {
        m.insert(key.into(), json!(int(deploy, &format!("/status/{field}"))));
    }
    m.insert("revision".into(), json!(revision(deploy)));
    m.insert("images".into(), json!(images(deploy)));
    if let Some(first) = images(deploy).into_iter().next() {
        m.insert("image".into(), json!(first));
    }
    m
}

/// The revision annotation of a Deployment or ReplicaSet (0 when absent).
pub fn revision(obj: &Value) -> u64 {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The images of a Deployment's or ReplicaSet's pod template, container order.
pub fn images(obj: &Value) -> Vec<String> {
    containers(obj)
        .iter()
        .filter_map(|c| c.get("image").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The containers of the pod template.
pub fn containers(obj: &Value) -> Vec<Value> {
    obj.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A label selector string from a Deployment's `spec.selector`.
pub fn selector(deploy: &Value) -> Result<String, String> {
    let sel = deploy
        .pointer("/spec/selector")
        .ok_or("the deployment has no selector")?;
    let mut parts = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => parts.push(key.to_owned()),
            Some("DoesNotExist") => parts.push(format!("!{key}")),
            other => return Err(format!("unknown selector operator {other:?}")),
        }
    }
    if parts.is_empty() {
        return Err("the deployment's selector is empty".into());
    }
    Ok(parts.join(","))
}

/// The ReplicaSets (from a list) that `deploy` controls.
pub fn owned<'a>(deploy: &Value, replica_sets: &'a [Value]) -> Vec<&'a Value> {
    let uid = deploy.pointer("/metadata/uid").and_then(Value::as_str);
    replica_sets
        .iter()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|owners| {
                    owners.iter().any(|o| {
                        o.get("controller").and_then(Value::as_bool) == Some(true)
                            && o.get("uid").and_then(Value::as_str) == uid
                    })
                })
        })
        .collect()
}

/// The ReplicaSet a rollback goes to: `to` if given, else the one before the
/// latest (kubectl's `rsForRevision`).
pub fn rollback_target<'a>(rss: &[&'a Value], to: Option<u64>) -> Result<&'a Value, String> {
    // As kubectl's --to-revision: 0 means the previous revision.
    if let Some(to) = to.filter(|&to| to > 0) {
        return rss
            .iter()
            .copied()
            .find(|rs| revision(rs) == to)
            .ok_or_else(|| format!("unable to find specified revision {to} in history"));
    }
    let (mut max, mut previous) = (0, 0);
    let (mut latest, mut found) = (None, None);
    for rs in rss.iter().copied() {
        let v = revision(rs);
        if v > max {
            (previous, found) = (max, latest);
            (max, latest) = (v, Some(rs));
        } else if v > previous {
            (previous, found) = (v, Some(rs));
        }
    }
    found.ok_or_else(|| "no rollout history found: there is no previous revision".to_owned())
}

/// Annotations of a ReplicaSet that a rollback must not copy onto the Deployment.
const SKIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The pod template of `rs` as the Deployment's: without `pod-template-hash`.
pub fn template_of(rs: &Value) -> Value {
    let mut t = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    t
}

/// Whether the Deployment already runs `rs`'s template.
pub fn same_template(deploy: &Value, rs: &Value) -> bool {
    deploy.pointer("/spec/template") == Some(&template_of(rs))
}

/// The JSON patch that rolls `deploy` back to `rs` (what kubectl sends).
pub fn rollback_patch(deploy: &Value, rs: &Value) -> Value {
    let mut annotations: Map<String, Value> = deploy
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    annotations.retain(|k, _| SKIPPED_ANNOTATIONS.contains(&k.as_str()));
    if let Some(from_rs) = rs
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in from_rs {
            if !SKIPPED_ANNOTATIONS.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    json!([
        { "op": "replace", "path": "/spec/template", "value": template_of(rs) },
        { "op": "replace", "path": "/metadata/annotations", "value": annotations },
    ])
}

/// The revision history, oldest first: revision, change cause, images.
pub fn history(rss: &[&Value]) -> Vec<Value> {
    let mut rows: Vec<(u64, Value)> = rss
        .iter()
        .map(|rs| {
            let cause = rs
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(CHANGE_CAUSE))
                .cloned()
                .unwrap_or(Value::Null);
            (
                revision(rs),
                json!({
                    "revision": revision(rs),
                    "change_cause": cause,
                    "images": images(rs),
                    "replica_set": rs.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
                }),
            )
        })
        .filter(|(r, _)| *r > 0)
        .collect();
    rows.sort_by_key(|(r, _)| *r);
    rows.into_iter().map(|(_, v)| v).collect()
}

/// Splits `total` replicas between stable and canary for `weight` percent on
/// the canary: the canary gets `total × weight / 100` rounded up, so any weight
/// above 0 runs at least one canary pod; 100 leaves the stable at 0.
pub fn split(total: u32, weight: u32) -> (u32, u32) {
    let canary = (u64::from(total) * u64::from(weight)).div_ceil(100) as u32;
    let canary = canary.min(total);
    (total - canary, canary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(gen_: i64, observed: i64, want: i64, status: Value) -> Value {
        let mut st = status;
        st["observedGeneration"] = json!(observed);
        json!({
            "metadata": { "name": "web", "generation": gen_, "uid": "u1",
                          "annotations": { REVISION: "3", "keep": "x" } },
            "spec": { "replicas": want, "selector": { "matchLabels": { "app": "web" } },
                      "template": { "metadata": { "labels": { "app": "web" } },
                                    "spec": { "containers": [ { "name": "web", "image": "demo:3" } ] } } },
            "status": st
        })
    }

    #[test]
    fn settled_means_exactly_the_wanted_pods_all_ready() {
        // Scaled 4 -> 3: kubectl calls it complete while the removed pod is
        // still counted as ready (the ReplicaSet's status lags).
        let scaling_down = deploy(
            2,
            2,
            3,
            json!({"replicas": 3, "updatedReplicas": 3, "readyReplicas": 4, "availableReplicas": 3}),
        );
        assert_eq!(status(&scaling_down), Status::Complete);
        assert!(!settled(&scaling_down));
        let done = deploy(
            2,
            2,
            3,
            json!({"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}),
        );
        assert!(settled(&done));
        assert!(!settled(&deploy(
            2,
            2,
            3,
            json!({"replicas": 3, "readyReplicas": 2})
        )));
    }

    #[test]
    fn rollout_status_follows_kubectl() {
        let waiting = |d: &Value| match status(d) {
            Status::Waiting(m) => m,
            other => panic!("{other:?}"),
        };
        assert!(waiting(&deploy(2, 1, 3, json!({}))).contains("spec update to be observed"));
        assert!(
            waiting(&deploy(
                2,
                2,
                3,
                json!({"replicas": 4, "updatedReplicas": 1})
            ))
            .ends_with("1 out of 3 new replicas have been updated...")
        );
        assert!(
            waiting(&deploy(
                2,
                2,
                3,
                json!({"replicas": 4, "updatedReplicas": 3})
            ))
            .ends_with("1 old replicas are pending termination...")
        );
        assert!(
            waiting(&deploy(
                2,
                2,
                3,
                json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2})
            ))
            .ends_with("2 of 3 updated replicas are available...")
        );
        assert_eq!(
            status(&deploy(
                2,
                2,
                3,
                json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3})
            )),
            Status::Complete
        );
        let stuck = deploy(
            2,
            2,
            3,
            json!({"replicas": 4, "updatedReplicas": 1,
                   "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        assert_eq!(
            status(&stuck),
            Status::DeadlineExceeded("deployment \"web\" exceeded its progress deadline".into())
        );
    }

    fn rs(name: &str, rev: u64, image: &str, owner: &str) -> Value {
        json!({
            "metadata": { "name": name, "annotations": { REVISION: rev.to_string(), CHANGE_CAUSE: format!("to {image}") },
                          "ownerReferences": [ { "uid": owner, "controller": true } ] },
            "spec": { "template": { "metadata": { "labels": { "app": "web", "pod-template-hash": "abc" } },
                                    "spec": { "containers": [ { "name": "web", "image": image } ] } } }
        })
    }

    #[test]
    fn rollback_goes_to_the_previous_or_the_named_revision() {
        let d = deploy(1, 1, 1, json!({}));
        let all = vec![
            rs("a", 1, "demo:1", "u1"),
            rs("c", 3, "demo:3", "u1"),
            rs("b", 2, "demo:2", "u1"),
            rs("z", 9, "other", "u2"),
        ];
        let mine = owned(&d, &all);
        assert_eq!(mine.len(), 3);
        assert_eq!(
            rollback_target(&mine, None).unwrap()["metadata"]["name"],
            "b"
        );
        assert_eq!(
            rollback_target(&mine, Some(1)).unwrap()["metadata"]["name"],
            "a"
        );
        // kubectl's --to-revision=0: the previous one.
        assert_eq!(
            rollback_target(&mine, Some(0)).unwrap()["metadata"]["name"],
            "b"
        );
        assert!(
            rollback_target(&mine, Some(7))
                .unwrap_err()
                .contains("revision 7")
        );
        assert!(
            rollback_target(&mine[..1], None).is_err(),
            "one revision only"
        );
        // Order of the list does not matter.
        let rev: Vec<&Value> = mine.iter().rev().copied().collect();
        assert_eq!(
            rollback_target(&rev, None).unwrap()["metadata"]["name"],
            "b"
        );
        let hist = history(&mine);
        assert_eq!(hist.len(), 3);
        assert_eq!(hist[0]["revision"], 1);
        assert_eq!(hist[2]["change_cause"], "to demo:3");
    }

    #[test]
    fn rollback_patch_drops_the_hash_and_keeps_deployment_bookkeeping() {
        let d = deploy(1, 1, 1, json!({}));
        let target = rs("b", 2, "demo:2", "u1");
        let p = rollback_patch(&d, &target);
        assert_eq!(p[0]["value"]["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(p[0]["value"]["spec"]["containers"][0]["image"], "demo:2");
        let ann = &p[1]["value"];
        assert_eq!(ann[REVISION], "3", "the deployment's revision stays");
        assert_eq!(ann[CHANGE_CAUSE], "to demo:2", "the RS's cause comes along");
        assert!(ann.get("keep").is_none(), "other annotations are the RS's");
        assert!(!same_template(&d, &target));
        let current = rs("c", 3, "demo:3", "u1");
        assert!(same_template(&d, &current));
    }

    #[test]
    fn selectors_are_written_as_kubectl_reads_them() {
        let d = json!({"spec": {"selector": {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "x", "operator": "Exists"},
            {"key": "y", "operator": "DoesNotExist"}
        ]}}});
        assert_eq!(selector(&d).unwrap(), "app=web,tier in (a,b),x,!y");
        assert!(selector(&json!({"spec": {"selector": {}}})).is_err());
    }

    #[test]
    fn canary_weights_round_up_and_stay_in_bounds() {
        assert_eq!(split(4, 25), (3, 1));
        assert_eq!(split(4, 50), (2, 2));
        assert_eq!(split(4, 100), (0, 4));
        assert_eq!(split(4, 0), (4, 0));
        assert_eq!(split(10, 1), (9, 1));
        assert_eq!(split(3, 25), (2, 1));
        assert_eq!(split(0, 50), (0, 0));
    }
}
