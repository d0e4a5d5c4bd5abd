#!/usr/bin/env bash
# Build raftcheck/node, raftcheck/toxiproxy and raftcheck/gonode on the offline base image.
#
# Idempotent and fast when up to date: each image carries a label with the hash of its
# inputs (Dockerfile, sources, base image id); a matching label means nothing to do.
# Needs a Docker engine (scripts/docker-engine.sh) and the base image
# (docker/base-image.sh), or BASE_IMAGE=python:3.12-slim where a registry is reachable.
#
# Environment: BASE_IMAGE (default raftcheck/base:local), RAFTCHECK_NODE_IMAGE
# (raftcheck/node:latest), RAFTCHECK_TOXIPROXY_IMAGE (raftcheck/toxiproxy:latest),
# RAFTCHECK_GONODE_IMAGE (raftcheck/gonode:latest),
# RAFTCHECK_CACHE (~/.cache/raftcheck: downloaded wheels, the static toxiproxy build),
# FORCE=1 rebuilds even when the labels match; NO_CACHE=1 also ignores the layer cache.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "build-images: $*" >&2; }

base=${BASE_IMAGE:-raftcheck/base:local}
node_image=${RAFTCHECK_NODE_IMAGE:-raftcheck/node:latest}
toxi_image=${RAFTCHECK_TOXIPROXY_IMAGE:-raftcheck/toxiproxy:latest}
cache=${RAFTCHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raftcheck}
toxiproxy_version=v2.12.0
mkdir -p "$cache"

base_id=$(docker image inspect --format '{{.Id}}' "$base" 2>/dev/null) || {
    log "base image $base not found: run docker/base-image.sh first (or set BASE_IMAGE)"; exit 1; }

label_of() { docker image inspect --format '{{index .Config.Labels "raftcheck.inputs"}}' "$1" 2>/dev/null || true; }
up_to_date() { [[ "${FORCE:-0}" != 1 && "$(label_of "$1")" == "$2" ]]; }

ctx=$(mktemp -d /tmp/raftcheck-build.XXXXXX)
trap 'rm -rf "$ctx"' EXIT

build() {  # build IMAGE HASH DOCKERFILE CONTEXT [--build-arg ...]
    local image=$1 hash=$2 dockerfile=$3 context=$4; shift 4
    local start=$SECONDS old
    old=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    log "building $image (inputs $hash)"
    local no_cache=()
    [[ "${NO_CACHE:-0}" == 1 ]] && no_cache=(--no-cache)
    if ! DOCKER_BUILDKIT=0 docker build --quiet "${no_cache[@]}" -f "$dockerfile" -t "$image" \
            --label "raftcheck.inputs=$hash" --build-arg "BASE_IMAGE=$base" "$@" "$context" \
            >"$ctx/build.log" 2>&1; then
        tail -n 30 "$ctx/build.log" >&2; log "building $image failed"; exit 1
    fi
    log "built $image in $((SECONDS - start)) s"
    # The image it replaces is now untagged: remove it unless a container still uses it.
    if [[ -n "$old" && "$old" != "$(docker image inspect --format '{{.Id}}' "$image")" ]]; then
        docker image rm "$old" >/dev/null 2>&1 || true
    fi
}

# --- raftcheck/node -----------------------------------------------------------------
sources=(pyproject.toml README.md docker/Dockerfile.node docker/node-requirements.txt)
while IFS= read -r f; do sources+=("$f"); done < <(
    find node -name '*.py' -not -path '*/__pycache__/*' | LC_ALL=C sort)
node_hash=$( { echo "$base_id"; for f in "${sources[@]}"; do echo "== $f"; cat "$f"; done; } \
    | sha256sum | cut -c1-16)

if up_to_date "$node_image" "$node_hash"; then
    log "$node_image is up to date"
