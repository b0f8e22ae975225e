//! `kubectl`: deploy, watch and undo Deployments through the runner's `kube`
//! capability.
//!
//! Why a plugin and not the `kubectl` binary: the seeds deploy with `kubectl set
//! image`, wait on `kubectl rollout status` and roll back with `kubectl rollout
//! undo`. Running the binary would hand it the user's kubeconfig; here the
//! runner keeps the credentials and checks every request against the
//! playbook's kube rules, and this plugin does what kubectl 1.20 does with the
//! API (same patches, same rollout logic: see `rollout`), with outputs a gate
//! can read (revision, replica counts, image).
//!
//! Canary model: a pair of plain Deployments behind one Service, `stable`
//! (e.g. `web`) and `canary` (e.g. `web-canary`), whose pods both carry the
//! label the Service selects. A weight of W % gives the canary ⌈total × W / 100⌉
//! of the pair's replicas and the stable the rest, so the canary's share of
//! traffic is its share of ready pods. Promotion is `set-image` on the stable
//! and weight 0.
//!
//! An `image` comes from a run input and goes into a pod spec. Before any
//! request, it must follow the OCI reference grammar of distribution/reference
//! (`[host[:port]/]name[:tag][@algorithm:hex]`, lower-case path components,
//! a tag of at most 128 `[\w.-]` characters, at most 255 characters in all), so
//! whitespace, a second `@`, a flag-like `-…` or a value that is not an image
//! at all never reaches the cluster. Which registries may serve it is the
//! input's `allow` list (the runner's), not this plugin's.

mod rollout;

use std::time::{Duration, Instant};

use runner_sdk::kube::{PatchType, Request};
use runner_sdk::serde_json::{Map, Value, json};
use runner_sdk::{Info, Output, Plugin, StepError, capability, log, parse_duration};
use serde::Deserialize;

use rollout::Status;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    op: String,
    namespace: String,
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    change_cause: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    to_revision: Option<u64>,
    #[serde(default)]
    replicas: Option<u32>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    label_selector: Option<String>,
    #[serde(default)]
    patch: Option<Value>,
    #[serde(default)]
    patch_type: Option<String>,
    #[serde(default)]
    annotations: Option<Map<String, Value>>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    canary: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    tail: Option<u32>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
}

const APPS: &str = "apps/v1";
const DEPLOYMENTS: &str = "deployments";
/// Longest single watch; the loop re-reads the object between watches.
const WATCH_SLICE: Duration = Duration::from_secs(30);

struct Kubectl;

impl Plugin for Kubectl {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "kubectl",
            env!("CARGO_PKG_VERSION"),
            "set image, rollout status / undo / history, scale, canary weights, logs, get, patch, annotate",
        )
        .input_schema(schema())
        .sinks(&[
            ("namespace", "object-name"),
            ("deployment", "object-name"),
            ("container", "object-name"),
            ("name", "object-name"),
            ("resource", "object-name"),
            ("service", "object-name"),
            ("canary", "object-name"),
            ("image", "image"),
            ("label_selector", "query"),
            ("pattern", "query"),
        ])
        .capabilities(&[capability::KUBE])
    }

    fn run(input: Input) -> Result<Output, StepError> {
        let timeout = match &input.timeout {
            Some(t) => parse_duration(t)
                .map_err(|e| StepError::invalid_input(format!("`timeout`: {e}")))?,
            None => Duration::from_secs(600),
        };
        let deadline = Instant::now() + timeout;
        if let Some(image) = &input.image {
            image_reference(image).map_err(|why| {
                StepError::invalid_input(format!(
                    "`image` `{}` is not an image reference: {why}",
                    image.escape_debug()
                ))
            })?;
        }
        let ns = input.namespace.as_str();
        match input.op.as_str() {
            "set-image" => set_image(&input, ns, deadline),
            "rollout-status" => {
                let name = need(&input.deployment, "deployment")?;
                let d = wait_rollout(ns, name, deadline, timeout)?;
                Ok(deployment_output(&d)
                    .summary(format!("deployment \"{name}\" successfully rolled out")))
            }
            "rollout-undo" => rollout_undo(&input, ns, deadline, timeout),
            "rollout-history" => rollout_history(need(&input.deployment, "deployment")?, ns),
            "scale" => scale(&input, ns, deadline, timeout),
            "canary-weight" => canary(&input, ns, deadline, timeout),
            "logs" => logs(&input, ns),
            "get" => get(&input, ns),
            "patch" => patch(&input, ns),
            "annotate" => annotate(&input, ns),
            other => Err(StepError::invalid_input(format!(
                "`{other}` is not an op of kubectl"
            ))),
        }
    }
}

