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
#
# Needs what .ci/run installs (Rust, git, prometheus); the first run builds the
# control plane (about 8 minutes, cached in ~/.cache/runner/kube).
set -euo pipefail
cd "$(dirname "$0")/.."

image=demo/shop:1.4.3
yes=""
for arg in "$@"; do
  case "$arg" in
    --bad) image=demo/shop:1.4.3-bad-in-production ;;
    --yes) yes=1 ;;
    *) echo "usage: scripts/demo.sh [--bad] [--yes]" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

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
cleanup() {
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
            extra = ["--as", role] if role else []
            subprocess.run([os.environ["RUNNER"], "approve", e["run"], step, "--comment", "demo --yes", *extra], check=True, stdout=subprocess.DEVNULL)
        print("  approved   " + step)
'
  code=${PIPESTATUS[0]}
fi
set -e
report="$(ls -t "$RUNNER_STATE_DIR"/reports/hotfix-*.md 2>/dev/null | head -1)"
say "the run ended with exit code $code"
[ -n "$report" ] && say "its report: $report"
say "notifications the team would have received: $work/sandbox/notifications.jsonl"
exit "$code"
