#!/usr/bin/env bash
# One command from a fresh checkout to a default chaos test on local processes:
# installs what it needs, then runs `raftcheck test` (3 nodes, partitions and kills).
# Extra arguments go to `raftcheck test`, e.g. scripts/quickstart.sh --bug local-reads
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.local/bin:$PATH"
exec python3 -m campaign test "$@"
