#!/usr/bin/env bash
# Make sure a Docker engine answers; start dockerd in the background if none does.
#
# On a user's machine the running daemon is used as it is (DOCKER_HOST respected).
# On a machine with no daemon (CI here), Debian's docker.io is installed if missing
# and dockerd is started in the background, logging to $RAFTCHECK_DOCKERD_LOG
# (default /tmp/raftcheck-dockerd.log); it is left running for later steps.
# Exit status: 0 when `docker info` answers, 1 otherwise.
set -euo pipefail

log() { echo "docker-engine: $*" >&2; }
answers() { timeout 20 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
    log "a Docker engine answers (${DOCKER_HOST:-unix:///var/run/docker.sock}); using it"
    exit 0
fi

if [[ -n "${DOCKER_HOST:-}" && "${DOCKER_HOST}" != unix:///var/run/docker.sock ]]; then
    log "DOCKER_HOST=${DOCKER_HOST} does not answer; not starting a local engine for it"
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        log "no Docker engine answers and dockerd is not installed; install Docker first"
        exit 1
    fi
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq docker.io >/dev/null
fi

if [[ $(id -u) -ne 0 ]]; then
    log "no Docker engine answers; start it (e.g. 'sudo systemctl start docker') and retry"
    exit 1
fi

dockerd_log=${RAFTCHECK_DOCKERD_LOG:-/tmp/raftcheck-dockerd.log}
# A live dockerd process (a zombie or a dying one does not count).
dockerd_alive() { ps -C dockerd -o stat= 2>/dev/null | grep -qv '^Z'; }
start_dockerd() {
    log "no Docker engine answers: starting dockerd in the background (log: $dockerd_log)"
    # A pid file left by a killed engine would stop the new one (its pid may be reused).
    dockerd_alive || rm -f /var/run/docker.pid
    [[ $starts -gt 0 ]] || : >"$dockerd_log"
    # setsid: the engine outlives this script and the CI step that ran it.
    setsid nohup dockerd >>"$dockerd_log" 2>&1 </dev/null &
    starts=$((starts + 1))
}

starts=0
if dockerd_alive; then
    log "dockerd is running but does not answer yet; waiting for it"
else
    start_dockerd
fi
for _ in $(seq 1 60); do
    if answers; then
        log "Docker engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        exit 0
    fi
    # The engine we waited for went away (it was shutting down), or ours exited at
    # once (the old one still held the pid file): start again, a few times at most.
    if ! dockerd_alive && [[ $starts -lt 3 ]]; then
        sleep 1
        start_dockerd
    fi
    sleep 1
done
log "dockerd did not answer within 60 s; last lines of $dockerd_log:"
tail -n 20 "$dockerd_log" >&2 || true
exit 1
