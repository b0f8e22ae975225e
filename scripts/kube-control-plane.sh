#!/usr/bin/env bash
# A real Kubernetes control plane for the tests, built from Debian's own sources.
#
#   scripts/kube-control-plane.sh build   build (once) and cache the binaries
#   scripts/kube-control-plane.sh path    print the folder holding the binaries
#
# No container engine, cluster or Go module proxy is reachable on our machines, but
# Debian bookworm ships Kubernetes 1.20.2 as a source package with its whole `vendor/`
# tree, etcd and kubectl 1.20 as binary packages. `build` turns them into
#
#   $CACHE/bin/kube-apiserver           built from the `kubernetes` source package
#   $CACHE/bin/kube-controller-manager  built from the same tree
#   $CACHE/bin/etcd                     from the `etcd-server` package
#   $CACHE/bin/kubectl                  from `kubernetes-client` (1.20, fidelity checks)
#
# with CACHE=${RUNNER_KUBE_CACHE:-$HOME/.cache/runner/kube}, outside the work tree.
# The Go build cache lives there too (the Makefile puts it in the tree's _output/).
# Every phase skips itself when its output exists, and a stamp makes a complete cache
# return at once. Nothing system-wide changes except installing missing tools
# (golang-go rsync jq dpkg-dev make openssl): the source package is fetched through a
# private apt configuration, never by editing the system's sources.
#
# The tests and the sandbox start these binaries on 127.0.0.1
# (sandbox/src/control_plane.rs).
set -euo pipefail

CACHE="${RUNNER_KUBE_CACHE:-$HOME/.cache/runner/kube}"
BIN="$CACHE/bin"
# Bump when the recipe changes so that old caches are rebuilt.
RECIPE=1
STAMP="$BIN/.complete-$RECIPE"
TIMES="$CACHE/build-times.txt"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# phase NAME CMD...: runs one phase and records its wall-clock time.
phase() {
  local name="$1" start end
  shift
  start=$(date +%s)
  log "phase $name: start"
  "$@"
  end=$(date +%s)
  log "phase $name: done in $((end - start)) s"
  printf '%s %s %ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$((end - start))" >>"$TIMES"
}

tools() {
  local missing=()
  command -v go >/dev/null || missing+=(golang-go)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v jq >/dev/null || missing+=(jq)
  command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
  command -v make >/dev/null || missing+=(make)
  # Not for the build: the tests make their certificates with it.
  command -v openssl >/dev/null || missing+=(openssl)
  if [ "${#missing[@]}" -eq 0 ]; then
    log "build tools present: $(go version)"
    return
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  log "build tools: $(go version)"
}

# A private apt configuration with deb-src entries: `apt-get source` needs source
# indexes, which the system's configuration does not fetch. Lists and the package cache
# are private too, so the system's apt state is never touched.
APT_DIR="$CACHE/apt"
APT_CONF="$APT_DIR/apt.conf"
papt() { APT_CONFIG="$APT_CONF" apt-get "$@"; }

apt_setup() {
  mkdir -p "$APT_DIR/sources.list.d" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  local system=/etc/apt/sources.list.d/debian.sources
  if [ -f "$system" ]; then
    sed -E 's/^Types:.*/Types: deb deb-src/' "$system" >"$APT_DIR/sources.list.d/debian.sources"
  else
    cat >"$APT_DIR/sources.list.d/debian.sources" <<'EOF'
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  {
    echo "Dir::Etc::sourcelist \"/dev/null\";"
    echo "Dir::Etc::sourceparts \"$APT_DIR/sources.list.d\";"
    echo "Dir::State::Lists \"$APT_DIR/lists\";"
    echo "Dir::Cache \"$APT_DIR/cache\";"
    # As root, apt downloads as the user _apt, which cannot enter a private home.
    if [ "$(id -u)" -eq 0 ]; then echo 'APT::Sandbox::User "root";'; fi
  } >"$APT_CONF"
  papt update -q
}

SRC_PARENT="$CACHE/src"
DL="$CACHE/downloads"

source_tree() {
  [ -d "$SRC_PARENT" ] || return 0
  find "$SRC_PARENT" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1
}

