//! The demo service's metrics, in Prometheus' text exposition format (0.0.4):
//!
//! - `http_requests_total{namespace,service,track,code}` (counter)
//! - `http_request_duration_seconds{namespace,service,track}` (histogram)
//! - `app_errors_total{namespace,service,track}` (counter: 5xx answered by a pod)
//!
//! and, for each serving pod, what a kubelet's cAdvisor and kube-state-metrics
//! would say of its memory (the sandbox has no kubelet):
//!
//! - `container_memory_working_set_bytes{namespace,pod,container}` (gauge): 96 MiB,
//!   or 200 MiB for an image that behaves badly (a leak to find in a post-mortem)
//! - `kube_pod_container_resource_limits{namespace,pod,container,resource="memory",unit="byte"}`
//!   (gauge): 256 MiB
//!
//! A `(namespace, service, track)` gets its series on its first request, with the
//! `code="500"` series and `app_errors_total` at 0, so that an error ratio is 0 rather
//! than empty for a track that serves but has not failed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds of the latency histogram's buckets (Prometheus' defaults), seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `(namespace, service, track)`
type Key = (String, String, String);

#[derive(Default)]
struct Histogram {
    /// Non-cumulative counts per bucket of [`BUCKETS`], then the `+Inf` overflow.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(Key, u16), u64>,
    durations: BTreeMap<Key, Histogram>,
    errors: BTreeMap<Key, u64>,
    /// Requests that began before this are not recorded.
    cleared: Option<Instant>,
}

/// The registry, shared by the fronts and the metrics endpoint.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Records one answered request, which began at `began`.
    pub fn record(
        &self,
        namespace: &str,
        service: &str,
        track: &str,
        code: u16,
        began: Instant,
        app_error: bool,
    ) {
        let took = began.elapsed();
        let key: Key = (namespace.to_owned(), service.to_owned(), track.to_owned());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.cleared.is_some_and(|cleared| began < cleared) {
            return;
        }
        if !inner.durations.contains_key(&key) {
            inner.requests.entry((key.clone(), 500)).or_insert(0);
            inner.errors.entry(key.clone()).or_insert(0);
        }
        *inner.requests.entry((key.clone(), code)).or_insert(0) += 1;
        if app_error {
            *inner.errors.entry(key.clone()).or_insert(0) += 1;
        }
        let h = inner.durations.entry(key).or_default();
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        h.counts[bucket] += 1;
        h.sum += secs;
        h.count += 1;
    }

    /// Forgets every series; requests under way are not recorded when they end (they
    /// may have gone to pods that are gone).
    pub fn clear(&self) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Inner {
            cleared: Some(Instant::now()),
            ..Inner::default()
        };
    }

    /// Everything, in the text exposition format.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let labels = |(ns, svc, track): &Key| {
            format!(
                "namespace=\"{}\",service=\"{}\",track=\"{}\"",
                escape(ns),
                escape(svc),
                escape(track)
            )
        };
        out.push_str("# HELP http_requests_total Requests answered by the demo service, by pod track and status code.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for ((key, code), n) in &inner.requests {
            let _ = writeln!(
                out,
                "http_requests_total{{{},code=\"{code}\"}} {n}",
                labels(key)
            );
        }
        out.push_str(
            "# HELP http_request_duration_seconds Time to answer a request, by pod track.\n",
        );
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for (key, h) in &inner.durations {
            let l = labels(key);
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += h.counts[i];
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "http_request_duration_seconds_sum{{{l}}} {}", h.sum);
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{l}}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP app_errors_total Server errors (5xx) answered by the application's pods.\n",
        );
        out.push_str("# TYPE app_errors_total counter\n");
        for (key, n) in &inner.errors {
            let _ = writeln!(out, "app_errors_total{{{}}} {n}", labels(key));
        }
        out
    }
}

/// The memory limit every demo container reports, bytes.
pub const MEMORY_LIMIT: u64 = 256 << 20;
/// The working set of a well-behaved demo container, bytes.
pub const MEMORY_USED: u64 = 96 << 20;
/// The working set of a container whose image behaves badly, bytes.
pub const MEMORY_USED_BAD: u64 = 200 << 20;

