"""The pytest plugin (pytest_raftcheck), used the way a user uses it: a test file of
their own, run by pytest (pytester, in a subprocess) with the plugin found through its
`pytest11` entry point. The same 15-line test is in docs/usage.md."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
from pathlib import Path

import pytest

from tests.support import require_toxiproxy

pytest_plugins = ["pytester"]

USER_TEST = '''
import pytest

@pytest.mark.raftcheck(nodes=3, bug=BUG)
def test_no_stale_read_from_a_deposed_leader(raftcheck_cluster, raftcheck_nemesis,
                                             raftcheck_client, assert_linearizable):
    old = raftcheck_nemesis.leader()
    raftcheck_client(follow_leader=True).write("x", 1)
    raftcheck_nemesis.partition("one", target=old)          # the leader, cut off
    others = [n for n in raftcheck_cluster.node_ids if n != old]
    new = raftcheck_nemesis.leader(among=others)             # a new leader, elected
    assert raftcheck_client(new).write("x", 2)["ok"]         # acknowledged
    raftcheck_client(old).read("x")                          # stale, or refused
    raftcheck_nemesis.heal()
    assert_linearizable()
'''


def test_the_plugin_is_registered_by_installing_raftcheck():
    found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert found.get("raftcheck") == "pytest_raftcheck.plugin", \
        "pip install -e . registers the pytest11 entry point"


def _run_user_test(pytester: pytest.Pytester, bug: str | None) -> tuple[object, Path]:
    require_toxiproxy()
    pytester.makepyfile(test_user=USER_TEST.replace("BUG", repr(bug)))
    store = pytester.path / "store"
    result = pytester.runpytest_subprocess("--raftcheck-store", str(store),
                                           "-p", "no:cacheprovider", timeout=240)
    return result, store


def test_a_user_test_finds_the_planted_local_reads_bug(pytester: pytest.Pytester):
    result, store = _run_user_test(pytester, "local-reads")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "the history is not linearizable" in out
    assert re.search(r"read .*1.*but the register holds 2", out), out[-3000:]
    folder = re.search(r"run folder: (\S+)", out).group(1)
    run = Path(folder)
    assert run.is_dir() and str(run).startswith(str(store))
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is False
    assert (run / "report.html").is_file() and (run / "nodes" / "n1.log").is_file()
    ops = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    fs = [o["f"] for o in ops if o["process"] == "nemesis"]
    assert fs == ["start-partition", "start-partition", "stop-partition", "stop-partition"]


def test_the_same_user_test_passes_on_the_correct_node(pytester: pytest.Pytester):
    result, store = _run_user_test(pytester, None)
    result.assert_outcomes(passed=1)
    runs = list(store.glob("pytest-*/*/results.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["valid"] is True


def test_a_bad_marker_option_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile(test_bad='''
import pytest
@pytest.mark.raftcheck(nodez=3)
def test_x(raftcheck_cluster):
    pass
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    assert "unknown option 'nodez'" in result.stdout.str() + result.stderr.str()
    assert result.ret != 0


def test_a_user_test_that_observed_nothing_fails_as_vacuous(pytester: pytest.Pytester,
                                                           monkeypatch):
    """The checker calls an empty history linearizable (with a "nothing observed"
    note); a fault test that recorded nothing still proves nothing, so it fails."""
    root = str(Path(__file__).resolve().parent.parent)   # this checkout's code
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makepyfile(test_empty='''
def test_nothing(assert_linearizable):
    assert_linearizable()
''')
    store = pytester.path / "store"
    result = pytester.runpytest_subprocess("--raftcheck-store", str(store),
                                           "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(failed=1)
    assert "linearizability unknown: vacuous: nothing observed" in result.stdout.str()
    (runs,) = list(store.glob("pytest-*/*/results.json"))
    results = json.loads(runs.read_text())
    assert results["valid"] == "unknown"
    assert results["checkers"]["linearizable"]["valid"] is True
