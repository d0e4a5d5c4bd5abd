"""`python -m node --config cluster.yaml --id n1 ...`: the same as `raftcheck node`."""

import sys

from campaign.cli import main

if __name__ == "__main__":
    sys.exit(main(["node", *sys.argv[1:]]))
