//! The command line: argument parsing (clap), the commands, and exit codes.
//!
//! This is the edge where errors of every layer become text for a person: located
//! diagnostics for playbook problems, one clear line for everything else.

mod annotate;
mod approve;
mod check;
pub mod diagnostic;
pub(crate) mod exec;
mod progress;
mod prompt;
mod queue;
mod registry;
mod runs;
mod serve;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::plan;
use crate::playbook::{self, LoadError};

/// Exit code: everything went as asked.
pub const EXIT_OK: u8 = 0;
/// Exit code: the playbook, its inputs or the command line are invalid.
pub const EXIT_INVALID: u8 = 2;

const AFTER_HELP: &str = "\
Examples:
  runner validate playbooks/*.yaml
  runner plan playbooks/rollback.yaml -i service=api -i reason='5xx after deploy' \\
      -i production_url=http://127.0.0.1:8080
  runner plan playbooks/rollback.yaml -i service=api -i reason=test \\
      -i production_url=http://127.0.0.1:8080 --output json | jq '.stages[].steps[].id'
  runner schema > playbook.schema.json

Exit codes:
  0    success
  1    the run failed or timed out (a step or gate failed; handlers ran), or
       was stopped because its journal stopped taking writes (handlers ran)
  2    invalid playbook, inputs, plugins or command line (nothing was run)
  3    the concurrency group is held by another run (`on_conflict: fail`)
  130  interrupted by SIGINT (Ctrl-C); handlers ran
  143  stopped by SIGTERM; handlers ran";

/// Runs production playbooks (hotfix, rollback, canary, post-mortem) whose steps are
/// sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "runner", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check playbooks: YAML, schema, references, expressions, plugins, grants.
    #[command(
        after_help = "Examples:\n  runner validate playbooks/*.yaml\n\nExit code 0 when every file is valid, 2 otherwise. Problems are printed as FILE:LINE:COL: message."
    )]
    Validate {
        /// Playbook files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// `github`: also print each problem and note as a GitHub Actions
        /// workflow command (`::error file=…,line=…,col=…::…`), so it shows on
        /// the playbook's line in a pull request.
        #[arg(long, value_enum, default_value_t = ValidateOutput::Text)]
        output: ValidateOutput,
    },
    /// Show what a playbook will do with these inputs, without running anything.
    #[command(
        after_help = "Examples:\n  runner plan playbooks/rollback.yaml -i service=api -i reason=test -i production_url=http://127.0.0.1:8080\n  runner plan playbooks/rollback.yaml -i service=api -i reason=test -i production_url=http://127.0.0.1:8080 --output json\n  runner plan playbooks/rollback.yaml -i service=api -i reason=test -i production_url=http://127.0.0.1:8080 --rbac | kubectl apply -f -\n\nRequired inputs that are missing are all listed, with their descriptions, before anything else happens.\nWith --rbac: the Kubernetes Role (one per namespace) and RoleBinding that a worker's service account needs for the playbook's `kube` grants (environment file's included), and nothing more."
    )]
    Plan(PlanArgs),
    /// Run a playbook: each step in its WebAssembly sandbox.
    #[command(
        after_help = "Examples:\n  runner exec examples/hello.yaml -i name=world\n  runner exec examples/hello.yaml --output json\n\nExit codes: 0 succeeded; 1 the run failed or timed out, or its journal stopped taking writes (handlers ran); 2 invalid playbook, inputs or plugins (nothing ran); 3 concurrency group busy; 4 taken over by another runner (shared journal); 130 SIGINT and 143 SIGTERM (handlers ran; a second Ctrl-C exits at once).\nApprovals prompt on a terminal; from anywhere, answer with `runner approve RUN_ID STEP`."
    )]
    Exec(ExecArgs),
    /// Queue a run in the shared journal for a worker to run; prints its id.
    #[command(
        after_help = "Examples:\n  runner submit playbooks/rollback.yaml -i service=api\n  runner submit playbooks/rollback.yaml -i service=api --wait\n\nThe playbook is checked as `exec` checks it (exit 2 when invalid, nothing queued); its text, the environment file's text and the inputs go with the run, so a worker needs neither file. Needs a shared journal (RUNNER_DATABASE_URL or --database; docs/scale-out.md).\nWith --wait: follows the run's events and exits as `exec` would (0, 1, 2, 3, 130, 143)."
    )]
    Submit(SubmitArgs),
    /// Run queued runs, and take over runs whose runner is gone.
    #[command(
        after_help = "Examples:\n  runner worker --concurrency 4\n\nEach run goes in a child process of its own. A run whose lease ran out (its runner died) is taken over with the rules of `runner resume`. SIGTERM or SIGINT: no new runs; the worker ends when its running ones have (a second signal ends it at once). Needs a shared journal (RUNNER_DATABASE_URL or --database; docs/scale-out.md)."
    )]
    Worker(WorkerArgs),
    /// Serve the HTTP API: start, follow, approve and cancel runs; alerts and webhooks.
    #[command(
        after_help = "Examples:\n  runner token add --tokens examples/serve-tokens.yaml --principal alice --role operator --role tech-lead\n  runner serve --listen 127.0.0.1:8700 --config examples/serve.yaml\n\nRuns are started from the configuration's catalog (a folder of playbooks, never an uploaded one) and executed by this process, at most limits.concurrent_runs at once. Every /api/v1 request carries `Authorization: Bearer TOKEN`; approval steps take the roles their playbook names. SIGHUP reads the token file again; SIGTERM or SIGINT stop taking requests and stop the running runs as SIGTERM stops `runner exec` (their handlers run). The API: GET /api/v1/openapi.json; docs/server.md."
    )]
    Serve(ServeArgs),
    /// Make API tokens for `runner serve`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Approve (or reject) a step of a run that waits for a manual approval.
    #[command(
        after_help = "Examples:\n  runner approve 1738314300-4242 confirm_rollback --comment 'error rate confirmed'\n  runner approve 1738314300-4242 confirm_rollback --role tech-lead\n  runner approve 1738314300-4242 confirm_rollback --reject --comment 'traffic is recovering'\n  RUNNER_TOKEN=rnr_… runner approve 1738314300-4242 confirm_rollback --server https://runner.example.com\n\nWith --server the answer goes through `runner serve`: the token says who you are and which roles you hold (docs/server.md). The run prints the command to use when it starts waiting. When the step lists approvers, each role answers with --role ROLE; one rejection rejects. The decision is recorded with who you are (--as NAME, else RUNNER_USER, else `git config user.email`, else your OS user, and which of those it was) and the time.\nExit codes: 0 recorded, 2 refused (no such run or pending step, or a wrong role; the message says which)."
    )]
    Approve(ApproveArgs),
    /// Continue a run whose runner died (crash, kill, lost machine).
    #[command(
        after_help = "Examples:\n  runner resume 1738314300-4242\n\nSteps that finished are not run again: their outputs come from the journal. A step that was running when the runner died runs again if it is `idempotent: true` or has retry attempts left; otherwise it fails (kind `interrupted`) and the failure handlers run. Gates are evaluated again, approvals asked again. Timeouts and budgets count from the resume. The run goes on with the playbook and environment file it started with: the journal keeps their texts, so their files may be gone (another machine), but a file still at its place must not have changed.\nExit codes as for exec; 2 also when the run ended already or is still running."
    )]
    Resume(runs::ResumeArgs),
    /// Start a finished run again from one of its steps (a new run, same inputs).
    #[command(
        after_help = "Examples:\n  runner rerun 1738314300-4242 --from deploy_canary\n\nSteps of earlier stages, and steps of the same stage that do not wait on STEP, keep their results from the old run (if they succeeded or were skipped); STEP, what waits on it, later stages and all handlers run. The new run is linked to the old one (`runner runs show`) and uses the old run's playbook and environment file as the journal keeps them (a file still at its place must not have changed).\nExit codes as for exec."
    )]
    Rerun(runs::RerunArgs),
    /// Past runs: list, show one, prune old ones.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Per playbook: runs, success rate, rollback rate, mean and p95 duration, mean time to restore.
    #[command(
        after_help = "Examples:\n  runner stats\n  runner stats --since 7d --playbook hotfix --output json\n\nSuccess rate: succeeded / finished runs. Rollback rate: finished runs in which an on_failure handler list ran. Duration: mean and 95th percentile (nearest rank). Mean time to restore: for each run that did not succeed, the time from its end to the end of the next succeeded run of the same playbook, averaged."
    )]
    Stats(runs::StatsArgs),
    /// List built-in plugins, show what one needs, check a component, push or pull one.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Print the JSON Schema of the playbook format (draft 2020-12).
    Schema,
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  runner completions bash > ~/.local/share/bash-completion/completions/runner\n  runner completions zsh > \"${fpath[1]}/_runner\"\n  runner completions fish > ~/.config/fish/completions/runner.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of runner, or of one of its commands.
    #[command(after_help = "Examples:\n  runner man | man -l -\n  runner man exec > runner-exec.1")]
    Man {
        /// A command (e.g. `exec`, `runs`); default: runner itself.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

/// Where a command finds the journal.
#[derive(Debug, clap::Args)]
pub struct JournalArg {
    /// The run journal (SQLite); default: journal.sqlite in the state directory.
    #[arg(
        long,
        value_name = "FILE",
        env = "RUNNER_JOURNAL",
        conflicts_with = "database"
    )]
    pub journal: Option<PathBuf>,
    /// A shared journal in PostgreSQL (postgres://USER:PASSWORD@HOST:PORT/DB)
    /// instead of the SQLite file; default: RUNNER_DATABASE_URL. Prefer the
    /// variable: a password on the command line is visible to other users.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

/// What `exec` takes: a playbook with its inputs, and where secrets come from.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub journal: JournalArg,
    #[command(flatten)]
    pub record: RecordArgs,
}

/// What a run does when its journal stops taking its events (a full disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OnJournalError {
    /// Stop the run as SIGTERM does: no further main step starts, the failure
    /// and finally handlers run, the run ends `interrupted` (exit 1).
    #[default]
    Stop,
    /// Carry on without a record until the journal takes writes again.
    Continue,
}

/// How a run is recorded.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RecordArgs {
    /// Who starts (or resumes) the run, for the record; default:
    /// RUNNER_USER, else `git config user.email`, else your OS user.
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    /// When the journal stops taking the run's events (a full disk): `stop`
    /// the run (its failure and finally handlers run; exit 1) or `continue`
    /// it without a record. Either way the missed events are written as soon
    /// as the journal takes writes again, and until then `runner resume`
    /// refuses the run.
    #[arg(
        long,
        value_enum,
        value_name = "WHAT",
        env = "RUNNER_ON_JOURNAL_ERROR",
        default_value_t = OnJournalError::Stop
    )]
    pub on_journal_error: OnJournalError,
}

/// Where a run's credentials come from; they stay in the runner, plugins get
/// only what their grants allow.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AccessArgs {
    /// File of secret values, `NAME=value` per line, readable only by you
    /// (chmod 600). Secrets not in it are taken from environment variables.
    #[arg(long, value_name = "FILE", env = "RUNNER_SECRETS_FILE")]
    pub secrets: Option<PathBuf>,
    /// The kubeconfig context for plugins granted `kube`; default: the
    /// kubeconfig's current context (KUBECONFIG, else ~/.kube/config), else the
    /// pod's service account when running in a cluster.
    #[arg(long, value_name = "NAME", env = "RUNNER_KUBE_CONTEXT")]
    pub kube_context: Option<String>,
}

/// What `plan` takes.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Print the Kubernetes Role and RoleBinding the playbook's `kube` grants
    /// need (YAML), instead of the plan.
    #[arg(long)]
    pub rbac: bool,
    /// With --rbac: the service account to bind, NAMESPACE/NAME.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        default_value = "runner/runner-worker"
    )]
    pub service_account: String,
}

/// What `submit` takes.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The shared journal (postgres://USER:PASSWORD@HOST:PORT/DB); default:
    /// RUNNER_DATABASE_URL.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Who submits the run, for the record; default: RUNNER_USER, else `git
    /// config user.email`, else your OS user.
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    /// Follow the run until it ends (shown as `--output` says, as for
    /// `exec`), and exit with its exit code.
    #[arg(long)]
    pub wait: bool,
}

/// What `worker` takes.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// How many runs at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub concurrency: usize,
    /// The shared journal (postgres://USER:PASSWORD@HOST:PORT/DB); default:
    /// RUNNER_DATABASE_URL.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// How runs show in the worker's output: JSON Lines (default) or text.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
    /// Run (or take over) this one run, in this process: what a worker starts
    /// for each run.
    #[arg(long, value_name = "RUN_ID", hide = true)]
    pub run: Option<String>,
}

/// What `serve` takes.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on (HOST:PORT). Without TLS in front of it, keep
    /// it on a loopback or private address (docs/server.md).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8700")]
    pub listen: std::net::SocketAddr,
    /// The server's configuration (catalog, token file, limits, hooks).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Serve HTTPS with this certificate chain (PEM); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub journal: JournalArg,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for a principal with roles; prints it once and keeps only its hash.
    #[command(
        after_help = "Examples:\n  runner token add --tokens tokens.yaml --principal alice --role tech-lead --note 'phone'\n\nThe token is printed on stdout and nowhere else: store it where the caller keeps secrets. The file keeps its SHA-256, the principal, the roles and the time (created readable by its owner only). Revoke a token by deleting its entry and sending SIGHUP to the server."
    )]
    Add {
        /// The token file (`tokens:` in the server's configuration).
        #[arg(long, value_name = "FILE")]
        tokens: PathBuf,
        /// Who the token is: recorded with every run they start and every decision.
        #[arg(long, value_name = "NAME")]
        principal: String,
        /// A role (repeat for several): the approver roles of playbooks,
        /// `operator` (access.operate) to start and cancel runs.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// What the token is for.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
}

/// What `approve` takes: which run and step, and the answer.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The run's id, as printed by the run.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// The id of the approval step.
    #[arg(value_name = "STEP")]
    pub step: String,
    /// Reject instead of approve: the step fails.
    #[arg(long)]
    pub reject: bool,
    /// Why, recorded with the decision.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// The role you answer as, one of the step's `approvers`.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Who you are, for the record; default: RUNNER_USER, else `git config
    /// user.email`, else your OS user.
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    /// The shared journal the run is in, whose database holds its approvals
    /// (postgres://USER:PASSWORD@HOST:PORT/DB); default: RUNNER_DATABASE_URL.
    #[arg(long, value_name = "URL", conflicts_with = "server")]
    pub database: Option<String>,
    /// Answer through `runner serve` at this URL (http://HOST:PORT or
    /// https://…) with the API token in RUNNER_TOKEN: the server checks your
    /// roles and records who the token says you are.
    #[arg(
        long,
        value_name = "URL",
        env = "RUNNER_SERVER",
        conflicts_with = "actor"
    )]
    pub server: Option<String>,
    /// With --server over https: a CA certificate (PEM) to trust besides the
    /// system's web roots.
    #[arg(long, value_name = "FILE", requires = "server")]
    pub server_ca: Option<PathBuf>,
}

/// A playbook with its inputs: what `plan` and `exec` take.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Playbook file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// An input value, KEY=VALUE; repeat for several.
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// An environment file: input values, grants added to the playbook's
    /// plugins, kube context and kubeconfig, secrets file (see
    /// environments/). `-i`, `--kube-context` and `--secrets` win over it.
    #[arg(long = "env", value_name = "FILE", env = "RUNNER_ENV")]
    pub env: Option<PathBuf>,
    /// Output: auto (exec: a live tree on a terminal, else JSON Lines), text, json.
    #[arg(long, value_enum, default_value_t = Output::Auto)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// The built-in plugins.
    List,
    /// A plugin's description: version, input schema, capabilities.
    Describe {
        /// A built-in name or a path to a .wasm component.
        name: String,
    },
    /// Whether this runner can load a component, and if not, why.
    ///
    /// Lists its imports (and which grant each needs), checks its exports against
    /// runner:plugin@0.1.0, calls `describe` and checks its input schema.
    #[command(
        after_help = "Examples:\n  runner plugins check examples/plugins/target/py-health-check.wasm\n  runner plugins check echo\n  runner plugins check oci://127.0.0.1:5000/greet:dev\n\nThe report goes to stdout, each problem to stderr with what to do about it.\nExit codes: 0 the runner can load the plugin, 2 it would refuse it (or the file cannot be read)."
    )]
    Check {
        /// A path to a .wasm file, a built-in plugin's name, or oci://REGISTRY/REPO:TAG[@sha256:…].
        #[arg(value_name = "FILE")]
        file: String,
    },
    /// Publish a component to an OCI registry (Wasm OCI artifact layout).
    #[command(
        after_help = "Examples:\n  runner plugins push target/wasm32-wasip2/release/greet.wasm oci://ghcr.io/acme/greet:1.0.0\n  runner plugins push greet.wasm oci://127.0.0.1:5000/greet:dev\n\nThe component is checked first (as `runner plugins check` does); the push prints the manifest digest and the `uses:` line to put in a playbook. Credentials: `auths.<registry>.auth` in $DOCKER_CONFIG/config.json, else ~/.docker/config.json (`docker login` writes it); anonymous without an entry. Only a registry on this machine (localhost, 127.0.0.1, [::1]) is reached over plain HTTP.\nExit codes: 0 pushed, 2 refused (the message says why)."
    )]
    Push {
        /// The .wasm component.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Where: oci://REGISTRY/REPOSITORY:TAG (`oci://` may be left out).
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Fetch a component from an OCI registry and print the digest to pin.
    #[command(
        after_help = "Examples:\n  runner plugins pull oci://ghcr.io/acme/greet:1.0.0\n  runner plugins pull oci://ghcr.io/acme/greet:1.0.0 --output greet.wasm\n\nBy tag or by digest. Prints the manifest digest and the `uses:` value pinned to it; the component is verified and kept in the OCI store of the component cache, so runs that use that digest need no registry afterwards.\nExit codes: 0 pulled, 2 refused (the message says why)."
    )]
    Pull {
        /// oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST (`oci://` may be left out).
        #[arg(value_name = "REF")]
        reference: String,
        /// Also write the component to this file.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateOutput {
    /// `FILE:LINE:COL: message` with the source line, on stderr.
    Text,
    /// The same, and a GitHub Actions workflow command per problem on stdout.
    Github,
}

/// Whether problems are also printed as GitHub Actions workflow commands:
/// `validate --output github`, or any command inside GitHub Actions.
static ANNOTATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn annotating() -> bool {
    ANNOTATE.load(std::sync::atomic::Ordering::Relaxed) || annotate::in_github_actions()
}

/// Prints workflow commands: on stdout for `validate --output github` (that is
/// its output), else on stderr, where GitHub reads them too and where they do
/// not mix with `exec --output json`'s events.
fn annotations(text: &str) {
    if ANNOTATE.load(std::sync::atomic::Ordering::Relaxed) {
        print(text);
    } else {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// `exec`: a live tree of stages and steps on a terminal, JSON Lines when
    /// stdout is not a terminal; elsewhere: text.
    Auto,
    /// Plain text, one line per event for `exec`.
    Text,
    /// JSON (`exec`: JSON Lines events, schema in docs/playbook.md).
    Json,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let code = match cli.command {
        Command::Validate { files, output } => {
            if output == ValidateOutput::Github {
                ANNOTATE.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            validate(&files)
        }
        Command::Plan(args) => plan_command(&args),
        Command::Exec(args) => exec::exec(&args),
        Command::Approve(args) => approve::approve(&args),
        Command::Submit(args) => queue::submit(&args),
        Command::Worker(args) => queue::worker(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Token(TokenCommand::Add {
            tokens,
            principal,
            roles,
            note,
        }) => serve::token_add(&tokens, &principal, &roles, note.as_deref()),
        Command::Resume(args) => runs::resume(&args),
        Command::Rerun(args) => runs::rerun(&args),
        Command::Runs(cmd) => runs::runs(&cmd),
        Command::Stats(args) => runs::stats(&args),
        Command::Plugins(PluginsCommand::List) => exec::plugins_list(),
        Command::Plugins(PluginsCommand::Describe { name }) => exec::plugins_describe(&name),
        Command::Plugins(PluginsCommand::Check { file }) => check::plugins_check(&file),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "runner", &mut out);
            print(&String::from_utf8_lossy(&out));
            EXIT_OK
        }
        Command::Man { command } => man(command.as_deref()),
        Command::Plugins(PluginsCommand::Push { file, reference }) => {
            registry::push(&file, &reference)
        }
        Command::Plugins(PluginsCommand::Pull { reference, output }) => {
            registry::pull(&reference, output.as_deref())
        }
        Command::Schema => {
            print(&playbook::schema::schema_text());
            EXIT_OK
        }
    };
    ExitCode::from(code)
}

/// Diagnostics and plugin log lines go to stderr through `tracing`, filtered by
/// `RUNNER_LOG` (`info`, `plugin=debug`, ...; default `warn`). Plugin lines have the
/// target `plugin` and are already redacted and rate-capped by the host.
fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // kube_client logs every refusal by the API server as an error; the kube
    // capability hands those answers to the plugin, which reports them itself.
    const DEFAULT: &str = "warn,wasmtime_wasi_http=error,kube_client=off";
    let filter = match std::env::var("RUNNER_LOG") {
        Err(_) => EnvFilter::new(DEFAULT),
        Ok(text) => EnvFilter::try_new(&text).unwrap_or_else(|e| {
            eprintln!(
                "warning: RUNNER_LOG=`{text}` is not a log filter ({e}); using `warn`. Write it as `info` or `plugin=debug,warn`."
            );
            EnvFilter::new(DEFAULT)
        }),
    };
    let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Writes to stdout, ignoring a closed pipe (`runner plan … | head`).
pub(crate) fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

pub(crate) fn report(error: &LoadError) {
    let text = match error {
        LoadError::Read(e) => format!("{e}\n"),
        LoadError::Invalid { file, problems } => diagnostic::render_all(file, problems),
    };
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
    if annotating() {
        let commands = match error {
            LoadError::Read(e) => {
                annotate::command(
                    annotate::Level::Error,
                    e.path(),
                    None,
                    "runner",
                    &e.to_string(),
                ) + "\n"
            }
            LoadError::Invalid { file, problems } => {
                annotate::problems(annotate::Level::Error, file, problems, "runner")
            }
        };
        annotations(&commands);
    }
}

fn validate(files: &[PathBuf]) -> u8 {
    let mut code = EXIT_OK;
    for file in files {
        match playbook::load(file).and_then(exec::check_plugins) {
            Ok(v) => {
                let steps: usize = v.playbook.stages.iter().map(|s| s.steps.len()).sum();
                print(&format!(
                    "{}: ok ({} stages, {steps} steps)\n",
                    file.display(),
                    v.playbook.stages.len()
                ));
                let notes: Vec<playbook::Problem> = v
                    .notes
                    .iter()
                    .map(|n| playbook::Problem {
                        pos: n.pos,
                        message: format!("note: {}", n.message),
                    })
                    .collect();
                let _ = std::io::stderr()
                    .lock()
                    .write_all(diagnostic::render_all(&v.source, &notes).as_bytes());
                if annotating() {
                    annotations(&annotate::problems(
                        annotate::Level::Notice,
                        &v.source,
                        &notes,
                        "runner",
                    ));
                }
            }
            Err(e) => {
                report(&e);
                code = EXIT_INVALID;
            }
        }
    }
    code
}

/// Prints `FILE: line` for each problem that has no position, and gives the exit
/// code for an invalid playbook, inputs or plugins.
pub(crate) fn invalid(file: &std::path::Path, lines: &[String]) -> u8 {
    let mut stderr = std::io::stderr().lock();
    for l in lines {
        let _ = writeln!(stderr, "{}: {l}", file.display());
    }
    drop(stderr);
    if annotating() {
        let name = file.display().to_string();
        annotations(
            &lines
                .iter()
                .map(|l| annotate::command(annotate::Level::Error, &name, None, "runner", l) + "\n")
                .collect::<String>(),
        );
    }
    EXIT_INVALID
}

/// In GitHub Actions, an annotation at each step that made the run fail (a
/// failed, timed-out or cancelled step; not one allowed to fail).
pub(crate) fn annotate_failures(
    validated: &playbook::Validated,
    report: &crate::engine::RunReport,
) {
    if !annotating() {
        return;
    }
    let mut at = std::collections::HashMap::new();
    crate::host::resolve::each_step(validated, |step, path| {
        let pos = validated
            .tree
            .locate(&path, crate::playbook::yaml::Target::Key);
        at.insert(
            step.id.to_string(),
            (pos.line, pos.col, step.continue_on_error),
        );
    });
    let mut out = String::new();
    for r in &report.steps {
        if !matches!(r.status, "failed" | "timed_out" | "cancelled") {
            continue;
        }
        let Some(&(line, col, allowed)) = at.get(r.step.as_str()) else {
            continue;
        };
        if allowed && r.status == "failed" {
            continue;
        }
        let status = r.status.replace('_', " ");
        let what = r.error.as_deref().unwrap_or("");
        // Plugins' errors often start with the status already.
        let what = what.strip_prefix(&format!("{status}: ")).unwrap_or(what);
        out.push_str(&annotate::command(
            annotate::Level::Error,
            &validated.source.name,
            Some((line, col)),
            "runner exec",
            &format!("step `{}` {status}: {what}", r.step),
        ));
        out.push('\n');
    }
    annotations(&out);
}

/// `runner man [COMMAND]`: the manual page, in roff, from the clap definitions.
fn man(command: Option<&str>) -> u8 {
    let root = <Cli as clap::CommandFactory>::command();
    let page = match command {
        None => root,
        Some(name) => {
            let Some(sub) = root.find_subcommand(name).cloned() else {
                let names: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
                eprintln!("error: no command `{name}`; one of: {}", names.join(", "));
                return EXIT_INVALID;
            };
            // Named as man(1) expects: runner-exec(1).
            let title = format!("runner-{}", sub.get_name());
            sub.name(title).version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut out = Vec::new();
    match clap_mangen::Man::new(page).render(&mut out) {
        Ok(()) => {
            print(&String::from_utf8_lossy(&out));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: cannot render the manual page: {e}");
            EXIT_INVALID
        }
    }
}

/// The service's request for a playbook given on the command line.
pub(crate) fn plan_request(args: &RunArgs) -> crate::service::PlanRequest {
    crate::service::PlanRequest {
        file: args.file.clone(),
        inputs: args.inputs.clone(),
        env: args.env.clone(),
        ..Default::default()
    }
}

fn plan_command(args: &PlanArgs) -> u8 {
    let subject = match args.service_account.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            crate::plan::rbac::Subject {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            }
        }
        _ => {
            eprintln!(
                "error: --service-account takes NAMESPACE/NAME (e.g. runner/runner-worker), not `{}`",
                args.service_account
            );
            return EXIT_INVALID;
        }
    };
    // `run_report(ID)` in an expression reads the journal `exec` would use.
    match exec::service(None).prepare(&plan_request(&args.run)) {
        Ok(prepared) if args.rbac => {
            let grants = prepared
                .validated
                .playbook
                .plugins
                .values()
                .flat_map(|d| d.grants.kube.iter().map(|e| e.written()));
            print(&crate::plan::rbac::render(
                &prepared.plan.playbook,
                grants,
                &subject,
            ));
            EXIT_OK
        }
        Ok(prepared) => {
            let p = prepared.plan;
            match args.run.output {
                Output::Auto | Output::Text => print(&plan::render_text(&p)),
                Output::Json => print(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&p).unwrap_or_default()
                )),
            }
            EXIT_OK
        }
        Err(e) => exec::prepare_failed(&e),
    }
}
