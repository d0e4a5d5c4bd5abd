#!/usr/bin/env bash
# Build raftcheck/base:local: a minimal Debian (debootstrap) with python3, venv and pip,
# imported with `docker import`. For machines that reach no container registry: the
# project's images are then built FROM it (BASE_IMAGE=raftcheck/base:local).
#
# Idempotent: when the image exists with the same recipe label, it does nothing.
# Environment: RAFTCHECK_DEBIAN_MIRROR (default: the first Debian mirror in
# /etc/apt/sources.list*; set it on a machine without one), RAFTCHECK_DEBIAN_SUITE
# (default: the host's release codename, else bookworm), RAFTCHECK_BASE_IMAGE
# (default raftcheck/base:local). Needs root, debootstrap and a running Docker engine.
set -euo pipefail

log() { echo "base-image: $*" >&2; }

image=${RAFTCHECK_BASE_IMAGE:-raftcheck/base:local}
packages=python3,python3-venv,python3-pip,ca-certificates

suite=${RAFTCHECK_DEBIAN_SUITE:-}
if [[ -z "$suite" && -r /etc/os-release ]]; then
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi
suite=${suite:-bookworm}

mirror=${RAFTCHECK_DEBIAN_MIRROR:-}
if [[ -z "$mirror" ]]; then
    # deb822 files ("URIs: ...") first, then one-line "deb URI suite ..." entries.
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {print $2}' | grep -v -e security -e updates | grep -i debian | head -n1 || true)
fi
if [[ -z "$mirror" ]]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" && $2 !~ /\[/ {print $2}' | grep -v security | grep -i debian | head -n1 || true)
fi

recipe=$(printf '%s\n' "v1" "$suite" "$packages" | sha256sum | cut -c1-16)
if have=$(docker image inspect --format '{{index .Config.Labels "raftcheck.base.recipe"}}' "$image" 2>/dev/null) \
        && [[ "$have" == "$recipe" ]]; then
    log "$image is up to date (recipe $recipe)"
    exit 0
fi

[[ -n "$mirror" ]] || { log "no Debian mirror in /etc/apt/sources.list*: set RAFTCHECK_DEBIAN_MIRROR"; exit 1; }
command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
[[ $(id -u) -eq 0 ]] || { log "debootstrap needs root"; exit 1; }

root=$(mktemp -d /tmp/raftcheck-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
log "debootstrap $suite from $mirror into $root (about a minute)"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" \
    >"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# Trim what a container never needs: apt lists and caches, docs, man pages, locales.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*
find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true

log "importing as $image"
tar --numeric-owner -C "$root" -c . | docker import \
    --change "LABEL raftcheck.base.recipe=$recipe" \
    --change "LABEL org.opencontainers.image.description=\"raftcheck offline base: Debian $suite with python3\"" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$image" >/dev/null
log "built $image ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
