"""`python -m node --config cluster.yaml --id n1 ...`: the same as `raftcheck node`."""

import sys

from node.cli import main

if __name__ == "__main__":
    sys.exit(main())