else
    # Wheels for the base image's Python and machine, downloaded once with the host's
    # pip (PyPI or its cache), so that the image build itself needs no network.
    pyver=$(docker run --rm --network none --entrypoint python3 "$base" \
        -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    wheels="$cache/wheels-py$pyver-$(uname -m)"
    req_hash=$(cat docker/node-requirements.txt | sha256sum | cut -c1-16)
    if [[ ! -f "$wheels/.complete-$req_hash" ]]; then
        log "downloading wheels for Python $pyver into $wheels"
        mkdir -p "$wheels"
        python3 -m pip download --quiet --disable-pip-version-check --dest "$wheels" \
            --only-binary=:all: --python-version "$pyver" \
            --platform "manylinux2014_$(uname -m)" --platform "manylinux_2_28_$(uname -m)" \
            --platform "manylinux_2_17_$(uname -m)" --platform "linux_$(uname -m)" \
            -r docker/node-requirements.txt "setuptools>=61" wheel
        touch "$wheels/.complete-$req_hash"
    fi
    mkdir -p "$ctx/node/docker/wheels"
    cp -a pyproject.toml docker/Dockerfile.node "$ctx/node/"
    [[ -f README.md ]] && cp README.md "$ctx/node/" || echo "# raftcheck" >"$ctx/node/README.md"
    cp docker/node-requirements.txt "$ctx/node/docker/"
    cp "$wheels"/*.whl "$ctx/node/docker/wheels/"
    for pkg in node; do
        mkdir -p "$ctx/node/$pkg"
        (cd "$pkg" && find . -name '*.py' -not -path '*/__pycache__/*' -exec cp --parents {} "$ctx/node/$pkg/" \;)
    done
    build "$node_image" "$node_hash" "$ctx/node/Dockerfile.node" "$ctx/node" \
        --build-arg "PIP_OPTIONS=--no-index --find-links=/src/docker/wheels"
fi

# --- raftcheck/toxiproxy ------------------------------------------------------------
# A static Go build (CGO_ENABLED=0) runs on any base; without Go, the host's binary.
toxi_bin="$cache/toxiproxy-$toxiproxy_version-static"
if [[ ! -x "$toxi_bin" ]]; then
    if command -v go >/dev/null 2>&1; then
        log "building a static toxiproxy-server $toxiproxy_version"
        mkdir -p "$cache/gobin"
        (cd /tmp && CGO_ENABLED=0 GOBIN="$cache/gobin" go install \
            "github.com/Shopify/toxiproxy/v2/cmd/server@$toxiproxy_version")
        mv "$cache/gobin/server" "$toxi_bin"
    elif command -v toxiproxy-server >/dev/null 2>&1; then
        toxi_bin=$(readlink -f "$(command -v toxiproxy-server)")
    else
        log "neither Go nor toxiproxy-server found: install Go (or build with BUILDER_IMAGE=golang:...)"; exit 1
    fi
fi
toxi_hash=$( { echo "$base_id"; cat docker/Dockerfile.toxiproxy; sha256sum <"$toxi_bin"; } \
    | sha256sum | cut -c1-16)
if up_to_date "$toxi_image" "$toxi_hash"; then
    log "$toxi_image is up to date"
else
    mkdir -p "$ctx/toxiproxy"
    cp docker/Dockerfile.toxiproxy "$ctx/toxiproxy/"
    cp "$toxi_bin" "$ctx/toxiproxy/toxiproxy-server"
    build "$toxi_image" "$toxi_hash" "$ctx/toxiproxy/Dockerfile.toxiproxy" "$ctx/toxiproxy" \
        --build-arg "BUILDER_IMAGE=$base"
    # The legacy builder keeps the build stage as an untagged image: drop it.
    docker image prune -f --filter label=raftcheck.stage=toxiproxy-build >/dev/null
fi

# --- raftcheck/gonode ---------------------------------------------------------------
# The second implementation of the node contract (gonode/, etcd's Raft library) as a
# node image, for --node-image: a static Go build of the sources, copied onto the base.
gonode_image=${RAFTCHECK_GONODE_IMAGE:-raftcheck/gonode:latest}
if command -v go >/dev/null 2>&1; then
    gonode_hash=$( { echo "$base_id"; cat docker/Dockerfile.gonode;
                     (cd gonode && cat go.mod go.sum *.go); } | sha256sum | cut -c1-16)
    if up_to_date "$gonode_image" "$gonode_hash"; then
        log "$gonode_image is up to date"
    else
        mkdir -p "$ctx/gonode"
        cp docker/Dockerfile.gonode "$ctx/gonode/"
        (cd gonode && CGO_ENABLED=0 go build -buildvcs=false -o "$ctx/gonode/raftcheck-gonode" .)
        build "$gonode_image" "$gonode_hash" "$ctx/gonode/Dockerfile.gonode" "$ctx/gonode" \
            --build-arg "BUILDER_IMAGE=$base"
        docker image prune -f --filter label=raftcheck.stage=gonode-build >/dev/null
    fi
else
    log "Go not found: $gonode_image not built (docs/node-contract.md section 5)"
fi
