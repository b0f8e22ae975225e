#!/usr/bin/env bash
# The hotfix demo, from a fresh clone: builds the runner and the sandbox, brings up
# the sandbox (a real Kubernetes control plane on loopback with the demo service,
# Prometheus, notification sinks and a git remote), and runs playbooks/hotfix.yaml
# against it. You are the on-call engineer: the run asks you to confirm the root
# cause, review the fix and so on; this script plays the developer who pushes the
# fix to the hotfix branch. At the end it prints the run's report and tears the
# sandbox down.
#
#   scripts/demo.sh                 # the good fix: 25 % -> 50 % -> 100 %, merged back
#   scripts/demo.sh --bad           # a fix that fails in production: rolled back at 25 %
#   scripts/demo.sh --yes [--bad]   # nobody at the keyboard: approvals are answered yes
#   scripts/demo.sh --deps          # only install what the demo needs, then stop
#
# Needs Rust (rustup; `rustup toolchain install` reads rust-toolchain.toml). It
# installs what else it lacks with apt-get, one line per package saying why
# (git, prometheus, python3 with aiosmtpd), as root or through `sudo`; where it
# cannot, it says what to run. The first run builds the control plane (about 8
# minutes, cached in ~/.cache/runner/kube; that script installs its own tools).
set -euo pipefail
cd "$(dirname "$0")/.."

image=demo/shop:1.4.3
yes=""
deps_only=""
for arg in "$@"; do
  case "$arg" in
    --bad) image=demo/shop:1.4.3-bad-in-production ;;
    --yes) yes=1 ;;
    --deps) deps_only=1 ;;
    *) echo "usage: scripts/demo.sh [--bad] [--yes] [--deps]" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

# What the sandbox starts and the demo drives, each with the Debian package that
# brings it. .ci/run calls `scripts/demo.sh --deps`, so this list cannot rot.
deps() {
  local missing=() why=()
  command -v git >/dev/null || { missing+=(git); why+=("git: the sandbox's git remote and the developer's push"); }
  command -v prometheus >/dev/null || { missing+=(prometheus); why+=("prometheus: the metrics the canary gates read"); }
  command -v python3 >/dev/null || { missing+=(python3); why+=("python3: the --yes answerer and the SMTP sink"); }
  /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || { missing+=(python3-aiosmtpd); why+=("python3-aiosmtpd: the SMTP server that receives the e-mail notifications"); }
  if [ "${#missing[@]}" -eq 0 ]; then
    say "dependencies present: $(git --version), $(prometheus --version 2>&1 | head -1 | cut -d' ' -f1-3), aiosmtpd $(/usr/bin/python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)')"
    return
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo="sudo"
    else
      say "missing: ${missing[*]}; install them (this needs root), then run the demo again:"
      say "  sudo apt-get install -y --no-install-recommends ${missing[*]}"
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    say "missing: ${missing[*]}, and there is no apt-get here: install git, prometheus and the aiosmtpd Python module with your package manager, then run the demo again"
    exit 1
  fi
  local line
  for line in "${why[@]}"; do say "installing $line"; done
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  say "installed ${missing[*]}"
}

rust() {
  if ! command -v cargo >/dev/null; then
    say "Rust is missing: install rustup (https://rustup.rs), then run the demo again; it installs the pinned toolchain itself"
    exit 1
  fi
  if command -v rustup >/dev/null; then
    # Reads rust-toolchain.toml: the pinned toolchain, its components and the
    # wasm32-wasip2 target. Quick when they are there.
    say "the Rust toolchain of rust-toolchain.toml (rustup; a few minutes the first time)"
    local out
    if ! out="$(rustup toolchain install --no-self-update 2>&1)"; then
      printf '%s\n' "$out"
      say "rustup could not install the toolchain of rust-toolchain.toml (above); fix that, then run the demo again"
      exit 1
    fi
  fi
}

deps
if [ -n "$deps_only" ]; then exit 0; fi
rust

say "building the runner and the sandbox (cargo; a few minutes the first time)"
cargo build -p runner -p runner-sandbox
target="${CARGO_TARGET_DIR:-target}"
runner="$target/debug/runner"
sandbox="$target/debug/runner-sandbox"

say "building the Kubernetes control plane if it is not cached yet"
scripts/kube-control-plane.sh build

work="$(mktemp -d -t runner-demo-XXXXXX)"
export RUNNER_STATE_DIR="$work/state"
sandbox_pid=""
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null || true; wait "$sandbox_pid" 2>/dev/null || true; fi
  say "sandbox stopped; the run's files stay in $work"
}
trap cleanup EXIT

say "starting the sandbox (log: $work/sandbox.log)"
"$sandbox" up --dir "$work/sandbox" > "$work/sandbox.log" 2>&1 &
sandbox_pid=$!
env_file="$work/sandbox/environment.yaml"
for _ in $(seq 1 300); do
  [ -s "$env_file" ] && break
  kill -0 "$sandbox_pid" 2>/dev/null || { cat "$work/sandbox.log"; exit 1; }
  sleep 0.5
done
[ -s "$env_file" ] || { say "the sandbox did not come up"; cat "$work/sandbox.log"; exit 1; }
say "sandbox ready; environment file $env_file"

