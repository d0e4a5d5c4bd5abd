#!/usr/bin/env bash
# Installs what raftcheck needs. Idempotent: every step checks first and is quick when
# the thing is already there.
#
#   scripts/setup.sh            Python package, the toxiproxy server, faultfs (the FUSE file
#                               system that loses unsynced writes at a crash) and fuse3:
#                               enough for `raftcheck test`
#   scripts/setup.sh --all      also Debian packages (docker.io, debootstrap, chromium),
#                               a running Docker engine, the offline base image and the
#                               project's images, and the Porcupine Go module (for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ALL=0
[ "${1:-}" = "--all" ] && ALL=1

say() { printf '[setup] %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

TOXIPROXY_VERSION=v2.12.0
PORCUPINE_VERSION=v1.3.0

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { say "apt-get not found: install ${missing[*]} by hand"; return 1; }
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >/dev/null
}

python_deps() {
  # Always (re)install: an editable install must point at this checkout, not an older one.
  say "installing the raftcheck Python package and its dependencies (pip install -e .[dev])"
  local out
  if ! out=$(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[dev]" 2>&1); then
    printf '%s\n' "$out" >&2; say "pip install failed"; exit 1
  fi
  command -v raftcheck >/dev/null || say "note: put pip's script folder on PATH to use 'raftcheck' (or run 'python3 -m campaign')"
}

toxiproxy() {
  if command -v toxiproxy-server >/dev/null 2>&1; then return 0; fi
  local gobin
  if command -v go >/dev/null 2>&1; then
    gobin="$(go env GOBIN)"; [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
    if [ ! -x "$gobin/server" ] || ! "$gobin/server" -help 2>&1 | grep -qi toxiproxy; then
      say "building the toxiproxy server: go install github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
      go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
    fi
    # A name that says what it is, on PATH where we can write.
    if [ -w /usr/local/bin ]; then ln -sf "$gobin/server" /usr/local/bin/toxiproxy-server
    else mkdir -p "$HOME/.local/bin"; ln -sf "$gobin/server" "$HOME/.local/bin/toxiproxy-server"; fi
  else
    say "Go is not installed: install Go >= 1.22, then run: go install github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
    return 1
  fi
}

go_tool() {
  # go_tool NAME DIR: build raftcheck-NAME from DIR/*.go into the Go bin folder and link
  # it onto PATH. The hash of its sources is kept beside it: unchanged sources mean
  # nothing to do.
  local name="$1" src="$ROOT/$2" gobin hash
  command -v go >/dev/null 2>&1 || {
    say "Go is not installed: install Go >= 1.26, then run scripts/setup.sh again ($name)"; return 1; }
  gobin="$(go env GOBIN)"; [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
  hash=$(cd "$src" && cat go.mod go.sum *.go | sha256sum | cut -c1-16)
  if [ ! -x "$gobin/raftcheck-$name" ] || [ "$(cat "$gobin/raftcheck-$name.inputs" 2>/dev/null)" != "$hash" ]; then
    say "building $name: go build -o $gobin/raftcheck-$name ./$2"
    mkdir -p "$gobin"
    (cd "$src" && CGO_ENABLED=0 go build -buildvcs=false -o "$gobin/raftcheck-$name" .)
    echo "$hash" >"$gobin/raftcheck-$name.inputs"
  fi
  if [ -w /usr/local/bin ]; then ln -sf "$gobin/raftcheck-$name" "/usr/local/bin/raftcheck-$name"
  else mkdir -p "$HOME/.local/bin"; ln -sf "$gobin/raftcheck-$name" "$HOME/.local/bin/raftcheck-$name"; fi
}

faultfs() {
  # raftcheck-faultfs (the crash file system), from cluster/faultfs.
  go_tool faultfs cluster/faultfs || return 1
  # fusermount3 (Debian's fuse3) mounts it when not root; root mounts directly.
  if ! command -v fusermount3 >/dev/null 2>&1; then
    apt_install fuse3 || say "note: could not install fuse3; as root faultfs mounts without it"
  fi
  [ -e /dev/fuse ] || say "note: /dev/fuse is missing: crash tests that lose unsynced writes cannot run here"
}

gonode() {
  # raftcheck-gonode, the second implementation of the node contract (etcd's Raft
  # library; docs/node-contract.md section 5), from gonode/.
  go_tool gonode gonode
}

porcupine_module() {
  command -v go >/dev/null 2>&1 || return 0
  (cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/anishathalye/porcupine@$PORCUPINE_VERSION" >/dev/null)
}

docker_all() {
  apt_install docker.io debootstrap
  bash scripts/docker-engine.sh
  bash docker/base-image.sh
  bash docker/build-images.sh
}

python_deps
toxiproxy
faultfs
gonode
if [ "$ALL" = 1 ]; then
  apt_install chromium chromium-driver ca-certificates
  porcupine_module
  docker_all
fi
say "ready"
