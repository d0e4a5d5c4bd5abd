"""The `raftcheck` command line: one subcommand per job.

Each subcommand lives in its own module, which provides
``add_arguments(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int`` (the exit code, SPEC section 3).
Modules are imported only when their subcommand runs, so a slow import
(matplotlib, docker) never delays another command.

Exit codes: 0 valid, 1 invalid, 2 unknown, 254 bad usage or input, 255 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from history.errors import BadInput

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 254, 255

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "test": ("campaign.test_cmd", "run a chaos test: cluster, clients, faults, check"),
    "check": ("campaign.check_cmd", "check history files for linearizability"),
    "analyze": ("campaign.analyze_cmd", "re-check a stored run (default: the latest)"),
    "campaign": ("campaign.campaign_cmd", "run a matrix of tests from a YAML file"),
    "summary": ("campaign.summary_cmd", "merge the stores of a campaign's shards into one "
                                        "table"),
    "node": ("node.cli", "run one Raft register node"),
    "serve": ("report.serve", "browse the store in a web browser"),
    "clean": ("campaign.clean_cmd", "remove containers and networks left by crashed runs"),
    "sim": ("sim.cli", "find Raft bugs in a seeded simulation, many seeds in parallel"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with SPEC's exit code for bad usage (254) and a one-line message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = _Parser(prog="raftcheck", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = None
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
            chosen = module
    return parser, chosen


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser, _ = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args._run(args))
    except BadInput as e:
        print(f"raftcheck: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`raftcheck check ... | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("raftcheck: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal error: say what, and where to look
        logging.getLogger("raftcheck").debug("internal error", exc_info=True)
        print(f"raftcheck: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