# The web UI: `runner serve` on loopback over the same state folder, so the
# run below shows there live and its approvals can be answered from a
# browser as well as from this terminal. One token, for an on-call engineer
# who holds every role the hotfix asks for.
ui_port="${RUNNER_DEMO_UI_PORT:-8180}"
cat > "$work/serve.yaml" <<YAML
catalog:
  playbooks: $PWD/playbooks
tokens: $work/ui-tokens.yaml
YAML
ui_token="$("$runner" token add --tokens "$work/ui-tokens.yaml" --principal on-call \
  --role operator --role on-call --role tech-lead --role reviewer --role security)"
"$runner" serve --listen "127.0.0.1:$ui_port" --config "$work/serve.yaml" > "$work/serve.log" 2>&1 &
serve_pid=$!
ui=""
for _ in $(seq 1 50); do
  ui="$(sed -n 's/^runner serve: listening on //p' "$work/serve.log")"
  [ -n "$ui" ] && break
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -n "$ui" ]; then
  say "web UI: $ui/ui/login — log in with the token in $work/ui-token"
  printf '%s\n' "$ui_token" > "$work/ui-token"
  chmod 600 "$work/ui-token"
  # The run's page, as soon as the run has an id.
  (
    for _ in $(seq 1 600); do
      id="$("$runner" runs list --status running --limit 1 --output json 2>/dev/null \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["id"] if r else "")' 2>/dev/null)"
      if [ -n "$id" ]; then say "follow the run live: $ui/ui/runs/$id"; exit 0; fi
      sleep 1
    done
  ) &
else
  say "the web UI did not start (port $ui_port taken? set RUNNER_DEMO_UI_PORT); see $work/serve.log"
  serve_pid=""
fi

# The developer: once the run has pushed its hotfix branch, push the fix to it.
remote="$work/sandbox/git/shop.git"
(
  for _ in $(seq 1 600); do
    branch="$(git ls-remote --heads "$remote" 'hotfix/*' | awk '{print $2}' | sed 's#refs/heads/##' | head -1)"
    if [ -n "$branch" ]; then
      dev="$work/developer"
      git clone -q --branch "$branch" "$remote" "$dev"
      sed -i 's/return CODES\[code.upper()\]/return CODES.get(code.upper(), 0)  # HOTFIX: unknown codes give no discount/' "$dev/shop/discounts.py"
      git -C "$dev" -c user.name=Developer -c user.email=dev@example.com commit -qam "fix: unknown discount codes give no discount"
      git -C "$dev" push -q origin "$branch"
      touch "$work/fix-pushed"
      say "the developer pushed the fix to $branch: approve \`implement_fix\` when asked"
      exit 0
    fi
    sleep 1
  done
) &

say "running playbooks/hotfix.yaml with fixed_image=$image"
run_args=(exec playbooks/hotfix.yaml --env "$env_file"
  -i issue_id=HOTFIX-1 -i "issue_description=checkout fails on an unknown discount code"
  -i priority=P2 -i "fixed_image=$image")
set +e
if [ -z "$yes" ]; then
  "$runner" "${run_args[@]}"
  code=$?
else
  # JSON events in, one readable line per step out; each approval is answered
  # yes (with every role it asks for) through `runner approve`.
  "$runner" "${run_args[@]}" --output json | RUNNER="$runner" FIX_PUSHED="$work/fix-pushed" python3 -u -c '
import json, os, subprocess, sys, time
for line in sys.stdin:
    e = json.loads(line)
    kind, step = e.get("event"), e.get("step", "")
    if kind == "step_finished":
        status = e.get("status", "")
        detail = e.get("summary") or e.get("error") or ""
        print(("  %-10s %-24s %s" % (status, step, detail))[:160])
    elif kind in ("stage_started", "run_finished", "budget_exceeded", "handlers"):
        what = e.get("stage") or e.get("kind") or e.get("status") or ""
        print("%s: %s" % (kind, what))
    elif kind == "approval_requested":
        # The fix must be pushed before "it is pushed" is approved.
        deadline = time.time() + 120
        while step == "implement_fix" and not os.path.exists(os.environ["FIX_PUSHED"]) and time.time() < deadline:
            time.sleep(0.5)
        for role in e.get("approvers") or [None]:
            extra = ["--role", role] if role else []
            subprocess.run([os.environ["RUNNER"], "approve", e["run"], step, "--comment", "demo --yes", *extra], check=True, stdout=subprocess.DEVNULL)
        print("  approved   " + step)
'
  code=${PIPESTATUS[0]}
fi
set -e
report="$(ls -t "$RUNNER_STATE_DIR"/reports/hotfix-*.md 2>/dev/null | head -1)"
say "the run ended with exit code $code"
[ -n "$report" ] && say "its report: $report"
if [ -n "$ui" ] && [ -z "$yes" ] && [ -t 0 ]; then
  say "the web UI stays up at $ui/ui/runs: press Enter to stop it and the sandbox"
  read -r _ || true
fi
say "notifications the team would have received: $work/sandbox/notifications.jsonl"
exit "$code"
