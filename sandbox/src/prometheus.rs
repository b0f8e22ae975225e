//! Prometheus (the machine's, Debian's `prometheus` package) scraping the demo
//! service every second, with its data in a folder of the sandbox.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::demo::{get, request};
use crate::process::{Processes, tail};

/// The scrape job's name (the `job` label of the demo's series).
pub const JOB: &str = "demo";

/// `prometheus` on `PATH`, if any.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file())
}

/// Starts `bin` on 127.0.0.1:`port` with its configuration and data in `dir` (log in
/// `logs/prometheus.log`), scraping 127.0.0.1:`metrics_port` every second, and waits
/// until it is ready and has scraped the target once.
pub(crate) fn start(
    processes: &mut Processes,
    bin: &Path,
    dir: &Path,
    logs: &Path,
    port: u16,
    metrics_port: u16,
) -> Result<(), String> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, config_yaml(metrics_port))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=1d")
        // For `forget` (loopback only).
        .arg("--web.enable-admin-api")
        .arg("--log.level=warn");
    processes.spawn(logs, "prometheus", cmd)?;
    let log = logs.join("prometheus.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(exited) = processes.exited() {
            return Err(format!("prometheus exited ({exited})\n{}", tail(&log)));
        }
        let last = match query(port, &format!("up{{job=\"{JOB}\"}}")) {
            Ok(result) if scalar(&result) == Some(1.0) => return Ok(()),
            Ok(result) => format!("target not scraped yet: {result}"),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(format!(
                "prometheus not ready after 60 s: {last}\n{}",
                tail(&log)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn config_yaml(metrics_port: u16) -> String {
    format!(
        "# written by runner-sandbox
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {JOB}
    honor_labels: true
    static_configs:
      - targets: [\"127.0.0.1:{metrics_port}\"]
"
    )
}

/// Deletes every series of the demo's job, so that no rate remembers what was before.
pub(crate) fn forget(port: u16) -> Result<(), String> {
    let matcher = percent_encode(&format!("{{job=\"{JOB}\"}}"));
    let path = format!("/api/v1/admin/tsdb/delete_series?match%5B%5D={matcher}");
    match request(port, "POST", &path)? {
        (204 | 200, _) => Ok(()),
        (code, body) => Err(format!("prometheus: deleting series: {code} {body:.300}")),
    }
}

/// An instant query against the Prometheus on 127.0.0.1:`port`: `data.result` of a
/// successful answer.
pub fn query(port: u16, promql: &str) -> Result<Value, String> {
    let path = format!("/api/v1/query?query={}", percent_encode(promql));
    let (code, body) = get(port, &path)?;
    let answer: Value = serde_json::from_str(&body)
        .map_err(|e| format!("prometheus answered {code} with no JSON ({e}): {body:.300}"))?;
    if answer["status"] != "success" {
        return Err(format!(
            "prometheus refused `{promql}` ({code}): {}",
            answer["error"].as_str().unwrap_or(&body)
        ));
    }
    Ok(answer["data"]["result"].clone())
}

/// The number of a one-series vector (or a scalar) answer, if it is one.
pub fn scalar(result: &Value) -> Option<f64> {
    let value = match result {
        Value::Array(series) if series.len() == 1 => &series[0]["value"][1],
        Value::Array(pair) if pair.len() == 2 && pair[1].is_string() => &pair[1],
        _ => return None,
    };
    value.as_str()?.parse().ok()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_and_reads_answers() {
        assert_eq!(
            percent_encode("up{job=\"demo\"} + 1"),
            "up%7Bjob%3D%22demo%22%7D%20%2B%201"
        );
        assert_eq!(
            scalar(&json!([{ "metric": {}, "value": [1.5, "0.25"] }])),
            Some(0.25)
        );
        assert_eq!(scalar(&json!([1.5, "2"])), Some(2.0));
        assert_eq!(scalar(&json!([])), None);
        assert_eq!(
            scalar(&json!([{ "value": [1, "NaN"] }])).map(f64::is_nan),
            Some(true)
        );
    }
}
