"""Porcupine's corpus: our checker must reach Porcupine's verdict on every history.

The corpus is Porcupine's own test_data (github.com/anishathalye/porcupine v1.3.0,
obtained with `go mod download`, never copied here): 102 etcd Jepsen histories (23
linearizable, 79 not; etcd_095 is empty, its cluster never started) and the kv
histories c01/c10/c50 ok/bad. The expected verdicts are read from Porcupine's
porcupine_test.go (`checkJepsen(t, N, true)`, `checkKv(t, "c01-ok", true, ...)`).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require


@pytest.fixture(scope="module")
def corpus() -> Path:
    from checker import porcupine_oracle
    require(shutil.which("go") is not None,
            "'go' not found on PATH (go mod download fetches Porcupine's corpus)")
    try:
        porcupine_oracle.build()
        return porcupine_oracle.porcupine_dir()
    except porcupine_oracle.OracleUnavailable as e:  # e.g. offline with an empty module cache
        require(False, str(e))
        raise


def _expectations(corpus: Path) -> tuple[dict[Path, bool], dict[Path, bool]]:
    src = (corpus / "porcupine_test.go").read_text()
    etcd = {corpus / "test_data" / "jepsen" / f"etcd_{int(n):03d}.log": v == "true"
            for n, v in re.findall(r"func TestEtcdJepsen\d+\(t \*testing\.T\) \{\s*"
                                   r"checkJepsen\(t, (\d+), (true|false)\)", src)}
    kv = {corpus / "test_data" / "kv" / f"{name}.txt": v == "true"
          for name, v in re.findall(r"func TestKv\w+\(t \*testing\.T\) \{\s*"
                                    r"checkKv\(t, \"([\w-]+)\", (true|false), true\)", src)}
    return etcd, kv


def _ours(ops, model):
    import checker
    check = getattr(checker, "check", None)
    require(check is not None, "checker.check is not available yet")
    return check(ops, model=model, time_limit=60, shrink=False).valid


def _differences(results: dict[Path, object], expected: dict[Path, bool]) -> list[str]:
    return [f"{p.name}: ours {results.get(p, 'no verdict')!r}, Porcupine {expected[p]}"
            for p in sorted(expected) if results.get(p) is not expected[p]]


def test_corpus_is_complete(corpus):
    etcd, kv = _expectations(corpus)
    assert len(etcd) == 102
    assert sum(etcd.values()) == 23
    assert all(p.exists() for p in etcd)
    empty = corpus / "test_data" / "jepsen" / "etcd_095.log"
    assert empty not in etcd and empty.stat().st_size == 0
    assert sorted(p.name for p in kv) == sorted(
        f"c{c}-{k}.txt" for c in ("01", "10", "50") for k in ("ok", "bad"))
    assert all(v == p.name.endswith("-ok.txt") for p, v in kv.items())


def test_porcupine_itself_agrees_with_its_tests(corpus):
    """The oracle's corpus mode (used by bench/checker.py) gives Porcupine's expected verdicts."""
    from checker import porcupine_oracle
    etcd, kv = _expectations(corpus)
    got = {Path(v.name): v.valid for v in
           porcupine_oracle.check_corpus("etcd", corpus / "test_data" / "jepsen")}
    got.update({Path(v.name): v.valid for v in
                porcupine_oracle.check_corpus("kv", corpus / "test_data" / "kv")})
    assert _differences(got, {**etcd, **kv}) == []


def test_imported_etcd_histories_keep_porcupine_verdicts(corpus, tmp_path):
    """Our porcupine importer, written out as history.jsonl and checked by Porcupine
    under SPEC semantics, keeps every verdict: the import loses no meaning."""
    from checker import porcupine_oracle
    from history.formats import read_history
    from checker.generate import write_jsonl
    etcd, _ = _expectations(corpus)
    files = {}
    for p in sorted(etcd):
        files[p] = tmp_path / (p.stem + ".jsonl")
        write_jsonl(read_history(p, format="porcupine"), files[p])
    verdicts = porcupine_oracle.check_files(files.values(), model="cas-register")
    got = {p: v.valid for p, v in zip(files, verdicts)}
    assert _differences(got, etcd) == []


def test_etcd_verdicts_equal_porcupines(corpus):
    from history.formats import read_history
    etcd, _ = _expectations(corpus)
    got = {p: _ours(read_history(p, format="porcupine"), "cas-register") for p in etcd}
    assert _differences(got, etcd) == []


def test_empty_etcd_history_reads_as_empty(corpus):
    from history.formats import read_history
    assert read_history(corpus / "test_data" / "jepsen" / "etcd_095.log", format="porcupine") == []


def test_kv_verdicts_equal_porcupines(corpus):
    from history.formats import read_history
    _, kv = _expectations(corpus)
    got = {p: _ours(read_history(p), "kv") for p in kv}
    assert _differences(got, kv) == []


def test_check_command_on_etcd_corpus(corpus):
    """`raftcheck check --format porcupine` prints Porcupine's verdict for each file."""
    require(importlib.util.find_spec("campaign.check_cmd") is not None,
            "'raftcheck check' (campaign/check_cmd.py) is not available yet")
    etcd, _ = _expectations(corpus)
    files = sorted(etcd)[::7]  # a spread of 15 files, both verdicts, in one process
    assert {etcd[p] for p in files} == {True, False}
    proc = subprocess.run([sys.executable, "-m", "campaign.cli", "check", "--format", "porcupine",
                           "--model", "cas-register", "--time-limit", "60", *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    verdicts = {}
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0] in map(str, files):
            verdicts[Path(parts[0])] = {"true": True, "false": False}.get(parts[1], parts[1])
    assert _differences(verdicts, {p: etcd[p] for p in files}) == [], proc.stderr[-2000:]
    assert proc.returncode == 1  # some file is invalid: false beats true
