//! History and stats: per playbook and service, over the last 7 or 30 days,
//! seed 002's figures (success rate, rollback rate, durations, mean time to
//! restore, time to detect where an alert started the run) and seed 004's
//! daily trends, as charts and as tables.
//!
//! The figures are `runner stats`'s ([`crate::record::stats::figures`]),
//! grouped by the run's `service` input as well as its playbook. Time to
//! detect is the time from the alert's `startsAt` to the run's start, for
//! runs an Alertmanager alert started (the alert is kept with the run).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::chart;
use super::html::{counted, duration, inert};
use super::{Page, error_page, layout, respond};
use crate::record::{self, RunRow, SourceKind};
use crate::server::App;

#[derive(Deserialize)]
pub struct Period {
    #[serde(default)]
    days: Option<u32>,
}

const DAY_MS: i64 = 86_400_000;

/// `GET /ui/stats?days=7|30`.
pub async fn page(
    State(app): State<Arc<App>>,
    Page(viewer): Page,
    Query(q): Query<Period>,
) -> Response {
    let days = q.days.unwrap_or(30).clamp(1, 365);
    let since = record::now_ms() - i64::from(days) * DAY_MS;
    let read = app
        .read(move |j| {
            let runs = j.list(&record::Filter {
                since_ms: Some(since),
                ..Default::default()
            })?;
            // When the alert behind each alert-started run began firing.
            let mut detected = BTreeMap::new();
            for r in runs.iter().filter(|r| {
                r.started_by
                    .as_deref()
                    .is_some_and(|b| b.ends_with("(alert)"))
            }) {
                if let Some(t) = j
                    .sources(&r.id)?
                    .into_iter()
                    .find(|s| s.kind == SourceKind::Trigger)
                    .and_then(|s| alert_start_ms(&s.text))
                {
                    detected.insert(r.id.clone(), t);
                }
            }
            Ok((runs, detected))
        })
        .await;
    let (mut runs, detected) = match read {
        Ok(r) => r,
        Err(e) => return error_page(Some(&viewer), &e),
    };
    runs.sort_by_key(|r| r.started_ms);
    let mut groups: BTreeMap<(String, String), Vec<&RunRow>> = BTreeMap::new();
    for r in &runs {
        groups
            .entry((r.playbook.clone(), service_of(r)))
            .or_default()
            .push(r);
    }
    let body = html! {
        h1 { "History and stats" }
        nav.periods aria-label="period" {
            @for d in [7u32, 30] {
                @if d == days { strong { "last " (d) " days" } } @else { a href={ "/ui/stats?days=" (d) } { "last " (d) " days" } }
                " "
            }
        }
        @if groups.is_empty() { p { "No run in the last " (days) " days." } }
        @else {
            table.stats {
                thead { tr {
                    th scope="col" { "Playbook" } th scope="col" { "Service" } th scope="col" { "Runs" }
                    th scope="col" { "Success rate" } th scope="col" { "Rollback rate" }
                    th scope="col" { "Duration p50" } th scope="col" { "p95" }
                    th scope="col" { "Mean time to restore" } th scope="col" { "Time to detect (mean)" }
                } }
                tbody { @for ((playbook, service), rs) in &groups {
                    @let f = record::stats::figures(playbook, rs);
                    @let ttd: Vec<f64> = rs.iter().filter_map(|r| detected.get(&r.id).map(|t| (r.started_ms - t).max(0) as f64 / 1000.0)).collect();
                    tr {
                        td { (inert(playbook)) } td { (inert(service)) } td { (f.runs) }
                        td { (percent(f.success_rate)) } td { (percent(f.rollback_rate)) }
                        td { (secs(f.p50_duration_s)) } td { (secs(f.p95_duration_s)) }
                        td { (secs(f.mean_time_to_restore_s)) @if f.unrestored > 0 { " (" (f.unrestored) " not restored)" } }
                        td { @if ttd.is_empty() { "—" } @else { (duration(ttd.iter().sum::<f64>() / ttd.len() as f64)) " (" (counted(ttd.len(), "alert")) ")" } }
                    }
                } }
            }
            p.hint { "Success rate: succeeded / finished runs. Rollback rate: finished runs in which an on_failure handler ran. Mean time to restore: from a run that did not succeed to the end of the next success of the same playbook. Time to detect: from the alert's startsAt to the run's start." }
            @for ((playbook, service), rs) in &groups { (trends(playbook, service, rs, days)) }
        }
    };
    respond(
        StatusCode::OK,
        layout("History and stats", Some(&viewer), body),
    )
}

