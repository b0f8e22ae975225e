//! `runner-sandbox up`: the local rehearsal environment, until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runner_sandbox::{
    BAD_IMAGE, BAD_IN_PRODUCTION_IMAGE, FIXED_IMAGE, IMAGE, PRODUCTION, REPLICAS, SERVICE, STAGING,
    Sandbox, SandboxOptions, control_plane, git_fixture,
};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "runner-sandbox",
    version,
    about = "A local rehearsal environment for runner's playbooks, on loopback",
    long_about = "A local rehearsal environment for runner's playbooks, on 127.0.0.1: a real \
                  Kubernetes control plane with the demo service `shop` deployed in `staging` and \
                  `production`, HTTP fronts that answer as the deployed versions behave, \
                  Prometheus scraping them, a notification sink (Slack, webhook, e-mail) and a git \
                  remote with release tags. It writes an environment file for \
                  `runner exec PLAYBOOK --env FILE`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the sandbox, write the environment file, run until Ctrl-C or SIGTERM,
    /// then tear everything down.
    Up {
        /// Folder for the sandbox's files [default: $XDG_STATE_HOME/runner/sandbox,
        /// else ~/.local/state/runner/sandbox].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Where to write the environment file [default: DIR/environment.yaml].
        #[arg(long, value_name = "FILE")]
        env_out: Option<PathBuf>,
        /// Listen on fixed ports (production 8080, staging 8081, notifications 8082,
        /// Prometheus 9090, metrics 9091, SMTP 2525) instead of free ones.
        #[arg(long)]
        fixed_ports: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up {
            dir,
            env_out,
            fixed_ports,
        } => up(dir, env_out, fixed_ports),
    }
}

fn up(dir: Option<PathBuf>, env_out: Option<PathBuf>, fixed_ports: bool) -> ExitCode {
    let dir = match dir.map(Ok).unwrap_or_else(default_dir) {
        Ok(dir) => dir,
        Err(e) => return fail(&e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("tokio runtime: {e}")),
    };
    rt.block_on(async move {
        // Registered before anything starts: from here on SIGINT and SIGTERM no longer
        // kill the process outright, they stop the sandbox.
        let (mut int, mut term) = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(i), Ok(t)) => (i, t),
            (Err(e), _) | (_, Err(e)) => return fail(&format!("installing signal handlers: {e}")),
        };
        let options = SandboxOptions {
            dir: Some(dir),
            env_out,
            fixed_ports,
            build_control_plane: true,
            print_notifications: true,
            ..SandboxOptions::default()
        };
        let starting = tokio::task::spawn_blocking(move || Sandbox::start(options));
        let sandbox = tokio::select! {
            started = starting => match started {
                Ok(Ok(sandbox)) => sandbox,
                Ok(Err(e)) => return fail(&e),
                Err(e) => return fail(&format!("starting the sandbox: {e}")),
            },
            // Nothing to hand back yet: the children die with this process
            // (parent-death signal) and temporary folders are removed after it.
            _ = int.recv() => { eprintln!("interrupted while starting"); std::process::exit(130) }
            _ = term.recv() => { eprintln!("terminated while starting"); std::process::exit(143) }
        };
        println!("{}", summary(&sandbox));
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping the sandbox");
        drop(sandbox);
        ExitCode::SUCCESS
    })
}

fn summary(sb: &Sandbox) -> String {
    let env = sb.env_file().display();
    let kubectl = control_plane::bin_dir()
        .map(|b| b.join("kubectl").display().to_string())
        .unwrap_or_else(|_| "kubectl".to_owned());
    let prometheus = match sb.prometheus_url() {
        Some(url) => format!("{url}   (scrapes {} every 1 s)", sb.metrics_url()),
        None => format!(
            "not running (install `prometheus`); metrics at {}",
            sb.metrics_url()
        ),
    };
    format!(
        "\nsandbox ready in {secs:.1} s; its files are in {dir}\n\n\
         \x20 production   {prod}   namespace {PRODUCTION}: {SERVICE} {REPLICAS} × {IMAGE}, {SERVICE}-canary 0\n\
         \x20 staging      {staging}   namespace {STAGING}: the same\n\
         \x20 prometheus   {prometheus}\n\
         \x20 slack        {notify}/slack   webhook {notify}/webhook\n\
         \x20 smtp         {smtp}   (AUTH optional; password in the secrets file)\n\
         \x20 git remote   {git}   tags {tags}\n\
         \x20 kubectl      {kubectl} --kubeconfig {kubeconfig} get deployments -A\n\
         \x20 environment  {env}\n\n\
         Run the hotfix demo from the repository, in another terminal:\n\
         \x20 runner exec playbooks/hotfix.yaml --env {env} -i issue_id=HOTFIX-1 \\\n\
         \x20   -i issue_description='checkout fails on an unknown discount code' -i priority=P1\n\
         The good fix deploys {FIXED_IMAGE}; -i fixed_image={BAD_IN_PRODUCTION_IMAGE} passes staging and fails\n\
         \x20 in production (rolled back at 25 %); -i fixed_image={BAD_IMAGE} fails in staging already\n\
         Make an image fail readiness: {kubectl} --kubeconfig {kubeconfig} -n kube-system patch configmap node-simulator \\\n\
         \x20   --type merge -p '{{\"data\":{{\"not-ready-images\":\"{FIXED_IMAGE}\"}}}}'\n\
         Notifications are printed below and appended to {log}.\n\
         Ctrl-C stops the sandbox.\n",
        secs = sb.started_in().as_secs_f64(),
        dir = sb.dir().display(),
        prod = sb.production_url(),
        staging = sb.staging_url(),
        notify = sb.notify_url(),
        smtp = sb.smtp_server(),
        git = sb.git_remote().display(),
        tags = git_fixture::TAGS.join(" "),
        kubeconfig = sb.kubeconfig_path().display(),
        log = sb.notifications_path().display(),
    )
}

/// `$XDG_STATE_HOME/runner/sandbox`, else `~/.local/state/runner/sandbox`.
fn default_dir() -> Result<PathBuf, String> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .ok_or("neither XDG_STATE_HOME nor HOME is set: give --dir")?;
    Ok(state.join("runner/sandbox"))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("runner-sandbox: error: {message}");
    ExitCode::FAILURE
}