fetch_source() {
  mkdir -p "$SRC_PARENT"
  rm -rf "${SRC_PARENT:?}"/*
  (cd "$SRC_PARENT" && papt source -q --download-only kubernetes)
  local dsc
  dsc=$(find "$SRC_PARENT" -maxdepth 1 -name 'kubernetes_*.dsc' | head -1)
  [ -n "$dsc" ] || die "apt-get source downloaded no kubernetes_*.dsc"
  # apt verified the checksums against the signed Release file; the maintainer's
  # signature cannot be checked without debian-keyring, hence --no-check.
  (cd "$SRC_PARENT" && dpkg-source --no-check -x "$(basename "$dsc")")
  [ -n "$(source_tree)" ] || die "dpkg-source -x produced no kubernetes-* folder"
  touch "$(source_tree)/.runner-extracted"
}

# The vendored github.com/modern-go/reflect2 v1.0.1 crashes under Go >= 1.18; Debian's
# 1.0.2 package has the fix.
reflect2_fix() {
  local tree pkg_dir
  tree=$(source_tree)
  pkg_dir="$DL/reflect2"
  rm -rf "$pkg_dir" && mkdir -p "$pkg_dir"
  (cd "$DL" && papt download -q golang-github-modern-go-reflect2-dev)
  dpkg-deb -x "$(find "$DL" -maxdepth 1 -name 'golang-github-modern-go-reflect2-dev_*.deb' | head -1)" "$pkg_dir"
  local new="$pkg_dir/usr/share/gocode/src/github.com/modern-go/reflect2"
  [ -f "$new/reflect2.go" ] || die "reflect2 sources not found in the package"
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  cp -r "$new" "$tree/vendor/github.com/modern-go/reflect2"
  touch "$tree/.runner-reflect2"
}

# Built as debian/rules does: a GOPATH whose k8s.io/kubernetes points at the tree, then
# the upstream Makefile (plain `go build -mod=vendor` fails: "updates to go.mod needed").
build_cmd() {
  local what="$1" tree
  tree=$(source_tree)
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  (
    cd "$tree/.go/src/k8s.io/kubernetes"
    # The Makefile sets GOCACHE to _output/local/go/cache, inside $CACHE with the tree,
    # so rebuilds and the second binary reuse the first one's packages.
    # The version (v1.20.2) comes from values `git archive` wrote into hack/lib/version.sh.
    export GOPATH="$tree/.go" CGO_ENABLED=0 GOPROXY=off
    make WHAT="cmd/$what"
  )
  mkdir -p "$BIN"
  install -m 0755 "$tree/_output/local/bin/linux/amd64/$what" "$BIN/$what"
}

# extract_deb PACKAGE PATH_IN_PACKAGE NAME: a binary out of a Debian package, without
# installing it (kubernetes-client would conflict with the machine's own kubectl).
extract_deb() {
  local package="$1" inner="$2" name="$3" dir="$DL/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$DL" && rm -f "${package}"_*.deb && papt download -q "$package")
  dpkg-deb -x "$(find "$DL" -maxdepth 1 -name "${package}_*.deb" | head -1)" "$dir"
  [ -x "$dir/$inner" ] || die "$inner not found in $package"
  mkdir -p "$BIN"
  install -m 0755 "$dir/$inner" "$BIN/$name"
}

build() {
  if [ -f "$STAMP" ]; then
    for b in kube-apiserver kube-controller-manager etcd kubectl; do
      [ -x "$BIN/$b" ] || { rm -f "$STAMP"; break; }
    done
  fi
  if [ -f "$STAMP" ]; then
    log "cached: $BIN"
    return
  fi
  mkdir -p "$CACHE" "$DL"
  # One build at a time per cache (CI and a developer may race).
  exec 9>"$CACHE/.lock"
  flock 9
  [ -f "$STAMP" ] && { log "cached: $BIN"; return; }

  local total_start free_kb
  total_start=$(date +%s)
  log "building the Kubernetes control plane into $CACHE"
  # Source tree, Go build cache and binaries take about 2.6 GB.
  free_kb=$(df -Pk "$CACHE" | awk 'NR == 2 { print $4 }')
  if [ "$free_kb" -lt 3500000 ] && [ ! -x "$BIN/kube-controller-manager" ]; then
    die "about 3 GB must be free under $CACHE (the build needs 2.6 GB); $((free_kb / 1024)) MB are"
  fi
  phase tools tools
  phase apt-update apt_setup
  local tree
  tree=$(source_tree)
  if [ -z "$tree" ] || [ ! -f "$tree/.runner-extracted" ]; then
    phase source fetch_source
  fi
  if [ ! -f "$(source_tree)/.runner-reflect2" ]; then
    phase reflect2 reflect2_fix
  fi
  [ -x "$BIN/kube-apiserver" ] || phase kube-apiserver build_cmd kube-apiserver
  [ -x "$BIN/kube-controller-manager" ] || phase kube-controller-manager build_cmd kube-controller-manager
  [ -x "$BIN/etcd" ] || phase etcd extract_deb etcd-server usr/bin/etcd etcd
  [ -x "$BIN/kubectl" ] || phase kubectl extract_deb kubernetes-client usr/bin/kubectl kubectl

  "$BIN/kube-apiserver" --version >&2
  "$BIN/etcd" --version >&2
  "$BIN/kubectl" version --client >&2 && echo >&2
  touch "$STAMP"
  log "done in $(($(date +%s) - total_start)) s; binaries in $BIN (phase times in $TIMES)"
}

case "${1:-}" in
build) build ;;
path) echo "$BIN" ;;
*)
  echo "usage: $0 build|path" >&2
  exit 2
  ;;
esac