fn need<'a, T>(field: &'a Option<T>, name: &str) -> Result<&'a T, StepError> {
    field
        .as_ref()
        .ok_or_else(|| StepError::invalid_input(format!("this op needs `{name}`")))
}

fn get_deployment(ns: &str, name: &str) -> Result<Value, StepError> {
    Request::get(APPS, DEPLOYMENTS, ns, name).send()?.ok()
}

fn deployment_output(d: &Value) -> Output {
    Output::new().extend(rollout::counts(d))
}

/// Waits until the Deployment's rollout is complete (kubectl's rule), watching
/// it between reads; fails at the progress deadline or when `deadline` passes.
fn wait_rollout(
    ns: &str,
    name: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Value, StepError> {
    wait_for(ns, name, deadline, timeout, false)
}

/// Waits for the rollout as kubectl does and, when `exact`, also until the
/// Deployment runs exactly its replicas, all ready (after a scale-down kubectl
/// calls the rollout complete while the removed pods still count as ready; a
/// canary split is in effect only once they are gone).
fn wait_for(
    ns: &str,
    name: &str,
    deadline: Instant,
    timeout: Duration,
    exact: bool,
) -> Result<Value, StepError> {
    let mut last = String::new();
    loop {
        let d = get_deployment(ns, name)?;
        let status = match rollout::status(&d) {
            Status::Complete if exact && !rollout::settled(&d) => Status::Waiting(format!(
                "deployment \"{name}\" still runs pods it no longer wants"
            )),
            other => other,
        };
        match status {
            Status::Complete => return Ok(d),
            Status::DeadlineExceeded(m) => {
                let c = rollout::counts(&d);
                return Err(StepError::failed(format!(
                    "{m}: {} of {} replicas updated, {} available",
                    c["updated_replicas"], c["replicas"], c["available_replicas"]
                )));
            }
            Status::Waiting(m) => {
                if m != last {
                    let c = rollout::counts(&d);
                    log::progress(
                        c["available_replicas"].as_u64().unwrap_or(0),
                        c["replicas"].as_u64(),
                        &m,
                    );
                    last = m;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StepError::failed(format!(
                "timed out after {} s waiting for the rollout of deployment \"{name}\": {last}",
                timeout.as_secs()
            )));
        }
        let version = d
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // A long poll: returns at the first change (or empty at its timeout).
        let watched = Request::watch(APPS, DEPLOYMENTS, ns)
            .name(name)
            .resource_version(version)
            .timeout(left.min(WATCH_SLICE).max(Duration::from_secs(1)))
            .send()?;
        if watched.status == 410 {
            continue; // the version is too old: read again
        }
        watched.ok()?;
    }
}

/// Checks `text` against the OCI distribution reference grammar:
/// `[host[:port]/]component(/component)*[:tag][@algorithm:hex]`.
fn image_reference(text: &str) -> Result<(), &'static str> {
    use std::sync::LazyLock;
    static REFERENCE: LazyLock<regex_lite::Regex> = LazyLock::new(|| {
        let component = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*";
        let label = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?";
        let host = format!(r"(?:{label}(?:\.{label})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?");
        let tag = r"[\w][\w.-]{0,127}";
        let digest = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}";
        regex_lite::Regex::new(&format!(
            r"^(?:{host}/)?{component}(?:/{component})*(?::{tag})?(?:@{digest})?$"
        ))
        .expect("the reference grammar compiles")
    });
    if text.len() > 255 {
        return Err("longer than 255 characters");
    }
    if !REFERENCE.is_match(text) {
        return Err("expected `[registry[:port]/]name[:tag][@sha256:…]` with a lower-case name");
    }
    Ok(())
}

