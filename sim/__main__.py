"""`python -m sim --seed N ...`: one seeded simulation run (sim.cli)."""

import sys

from sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