/// The run's `service` input, or `—`.
fn service_of(r: &RunRow) -> String {
    match r.inputs.get("service") {
        Some(Value::String(s)) => s.clone(),
        _ => "—".to_owned(),
    }
}

/// Daily runs and success rate of one group, as charts.
fn trends(playbook: &str, service: &str, runs: &[&RunRow], days: u32) -> Markup {
    let today = record::now_ms() / DAY_MS;
    let first = today - i64::from(days) + 1;
    let mut per_day: Vec<(usize, usize, Vec<i64>)> = vec![(0, 0, Vec::new()); days as usize];
    for r in runs {
        let day = r.started_ms / DAY_MS - first;
        if let Some(slot) = usize::try_from(day).ok().and_then(|d| per_day.get_mut(d)) {
            slot.0 += 1;
            if r.status == "succeeded" {
                slot.1 += 1;
            }
            if let Some(d) = r.duration_ms {
                slot.2.push(d);
            }
        }
    }
    let label = |i: usize| {
        let stamp = record::stamp((first + i as i64) * DAY_MS);
        stamp.get(5..10).unwrap_or("").to_owned()
    };
    let counts: Vec<(String, f64, &'static str)> = per_day
        .iter()
        .enumerate()
        .map(|(i, d)| (label(i), d.0 as f64, "count"))
        .collect();
    let rates: Vec<(String, f64, &'static str)> = per_day
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let rate = if d.0 == 0 {
                0.0
            } else {
                d.1 as f64 * 100.0 / d.0 as f64
            };
            (label(i), rate, if rate >= 100.0 { "ok" } else { "bad" })
        })
        .collect();
    let medians: Vec<(String, f64, &'static str)> = per_day
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut v = d.2.clone();
            v.sort_unstable();
            let m = if v.is_empty() {
                0.0
            } else {
                v[(v.len() - 1) / 2] as f64 / 1000.0
            };
            (label(i), m, "count")
        })
        .collect();
    html! {
        section.trends {
            h2 { (inert(playbook)) " · " (inert(service)) }
            div.charts {
                div { h3 { "Runs per day" } (chart::bars(&format!("runs per day of {playbook}"), &counts, None, &chart::number)) }
                div { h3 { "Success rate per day" } (chart::bars(&format!("success rate per day of {playbook}"), &rates, Some(100.0), &|v| format!("{v:.0} %"))) }
                div { h3 { "Median duration per day" } (chart::bars(&format!("median duration per day of {playbook}"), &medians, None, &duration)) }
            }
        }
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or("—".to_owned(), |v| format!("{:.0} %", v * 100.0))
}

fn secs(v: Option<f64>) -> String {
    v.map_or("—".to_owned(), duration)
}

/// `startsAt` of an alert kept as a run's trigger (the alert itself, or an
/// Alertmanager payload), in ms since the epoch.
fn alert_start_ms(text: &str) -> Option<i64> {
    let body: Value = serde_json::from_str(text).ok()?;
    let at = body
        .pointer("/alert/startsAt")
        .or_else(|| body.pointer("/startsAt"))
        .or_else(|| body.pointer("/alerts/0/startsAt"))?
        .as_str()?;
    let t = crate::report::parse_rfc3339(at)?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}
