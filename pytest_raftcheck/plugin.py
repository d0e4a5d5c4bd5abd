"""The pytest plugin: options, the `raftcheck` marker and the fixtures (see the
package docstring).

    @pytest.mark.raftcheck(nodes=3, bug="local-reads", node_options={...}, crash_fs=False)
    def test_x(raftcheck_cluster, raftcheck_nemesis, raftcheck_client, assert_linearizable):
        ...

Each test gets a run folder `STORE/pytest-<test name>/<time>/` with its history
(history.jsonl), and, after `assert_linearizable`, results.json and report.html; the
cluster's logs are collected there when the test ends, pass or fail.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

DEFAULT_STORE = "store"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raftcheck", "raftcheck fault tests")
    group.addoption("--raftcheck-backend", choices=("local", "docker"), default="local",
                    help="where the raftcheck_cluster fixture runs nodes (default local)")
    group.addoption("--raftcheck-store", metavar="DIR", default=DEFAULT_STORE,
                    help="store of the tests' run folders (default ./store)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "raftcheck(nodes=3, bug=None, node_options=None, crash_fs=False): "
        "the raftcheck_cluster of this test")


class RaftcheckRun:
    """One test's run folder and history (history.writer.HistoryWriter)."""

    def __init__(self, store: Path, test_name: str) -> None:
        from campaign import store as store_mod
        from history.writer import HistoryWriter
        name = "pytest-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-")[:60]
        self.dir = store_mod.new_run_dir(store, name)
        self.history = HistoryWriter(self.dir / store_mod.HISTORY_JSONL)

    def check(self) -> tuple[Any, str]:
        """Check the history so far; (CheckResult, text for a person). Writes
        results.json and report.html into the run folder."""
        from campaign import store as store_mod
        from checker import check
        from report.page import render_report
        ops = list(self.history.ops)
        result = check(ops, "cas-register")
        valid = "unknown" if result.nothing_observed else result.valid  # vacuous
        results = {"valid": valid, "checkers": {"linearizable": result.to_dict()}}
        store_mod.write_json(self.dir / store_mod.RESULTS_JSON, results)
        try:
            render_report(ops, results, None, self.dir / store_mod.REPORT_HTML)
        except Exception:  # a drawing problem never hides the verdict
            pass
        text = result.explain() if result.valid is False else ""
        return result, text


@pytest.fixture
def raftcheck_run(request: pytest.FixtureRequest) -> Iterator[RaftcheckRun]:
    """The test's run folder and its history."""
    store = Path(request.config.getoption("--raftcheck-store"))
    run = RaftcheckRun(store, request.node.name)
    try:
        yield run
    finally:
        run.history.close()


@pytest.fixture
def raftcheck_cluster(request: pytest.FixtureRequest, raftcheck_run: RaftcheckRun
                      ) -> Iterator[Any]:
    """A started cluster (cluster.base.Cluster) of the backend `--raftcheck-backend`,
    sized and configured by the test's `raftcheck` marker; torn down after the test,
    its logs collected into the run folder."""
    from cluster.base import make_cluster
    marker = request.node.get_closest_marker("raftcheck")
    opts: dict[str, Any] = dict(marker.kwargs) if marker else {}
    unknown = set(opts) - {"nodes", "bug", "node_options", "crash_fs"}
    if unknown:
        raise pytest.UsageError(f"raftcheck marker: unknown option {sorted(unknown)[0]!r} "
                                "(nodes, bug, node_options, crash_fs)")
    bug = opts.get("bug")
    cluster = make_cluster(request.config.getoption("--raftcheck-backend"),
                           int(opts.get("nodes", 3)), raftcheck_run.dir,
                           bug=",".join(bug) if isinstance(bug, (list, tuple)) else bug,
                           node_options=opts.get("node_options"),
                           crash_fs=bool(opts.get("crash_fs", False)))
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.collect_logs(raftcheck_run.dir)
        finally:
            cluster.teardown()


@pytest.fixture
def raftcheck_nemesis(raftcheck_cluster: Any, raftcheck_run: RaftcheckRun) -> Iterator[Any]:
    """Faults by hand (pytest_raftcheck.faults.Faults), recorded in the history;
    everything still in force is healed after the test."""
    from pytest_raftcheck.faults import Faults
    faults = Faults(raftcheck_cluster, raftcheck_run.history)
    try:
        yield faults
    finally:
        try:
            faults.heal()
        except Exception:  # the cluster is torn down next anyway
            pass


@pytest.fixture
def raftcheck_client(raftcheck_cluster: Any, raftcheck_run: RaftcheckRun
                     ) -> Iterator[Callable[..., Any]]:
    """A factory of recording clients: `raftcheck_client("n1")` talks to n1 only,
    `raftcheck_client()` to whichever node leads (pytest_raftcheck.client)."""
    from pytest_raftcheck.client import RecordingClient
    urls = {n: raftcheck_cluster.client_url(n) for n in raftcheck_cluster.node_ids}
    made: list[RecordingClient] = []

    def make(node: str | None = None, follow_leader: bool = False) -> RecordingClient:
        if node is not None and node not in urls:
            raise ValueError(f"unknown node {node!r} (nodes: {', '.join(urls)})")
        client = RecordingClient(raftcheck_run.history, urls, node, follow_leader)
        made.append(client)
        return client
    try:
        yield make
    finally:
        for c in made:
            c.close()


@pytest.fixture
def assert_linearizable(raftcheck_run: RaftcheckRun) -> Callable[[], Any]:
    """A callable that checks the history recorded so far and fails the test, with
    the checker's explanation and the run folder, unless it is linearizable."""
    def check() -> Any:
        result, text = raftcheck_run.check()
        if result.valid is True and not result.nothing_observed:
            return result
        if result.valid is True:  # linearizable, but a test that saw nothing proves nothing
            pytest.fail(f"linearizability unknown: vacuous: {result.note}\nrun folder: "
                        f"{raftcheck_run.dir}", pytrace=False)
        if result.valid is False:
            pytest.fail(f"the history is not linearizable\n{text}\nrun folder: "
                        f"{raftcheck_run.dir}", pytrace=False)
        pytest.fail(f"linearizability unknown: {result.unknown_reason}\nrun folder: "
                    f"{raftcheck_run.dir}", pytrace=False)
    return check