/// Memory series of `pods`, named and labelled as cAdvisor and
/// kube-state-metrics name them.
pub fn render_pods(pods: &[crate::demo::ServingPod]) -> String {
    let mut out = String::new();
    let labels = |p: &crate::demo::ServingPod| {
        format!(
            "namespace=\"{}\",pod=\"{}\",container=\"{}\"",
            escape(&p.namespace),
            escape(&p.pod),
            escape(&p.container)
        )
    };
    out.push_str("# HELP container_memory_working_set_bytes Current working set of the container, bytes (as cAdvisor reports it).\n");
    out.push_str("# TYPE container_memory_working_set_bytes gauge\n");
    for p in pods {
        let used = if p.bad { MEMORY_USED_BAD } else { MEMORY_USED };
        let _ = writeln!(
            out,
            "container_memory_working_set_bytes{{{}}} {used}",
            labels(p)
        );
    }
    out.push_str("# HELP kube_pod_container_resource_limits The container's resource limits (as kube-state-metrics reports them).\n");
    out.push_str("# TYPE kube_pod_container_resource_limits gauge\n");
    for p in pods {
        let _ = writeln!(
            out,
            "kube_pod_container_resource_limits{{{},resource=\"memory\",unit=\"byte\"}} {MEMORY_LIMIT}",
            labels(p)
        );
    }
    out
}

/// A label value escaped as the exposition format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pods_report_memory_as_cadvisor_and_kube_state_metrics_do() {
        let pod = |name: &str, bad: bool| crate::demo::ServingPod {
            namespace: "production".into(),
            pod: name.into(),
            track: "stable".into(),
            container: "shop".into(),
            image: "demo/shop:1".into(),
            version: "1".into(),
            bad,
        };
        let text = render_pods(&[pod("shop-a", false), pod("shop-b", true)]);
        for line in [
            r#"container_memory_working_set_bytes{namespace="production",pod="shop-a",container="shop"} 100663296"#,
            r#"container_memory_working_set_bytes{namespace="production",pod="shop-b",container="shop"} 209715200"#,
            r#"kube_pod_container_resource_limits{namespace="production",pod="shop-a",container="shop",resource="memory",unit="byte"} 268435456"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        let ago = |ms| Instant::now() - Duration::from_millis(ms);
        m.record("prod", "shop", "stable", 200, ago(4), false);
        m.record("prod", "shop", "stable", 200, ago(30), false);
        m.record("prod", "shop", "canary", 500, ago(700), true);
        let text = m.render();
        for line in [
            r#"http_requests_total{namespace="prod",service="shop",track="stable",code="200"} 2"#,
            r#"http_requests_total{namespace="prod",service="shop",track="stable",code="500"} 0"#,
            r#"http_requests_total{namespace="prod",service="shop",track="canary",code="500"} 1"#,
            r#"http_request_duration_seconds_bucket{namespace="prod",service="shop",track="stable",le="0.005"} 1"#,
            r#"http_request_duration_seconds_bucket{namespace="prod",service="shop",track="stable",le="0.05"} 2"#,
            r#"http_request_duration_seconds_bucket{namespace="prod",service="shop",track="canary",le="0.5"} 0"#,
            r#"http_request_duration_seconds_bucket{namespace="prod",service="shop",track="canary",le="1"} 1"#,
            r#"http_request_duration_seconds_bucket{namespace="prod",service="shop",track="canary",le="+Inf"} 1"#,
            r#"http_request_duration_seconds_count{namespace="prod",service="shop",track="stable"} 2"#,
            r#"app_errors_total{namespace="prod",service="shop",track="canary"} 1"#,
            r#"app_errors_total{namespace="prod",service="shop",track="stable"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn requests_under_way_when_cleared_are_not_recorded() {
        let m = Metrics::default();
        let before = Instant::now();
        m.record("prod", "shop", "stable", 200, before, false);
        m.clear();
        m.record("prod", "shop", "canary", 200, before, false);
        assert!(!m.render().contains("shop"), "{}", m.render());
        m.record("prod", "shop", "stable", 200, Instant::now(), false);
        assert!(m.render().contains("track=\"stable\""));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