fn set_image(input: &Input, ns: &str, deadline: Instant) -> Result<Output, StepError> {
    let name = need(&input.deployment, "deployment")?;
    let image = need(&input.image, "image")?;
    let d = get_deployment(ns, name)?;
    let containers = rollout::containers(&d);
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let chosen = input.container.clone().filter(|c| !c.is_empty());
    let container = match (&chosen, names.as_slice()) {
        (Some(c), _) if names.contains(&c.as_str()) => c.clone(),
        (Some(c), _) => {
            return Err(StepError::failed(format!(
                "deployment \"{name}\" has no container named `{c}` (it has {})",
                names.join(", ")
            )));
        }
        (None, [only]) => (*only).to_owned(),
        (None, _) => {
            return Err(StepError::invalid_input(format!(
                "deployment \"{name}\" has several containers ({}); say which in `container`",
                names.join(", ")
            )));
        }
    };
    let previous = containers
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container.as_str()))
        .and_then(|c| c.get("image"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let cause = input
        .change_cause
        .clone()
        .unwrap_or_else(|| format!("runner: set image {container}={image}"));
    let patch = json!({
        "metadata": { "annotations": { rollout::CHANGE_CAUSE: cause } },
        "spec": { "template": { "spec": { "containers": [ { "name": container, "image": image } ] } } }
    });
    let patched = Request::patch(APPS, DEPLOYMENTS, ns, name, PatchType::Strategic, &patch)
        .send()?
        .ok()?;
    let changed = &previous != image;
    log::info(format!(
        "deployment \"{name}\": {container} {previous} → {image}"
    ));
    let generation = patched
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut out = Output::new()
        .set("deployment", name)
        .set("container", &container)
        .set("image", image)
        .set("previous_image", &previous)
        .set("changed", changed)
        .set("generation", generation)
        .set("previous_revision", rollout::revision(&d));
    if input.wait {
        let d = wait_rollout(ns, name, deadline, remaining(deadline))?;
        out = out.extend(rollout::counts(&d));
    } else {
        // The controller numbers the new revision as soon as it sees the change.
        let d = observed(ns, name, generation, deadline)?;
        out = out.set("revision", rollout::revision(&d));
    }
    Ok(out.summary(if changed {
        format!("deployment \"{name}\" image updated: {container}={image}")
    } else {
        format!("deployment \"{name}\" already runs {image}")
    }))
}

/// The Deployment once its controller has seen `generation` (at most 15 s or
/// until `deadline`; then as it is).
fn observed(ns: &str, name: &str, generation: i64, deadline: Instant) -> Result<Value, StepError> {
    let until = deadline.min(Instant::now() + Duration::from_secs(15));
    loop {
        let d = get_deployment(ns, name)?;
        let seen = d
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if seen >= generation || Instant::now() >= until {
            return Ok(d);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The Deployment's ReplicaSets.
fn replica_sets(ns: &str, d: &Value) -> Result<Vec<Value>, StepError> {
    let selector = rollout::selector(d).map_err(StepError::failed)?;
    let list = Request::list(APPS, "replicasets", ns)
        .label_selector(&selector)
        .send()?
        .ok()?;
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(rollout::owned(d, &items).into_iter().cloned().collect())
}

fn rollout_undo(
    input: &Input,
    ns: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Output, StepError> {
    let name = need(&input.deployment, "deployment")?;
    let d = get_deployment(ns, name)?;
    if d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Err(StepError::failed(format!(
            "you cannot roll back a paused deployment; resume deployment \"{name}\" first"
        )));
    }
    let rss = replica_sets(ns, &d)?;
    let refs: Vec<&Value> = rss.iter().collect();
    let target = rollout::rollback_target(&refs, input.to_revision)
        .map_err(|e| StepError::failed(format!("deployment \"{name}\": {e}")))?;
    let to = rollout::revision(target);
    let from_images = rollout::images(&d);
    let to_images = rollout::images(target);
    let base = Output::new()
        .set("deployment", name)
        .set("rolled_back_to", to)
        .set("from_revision", rollout::revision(&d))
        .set("previous_images", &from_images)
        .set("images", &to_images)
        .set("image", to_images.first());
    if rollout::same_template(&d, target) {
        return Ok(base.set("skipped", true).summary(format!(
            "skipped rollback (current template already matches revision {to})"
        )));
    }
    Request::patch(
        APPS,
        DEPLOYMENTS,
        ns,
        name,
        PatchType::Json,
        &rollout::rollback_patch(&d, target),
    )
    .send()?
    .ok()?;
    log::warn(format!(
        "deployment \"{name}\" rolled back to revision {to}: {} → {}",
        from_images.join(","),
        to_images.join(",")
    ));
    let mut out = base.set("skipped", false);
    if input.wait {
        let d = wait_rollout(ns, name, deadline, timeout)?;
        out = out.extend(rollout::counts(&d));
    }
    Ok(out.summary(format!(
        "deployment \"{name}\" rolled back to revision {to}"
    )))
}

fn rollout_history(name: &str, ns: &str) -> Result<Output, StepError> {
    let d = get_deployment(ns, name)?;
    let rss = replica_sets(ns, &d)?;
    let refs: Vec<&Value> = rss.iter().collect();
    let rows = rollout::history(&refs);
    Ok(Output::new()
        .set("deployment", name)
        .set("revision", rollout::revision(&d))
        .set("count", rows.len())
        .set("revisions", &rows)
        .summary(format!(
            "deployment \"{name}\": {} revisions, current {}",
            rows.len(),
            rollout::revision(&d)
        )))
}

/// Sets a Deployment's replicas through its `scale` subresource; the previous
/// count.
fn set_replicas(ns: &str, name: &str, replicas: u32) -> Result<i64, StepError> {
    let before = Request::get(APPS, DEPLOYMENTS, ns, name)
        .subresource("scale")
        .send()?
        .ok()?;
    Request::patch(
        APPS,
        DEPLOYMENTS,
        ns,
        name,
        PatchType::Merge,
        &json!({ "spec": { "replicas": replicas } }),
    )
    .subresource("scale")
    .send()?
    .ok()?;
    Ok(before
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0))
}

fn scale(
    input: &Input,
    ns: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Output, StepError> {
    let name = need(&input.deployment, "deployment")?;
    let replicas = *need(&input.replicas, "replicas")?;
    let previous = set_replicas(ns, name, replicas)?;
    let mut out = Output::new()
        .set("deployment", name)
        .set("replicas", replicas)
        .set("previous_replicas", previous);
    if input.wait {
        let d = wait_rollout(ns, name, deadline, timeout)?;
        out = out.extend(rollout::counts(&d));
    }
    Ok(out.summary(format!(
        "deployment \"{name}\" scaled from {previous} to {replicas}"
    )))
}

fn canary(
    input: &Input,
    ns: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<Output, StepError> {
    let stable = need(&input.service, "service")?;
    let canary = input
        .canary
        .clone()
        .unwrap_or_else(|| format!("{stable}-canary"));
    let canary = canary.as_str();
    let weight = *need(&input.weight, "weight")?;
    if weight > 100 {
        return Err(StepError::invalid_input(
            "`weight` is a percentage, 0 to 100",
        ));
    }
    let replicas = |d: &Value| {
        d.pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1) as u32
    };
    let s = get_deployment(ns, stable)?;
    let c = get_deployment(ns, canary)?;
    let total = input.replicas.unwrap_or(replicas(&s) + replicas(&c));
    if total == 0 {
        return Err(StepError::invalid_input(format!(
            "deployments \"{stable}\" and \"{canary}\" have no replicas between them; give `replicas`"
        )));
    }
    if let Some(image) = &input.image {
        let names: Vec<String> = rollout::containers(&c)
            .iter()
            .filter_map(|x| x.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let chosen = input.container.clone().filter(|c| !c.is_empty());
        let container = match (&chosen, names.as_slice()) {
            (Some(n), _) => n.clone(),
            (None, [only]) => only.clone(),
            _ => {
                return Err(StepError::invalid_input(format!(
                    "deployment \"{canary}\" has several containers; say which in `container`"
                )));
            }
        };
        let patch = json!({ "spec": { "template": { "spec": { "containers": [ { "name": container, "image": image } ] } } } });
        Request::patch(APPS, DEPLOYMENTS, ns, canary, PatchType::Strategic, &patch)
            .send()?
            .ok()?;
    }
    let (to_stable, to_canary) = rollout::split(total, weight);
    // Grow first, then shrink: the pair never runs fewer pods than asked.
    if to_canary >= replicas(&c) {
        set_replicas(ns, canary, to_canary)?;
        set_replicas(ns, stable, to_stable)?;
    } else {
        set_replicas(ns, stable, to_stable)?;
        set_replicas(ns, canary, to_canary)?;
    }
    log::info(format!(
        "canary \"{canary}\" at {weight} %: {to_canary} of {total} replicas ({stable}: {to_stable})"
    ));
    let mut out = Output::new()
        .set("weight", weight)
        .set(
            "actual_weight",
            f64::from(to_canary) * 100.0 / f64::from(total),
        )
        .set("total_replicas", total)
        .set("stable_replicas", to_stable)
        .set("canary_replicas", to_canary);
    if input.wait {
        let sd = wait_for(ns, stable, deadline, timeout, true)?;
        let cd = wait_for(ns, canary, deadline, timeout, true)?;
        out = out
            .set("stable", Value::Object(rollout::counts(&sd)))
            .set("canary", Value::Object(rollout::counts(&cd)));
    }
    Ok(out.summary(format!(
        "canary \"{canary}\" at {weight} % ({to_canary}/{total} replicas)"
    )))
}

/// Most pods whose logs `logs` reads.
const MAX_LOG_PODS: usize = 20;
/// Matching lines kept in the `matches` output (all are in the artifacts).
const MAX_MATCHES: usize = 50;

/// The logs of a Deployment's pods (or of pods matching a label selector): one
/// artifact per pod, with the lines matching `pattern` counted and sampled.
fn logs(input: &Input, ns: &str) -> Result<Output, StepError> {
    let selector = match (&input.deployment, &input.label_selector) {
        (_, Some(l)) => l.clone(),
        (Some(name), None) => {
            rollout::selector(&get_deployment(ns, name)?).map_err(StepError::failed)?
        }
        (None, None) => {
            return Err(StepError::invalid_input(
                "`logs` needs `deployment` or `label_selector`",
            ));
        }
    };
    let pattern = match &input.pattern {
        Some(p) => Some(regex_lite::Regex::new(p).map_err(|e| {
            StepError::invalid_input(format!("`pattern` is not a regular expression: {e}"))
        })?),
        None => None,
    };
    let since = match &input.since {
        Some(t) => {
            Some(parse_duration(t).map_err(|e| StepError::invalid_input(format!("`since`: {e}")))?)
        }
        None => None,
    };
    let pods = Request::list("v1", "pods", ns)
        .label_selector(&selector)
        .send()?
        .ok()?;
    let pods: Vec<String> = pods
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    std::fs::create_dir_all("logs")
        .map_err(|e| StepError::failed(format!("cannot write the logs folder: {e}")))?;
    let mut out = Output::new();
    let (mut lines, mut matched, mut matches) = (0usize, 0usize, Vec::new());
    for pod in pods.iter().take(MAX_LOG_PODS) {
        let mut req = Request::get("v1", "pods", ns, pod)
            .subresource("log")
            .query("tailLines", input.tail.unwrap_or(500))
            .query("limitBytes", 4 << 20);
        if let Some(c) = input.container.as_deref().filter(|c| !c.is_empty()) {
            req = req.query("container", c);
        }
        if let Some(s) = since {
            req = req.query("sinceSeconds", s.as_secs().max(1));
        }
        let res = req.send()?;
        // A pod that has not started has no log yet: say so, go on.
        let text = if res.is_success() {
            res.body
        } else {
            format!("(no log: {})\n", res.status_message())
        };
        for line in text.lines() {
            lines += 1;
            if pattern.as_ref().is_none_or(|p| p.is_match(line)) {
                matched += 1;
                if matches.len() < MAX_MATCHES {
                    matches.push(format!("{pod}: {line}"));
                }
            }
        }
        let path = format!("logs/{pod}.log");
        std::fs::write(&path, &text)
            .map_err(|e| StepError::failed(format!("cannot write {path}: {e}")))?;
        out = out.artifact(runner_sdk::Artifact::new(
            format!("log of pod {pod}"),
            path,
            "text/plain",
        ));
    }
    Ok(out
        .set("pods", &pods)
        .set("lines", lines)
        .set("matched", matched)
        .set("matches", &matches)
        .set("text", matches.join("\n"))
        .summary(format!(
            "{} pods, {lines} log lines, {matched} matching",
            pods.len().min(MAX_LOG_PODS)
        )))
}

/// The API version of a resource kubectl knows by its plural name.
fn api_version(input: &Input, resource: &str) -> Result<String, StepError> {
    if let Some(v) = &input.api_version {
        return Ok(v.clone());
    }
    Ok(match resource {
        "deployments" | "replicasets" | "statefulsets" | "daemonsets" => APPS,
        "pods" | "services" | "configmaps" | "secrets" | "events" | "endpoints"
        | "serviceaccounts" | "persistentvolumeclaims" => "v1",
        "jobs" => "batch/v1",
        "ingresses" => "networking.k8s.io/v1",
        "horizontalpodautoscalers" => "autoscaling/v1",
        other => {
            return Err(StepError::invalid_input(format!(
                "give `api_version` for `{other}` (e.g. `apps/v1`); resources are plural names such as `deployments`"
            )));
        }
    }
    .to_owned())
}

fn get(input: &Input, ns: &str) -> Result<Output, StepError> {
    let resource = need(&input.resource, "resource")?;
    let api = api_version(input, resource)?;
    match &input.name {
        Some(name) => {
            let obj = Request::get(&api, resource, ns, name).send()?.ok()?;
            let mut out = Output::new().set("object", &obj);
            if resource == DEPLOYMENTS {
                out = out.extend(rollout::counts(&obj));
            }
            Ok(out.summary(format!("{resource}/{name}")))
        }
        None => {
            let mut req = Request::list(&api, resource, ns);
            if let Some(l) = &input.label_selector {
                req = req.label_selector(l);
            }
            let list = req.send()?.ok()?;
            let items = list.get("items").cloned().unwrap_or(json!([]));
            let count = items.as_array().map_or(0, Vec::len);
            Ok(Output::new()
                .set("items", items)
                .set("count", count)
                .summary(format!("{count} {resource}")))
        }
    }
}

fn patch_type(name: Option<&str>) -> Result<PatchType, StepError> {
    Ok(match name.unwrap_or("strategic") {
        "strategic" => PatchType::Strategic,
        "merge" => PatchType::Merge,
        "json" => PatchType::Json,
        other => {
            return Err(StepError::invalid_input(format!(
                "`{other}` is not a patch type: strategic, merge or json"
            )));
        }
    })
}

fn patch(input: &Input, ns: &str) -> Result<Output, StepError> {
    let resource = need(&input.resource, "resource")?;
    let name = need(&input.name, "name")?;
    let body = need(&input.patch, "patch")?;
    let api = api_version(input, resource)?;
    let kind = patch_type(input.patch_type.as_deref())?;
    let obj = Request::patch(&api, resource, ns, name, kind, body)
        .send()?
        .ok()?;
    Ok(Output::new()
        .set("object", &obj)
        .set("generation", obj.pointer("/metadata/generation").cloned())
        .summary(format!("{resource}/{name} patched")))
}

fn annotate(input: &Input, ns: &str) -> Result<Output, StepError> {
    let resource = input.resource.as_deref().unwrap_or(DEPLOYMENTS);
    let name = need(&input.name, "name")?;
    let wanted = need(&input.annotations, "annotations")?;
    let api = api_version(input, resource)?;
    let current = Request::get(&api, resource, ns, name).send()?.ok()?;
    let existing = current
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in wanted {
        if let (Some(old), Some(new)) = (existing.get(k), v.as_str())
            && old.as_str() != Some(new)
            && !input.overwrite
        {
            return Err(StepError::failed(format!(
                "{resource}/{name} already has a value ({}) for annotation `{k}`; set `overwrite: true` to replace it",
                old.as_str().unwrap_or_default()
            )));
        }
        if !(v.is_string() || v.is_null()) {
            return Err(StepError::invalid_input(format!(
                "annotation `{k}` must be a string (or null to remove it)"
            )));
        }
    }
    let obj = Request::patch(
        &api,
        resource,
        ns,
        name,
        PatchType::Merge,
        &json!({ "metadata": { "annotations": wanted } }),
    )
    .send()?
    .ok()?;
    Ok(Output::new()
        .set(
            "annotations",
            obj.pointer("/metadata/annotations")
                .cloned()
                .unwrap_or(json!({})),
        )
        .summary(format!("{resource}/{name} annotated")))
}

fn schema() -> Value {
    let s = |d: &str| json!({ "type": "string", "minLength": 1, "description": d });
    let mut p = Map::new();
    p.insert("op".into(), json!({
        "enum": ["set-image", "rollout-status", "rollout-undo", "rollout-history", "scale", "canary-weight", "logs", "get", "patch", "annotate"],
        "description": "What to do."
    }));
    p.insert("namespace".into(), s("The namespace; it must be granted."));
    p.insert(
        "deployment".into(),
        s("The Deployment (set-image, rollout-*, scale, logs)."),
    );
    p.insert(
        "container".into(),
        json!({ "type": "string",
            "description": "The container whose image changes (needed when there are several), or whose log is read; empty means the only one." }),
    );
    p.insert(
        "image".into(),
        s("The new image (set-image; canary-weight: also set the canary's image)."),
    );
    p.insert("change_cause".into(), s("Recorded as kubernetes.io/change-cause, shown by rollout-history (default: what was done)."));
    p.insert("timeout".into(), json!({ "type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$",
        "description": "How long rollout-status (and `wait`) waits for the rollout (default 10m)." }));
    p.insert("wait".into(), json!({ "type": "boolean",
        "description": "set-image, rollout-undo, scale, canary-weight: wait until the rollout is complete (default false)." }));
    p.insert(
        "to_revision".into(),
        json!({ "type": "integer", "minimum": 0,
        "description": "rollout-undo: the revision to go back to; 0 or absent: the previous one (kubectl's --to-revision)." }),
    );
    p.insert("replicas".into(), json!({ "type": "integer", "minimum": 0,
        "description": "scale: the new count; canary-weight: the pair's total (default: their current sum)." }));
    p.insert("resource".into(), s("get, patch, annotate: the plural resource name, e.g. `deployments`, `pods`, `configmaps`."));
    p.insert(
        "api_version".into(),
        s("get, patch, annotate: `v1`, `apps/v1`, ... (known for common resources)."),
    );
    p.insert(
        "name".into(),
        s("get, patch, annotate: the object (get without it lists)."),
    );
    p.insert(
        "label_selector".into(),
        s("get, logs: only objects with these labels, e.g. `app=web`."),
    );
    p.insert(
        "patch".into(),
        json!({ "type": ["object", "array"], "description": "patch: the patch body." }),
    );
    p.insert("patch_type".into(), json!({ "enum": ["strategic", "merge", "json"], "description": "patch: how the body is read (default strategic)." }));
    p.insert(
        "annotations".into(),
        json!({ "type": "object", "additionalProperties": { "type": ["string", "null"] },
        "description": "annotate: values to set (null removes)." }),
    );
    p.insert("overwrite".into(), json!({ "type": "boolean", "description": "annotate: replace existing values (default false)." }));
    p.insert(
        "service".into(),
        s("canary-weight: the stable Deployment of the pair."),
    );
    p.insert(
        "canary".into(),
        s("canary-weight: the canary Deployment (default: SERVICE-canary)."),
    );
    p.insert(
        "weight".into(),
        json!({ "type": "integer", "minimum": 0, "maximum": 100,
        "description": "canary-weight: the canary's share of the pair's replicas, in percent." }),
    );
    p.insert(
        "since".into(),
        json!({ "type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$",
        "description": "logs: only lines of the last this long, e.g. `1h`." }),
    );
    p.insert(
        "tail".into(),
        json!({ "type": "integer", "minimum": 1,
        "description": "logs: last lines per pod (default 500)." }),
    );
    p.insert(
        "pattern".into(),
        s("logs: a regular expression; matching lines are counted and sampled in `matches`."),
    );
    let needs = |op: &str, fields: &[&str]| {
        json!({ "if": { "properties": { "op": { "const": op } } },
                "then": { "required": fields } })
    };
    json!({
        "type": "object",
        "properties": p,
        "required": ["op", "namespace"],
        "additionalProperties": false,
        "allOf": [
            needs("set-image", &["deployment", "image"]),
            needs("rollout-status", &["deployment"]),
            needs("rollout-undo", &["deployment"]),
            needs("rollout-history", &["deployment"]),
            needs("scale", &["deployment", "replicas"]),
            needs("canary-weight", &["service", "weight"]),
            needs("logs", &[]),
            needs("get", &["resource"]),
            needs("patch", &["resource", "name", "patch"]),
            needs("annotate", &["name", "annotations"]),
        ]
    })
}

runner_sdk::export_plugin!(Kubectl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_follow_the_reference_grammar() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for good in [
            "nginx".to_owned(),
            "shop:v1.2.4".to_owned(),
            "registry.example.com/team/shop:v1.2.4".to_owned(),
            "127.0.0.1:5000/shop:1.0".to_owned(),
            "localhost:5000/a_b/c__d/e--f:latest".to_owned(),
            format!("registry.example.com/shop@{digest}"),
            format!("shop:v1@{digest}"),
            format!("shop:{}", "t".repeat(128)),
        ] {
            assert_eq!(image_reference(&good), Ok(()), "{good}");
        }
        for bad in [
            String::new(),
            "Shop:v1".to_owned(),
            "shop:v1 --privileged".to_owned(),
            "-shop".to_owned(),
            "shop:.v1".to_owned(),
            format!("shop:{}", "t".repeat(129)),
            "shop@sha256:xyz".to_owned(),
            "shop@@sha256:abc".to_owned(),
            "shop:v1\nkind: Pod".to_owned(),
            "reg.example.com//shop".to_owned(),
            "shop/".to_owned(),
            "https://registry.example.com/shop".to_owned(),
            format!("{}/shop", "a".repeat(260)),
        ] {
            assert!(image_reference(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_schema_requires_what_each_op_needs() {
        let s = schema();
        let all = s["allOf"].as_array().unwrap();
        let ops = s["properties"]["op"]["enum"].as_array().unwrap();
        assert_eq!(all.len(), ops.len(), "every op has its requirements");
    }
}
