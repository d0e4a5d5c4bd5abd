#!/usr/bin/env bash
# One command from a fresh checkout to the whole test suite: installs everything the
# tests use (Python packages, toxiproxy, Docker engine and images, Chromium, the
# Porcupine module), then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --all
export PATH="$HOME/.local/bin:$PATH"
exec python3 -m pytest "$@"
