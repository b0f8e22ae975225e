//! The run service as a library: two runs in one process, on a multi-threaded
//! tokio runtime, each through its own `Service` with its own state directory
//! and journal. Nothing may leak from one to the other: not events, not
//! journal rows, not reports, not what `run_report(ID)` reads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use runner::identity::{Principal, Source};
use runner::report::Stamped;
use runner::service::{
    Notice, Observer, OnJournalError, PlanRequest, RunOptions, RunOutcome, Service,
};
use runner::settings::Settings;

/// What a front end saw: (run id, event name) in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String)>>>);

impl Observer for Seen {
    fn event(&mut self, run_id: &str, event: &Stamped) {
        let name = serde_json::to_value(&event.event).unwrap()["event"]
            .as_str()
            .unwrap()
            .to_owned();
        self.0.lock().unwrap().push((run_id.to_owned(), name));
    }

    fn notice(&mut self, _: &str, notice: &Notice) {
        panic!("no notice expected: {notice:?}");
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runner-service-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn service(dir: &Path) -> Arc<Service> {
    let mut settings = Settings::in_dir(dir.join("state"));
    // The compile cache the other tests share: plugins compile once.
    settings.cache_dir = Some(std::env::temp_dir().join("runner-test-cache"));
    Arc::new(Service::new(settings))
}

fn options() -> RunOptions {
    RunOptions {
        secrets: None,
        kube_context: None,
        actor: Principal {
            name: "service-test".into(),
            source: Source::Flag,
        },
        on_journal_error: OnJournalError::Stop,
        trigger: None,
    }
}

/// A playbook `name` of three echo steps saying `message`.
fn playbook(dir: &Path, name: &str, message: &str) -> PathBuf {
    let file = dir.join(format!("{name}.yaml"));
    let steps: String = (1..=3)
        .map(|i| {
            format!(
                "      - {{ id: s{i}, uses: echo, with: {{ message: {message:?}, outputs: {{ said: {message:?} }} }} }}\n"
            )
        })
        .collect();
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: {name}\ninputs:\n  prior: {{ type: string, default: none }}\nplugins:\n  echo: {{ uses: echo }}\nstages:\n  - id: only\n    steps:\n{steps}"
        ),
    )
    .unwrap();
    file
}

/// Starts `file` on `service` as a task of the multi-threaded runtime: the
/// run's future must be `Send` for `tokio::spawn` to take it.
fn spawn(
    service: Arc<Service>,
    file: PathBuf,
    inputs: Vec<String>,
    seen: Seen,
) -> tokio::task::JoinHandle<Result<RunOutcome, String>> {
    tokio::spawn(async move {
        let request = PlanRequest {
            file,
            inputs,
            ..Default::default()
        };
        let (interrupt, _) = tokio::sync::watch::channel(None);
        let mut observer = seen;
        service
            .start(&request, &options(), &mut observer, &interrupt)
            .await
            .map_err(|e| e.to_string())
    })
}

fn runs_in(service: &Service) -> Vec<String> {
    let journal = service.journal_to_read().unwrap();
    journal
        .list(&Default::default())
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {}", r.playbook, r.status))
        .collect()
}

fn reports_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("state/reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn two_runs_in_one_process_keep_separate_records() {
    let (a_dir, b_dir) = (scratch("a"), scratch("b"));
    let (a, b) = (service(&a_dir), service(&b_dir));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a_seen, b_seen) = (Seen::default(), Seen::default());
    let (alpha, beta) = rt.block_on(async {
        let alpha = spawn(
            a.clone(),
            playbook(&a_dir, "alpha", "from alpha"),
            vec![],
            a_seen.clone(),
        );
        let beta = spawn(
            b.clone(),
            playbook(&b_dir, "beta", "from beta"),
            vec![],
            b_seen.clone(),
        );
        (alpha.await.unwrap().unwrap(), beta.await.unwrap().unwrap())
    });
    assert_ne!(alpha.run_id, beta.run_id);
    for (outcome, seen) in [(&alpha, &a_seen), (&beta, &b_seen)] {
        assert_eq!(outcome.report.status.as_str(), "succeeded");
        let seen = seen.0.lock().unwrap();
        // Each front end saw its own run only, from start to finish.
        assert!(seen.iter().all(|(id, _)| id == &outcome.run_id), "{seen:?}");
        assert_eq!(seen.first().unwrap().1, "run_started");
        assert_eq!(seen.last().unwrap().1, "run_finished");
        let steps = seen.iter().filter(|(_, e)| e == "step_finished").count();
        assert_eq!(steps, 3);
    }
    assert_eq!(runs_in(&a), vec!["alpha succeeded"]);
    assert_eq!(runs_in(&b), vec!["beta succeeded"]);
    // The journals hold each run's own events, the same the observer saw.
    for (service, outcome, seen) in [(&a, &alpha, &a_seen), (&b, &beta, &b_seen)] {
        let journal = service.journal_to_read().unwrap();
        let events = journal.events(&outcome.run_id).unwrap();
        assert_eq!(events.len(), seen.0.lock().unwrap().len());
    }
    for (dir, outcome, name) in [(&a_dir, &alpha, "alpha"), (&b_dir, &beta, "beta")] {
        let written = outcome.reports.as_ref().unwrap();
        assert_eq!(written.len(), 3);
        let files = reports_in(dir);
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files.iter().all(|f| f.starts_with(name)), "{files:?}");
        let markdown = written
            .iter()
            .find(|p| p.extension().unwrap() == "md")
            .unwrap();
        let text = std::fs::read_to_string(markdown).unwrap();
        assert!(text.contains(&format!("from {name}")), "{text}");
    }

    // `run_report(ID)` reads the journal of the service the run belongs to:
    // the same playbook, run on both at once, reads each its own prior run.
    let (a_seen, b_seen) = (Seen::default(), Seen::default());
    let (a_report, b_report) = rt.block_on(async {
        let ra = spawn(
            a.clone(),
            playbook(&a_dir, "gamma", "${{ run_report(inputs.prior) }}"),
            vec![format!("prior={}", alpha.run_id)],
            a_seen,
        );
        let rb = spawn(
            b.clone(),
            playbook(&b_dir, "gamma", "${{ run_report(inputs.prior) }}"),
            vec![format!("prior={}", beta.run_id)],
            b_seen,
        );
        (ra.await.unwrap().unwrap(), rb.await.unwrap().unwrap())
    });
    for (outcome, own, other) in [(&a_report, "alpha", "beta"), (&b_report, "beta", "alpha")] {
        assert_eq!(outcome.report.status.as_str(), "succeeded");
        let said = outcome.report.steps[0].outputs["said"].as_str().unwrap();
        assert!(said.contains(&format!("from {own}")), "{said}");
        assert!(!said.contains(other), "{said}");
    }
    // And a run of the other service's journal is not found there: the
    // expression reads only inputs, so the plan fails, before any step.
    let delta = playbook(&a_dir, "delta", "${{ run_report(inputs.prior) }}");
    let prior = vec![format!("prior={}", beta.run_id)];
    let refused = rt
        .block_on(async { spawn(a.clone(), delta, prior, Seen::default()).await })
        .unwrap()
        .err()
        .expect("the plan reads a run that is not in this journal");
    assert!(
        refused.contains(&format!("no run `{}`", beta.run_id)),
        "{refused}"
    );
    assert_eq!(runs_in(&a).len(), 2, "{:?}", runs_in(&a));
    drop(rt);
    let _ = std::fs::remove_dir_all(&a_dir);
    let _ = std::fs::remove_dir_all(&b_dir);
}
