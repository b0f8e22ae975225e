#!/usr/bin/env bash
# Builds the example plugins written in other languages into WebAssembly
# components, installing their toolchains from the package registries first.
#
#   examples/plugins/build.sh [--out DIR] [js] [python]
#
# Without a language, builds both. Prints one line per component on stdout,
# `LANGUAGE PATH`; everything else goes to stderr. Default DIR:
# examples/plugins/target.
#
# Toolchains (pinned; installed once under $RUNNER_TOOLCHAINS, default
# ~/.cache/runner/toolchains, keyed by their pins):
#   python  componentize-py (python/requirements.txt) in a venv, from PyPI
#   js      @bytecodealliance/componentize-js (js/package-lock.json), with npm
#
# A component is rebuilt only when one of its inputs changed: its sources, the
# contract (sdk/wit), the WASI WIT (sdk/wasi), the toolchain pins and this
# script. DIR/NAME.wasm.inputs holds the SHA-256 of those inputs. Concurrent
# runs (parallel test binaries) wait for each other on a lock file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/target"
languages=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    js | python) languages+=("$1"); shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument \`$1\` (try --help)" >&2; exit 2 ;;
  esac
done
[ ${#languages[@]} -gt 0 ] || languages=(js python)
toolchains="${RUNNER_TOOLCHAINS:-$HOME/.cache/runner/toolchains}"
mkdir -p "$out" "$toolchains"
out="$(cd "$out" && pwd)"

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }
need() {
  command -v "$1" >/dev/null || die "\`$1\` is not installed; $2"
}
sha() { sha256sum "$@" | cut -c1-64; }

# The SHA-256 of a list of files, in order (names included).
inputs_hash() {
  local f
  for f in "$@"; do printf '%s %s\n' "${f#"$root/"}" "$(sha "$f")"; done | sha256sum | cut -c1-64
}

# Holds an exclusive lock on file $1 until the script exits.
lock() {
  need flock "install util-linux"
  local fd
  exec {fd}>"$1"
  flock "$fd"
}

python_toolchain() {
  need python3 "install Python 3.9 or later (Debian: apt-get install python3 python3-venv)"
  local pins="$here/python/requirements.txt"
  local pyver
  pyver="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  venv="$toolchains/python-$pyver-$(sha "$pins" | cut -c1-12)"
  [ -f "$venv/.installed" ] && return
  lock "$toolchains/.python.lock"
  [ -f "$venv/.installed" ] && return
  say "installing $(grep -v '^#' "$pins" | tr '\n' ' ')into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" \
    || die "python3 cannot create a venv (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary :all: -r "$pins"
  touch "$venv/.installed"
}

js_toolchain() {
  need node "install Node.js 18 or later with npm (Debian: apt-get install nodejs npm)"
  need npm "install npm (Debian: apt-get install npm)"
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$major" -ge 20 ] \
    || die "Node.js $(node --version) is too old: ComponentizeJS 0.23 and its jco dependencies need Node.js 20 or later"
  local lockfile="$here/js/package-lock.json"
  npm_dir="$toolchains/componentize-js-$(sha "$here/js/package.json" "$lockfile" | sha256sum | cut -c1-12)"
  [ -f "$npm_dir/.installed" ] && return
  lock "$toolchains/.js.lock"
  [ -f "$npm_dir/.installed" ] && return
  say "installing the packages of js/package-lock.json into $npm_dir"
  rm -rf "$npm_dir"
  mkdir -p "$npm_dir"
  cp "$here/js/package.json" "$lockfile" "$npm_dir/"
  # `npm install` rather than `npm ci`: npm 11 writes locks that list optional
  # platform packages it then misses in `npm ci` ("Missing: ... from lock
  # file"). With the lock present, `install` takes the locked versions all the same.
  # No package needs an install script; none is run.
  (cd "$npm_dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
  touch "$npm_dir/.installed"
}

# `fresh NAME HASH`: whether DIR/NAME.wasm was built from inputs with HASH.
fresh() {
  [ -f "$out/$1.wasm" ] && [ "$(cat "$out/$1.wasm.inputs" 2>/dev/null)" = "$2" ]
}

# Moves the built component into place, then records what it was built from.
publish() {
  mv -f "$3" "$out/$1.wasm"
  printf '%s\n' "$2" >"$out/$1.wasm.inputs"
  say "built $out/$1.wasm ($(($(stat -c %s "$out/$1.wasm") / 1024)) KiB) in $4 s"
}

build_python() {
  local name=py-health-check
  local hash
  hash="$(inputs_hash "$here/build.sh" "$here/python/requirements.txt" "$here/python/health_check.py" \
    "$here/python/wit/world.wit" "$root/sdk/wit/plugin.wit" "$root"/sdk/wasi/*.wit)"
  if fresh "$name" "$hash"; then echo "python $out/$name.wasm"; return; fi
  python_toolchain
  local start=$SECONDS work
  # A fixed folder (the lock makes it ours): paths end up in the snapshot.
  work="$out/.python-build"
  rm -rf "$work"
  # The world's dependencies go in deps/ beside it, as wit-parser expects; the
  # sources are copied so that no __pycache__ lands in the repository.
  mkdir -p "$work/wit/deps/runner-plugin" "$work/src"
  cp "$here/python/wit/world.wit" "$work/wit/"
  cp "$root/sdk/wit/plugin.wit" "$work/wit/deps/runner-plugin/"
  local f
  for f in "$root"/sdk/wasi/*.wit; do cp "$f" "$work/wit/deps/wasi-$(basename "$f")"; done
  cp "$here/python/health_check.py" "$work/src/"
  "$venv/bin/componentize-py" --quiet -d "$work/wit" -w health-check \
    componentize --python-path "$work/src" health_check -o "$work/out.wasm" >&2
  publish "$name" "$hash" "$work/out.wasm" $((SECONDS - start))
  rm -rf "$work"
  echo "python $out/$name.wasm"
}

build_js() {
  local name=js-webhook
  local hash
  hash="$(inputs_hash "$here/build.sh" "$here/js/package.json" "$here/js/package-lock.json" \
    "$here/js/webhook.js" "$root/sdk/wit/plugin.wit")"
  if fresh "$name" "$hash"; then echo "js $out/$name.wasm"; return; fi
  js_toolchain
  local start=$SECONDS work
  work="$out/.js-build"
  rm -rf "$work"
  mkdir -p "$work"
  # `--wit` takes the contract as it is: ComponentizeJS adds the WASI imports
  # its engine needs (wasi:http for `fetch`, clocks, random, ...) by itself.
  "$npm_dir/node_modules/.bin/componentize-js" "$here/js/webhook.js" \
    --wit "$root/sdk/wit" --world-name plugin -o "$work/out.wasm" >&2
  publish "$name" "$hash" "$work/out.wasm" $((SECONDS - start))
  rm -rf "$work"
  echo "js $out/$name.wasm"
}

lock "$out/.lock"
for language in "${languages[@]}"; do
  "build_$language"
done
