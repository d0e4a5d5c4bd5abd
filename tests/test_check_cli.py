"""`raftcheck check`: output per file, explanations, JSON, exit codes (SPEC section 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "campaign", "check", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd or ROOT, timeout=60)
    return p.returncode, p.stdout, p.stderr


def write(path: Path, events):
    with open(path, "w") as f:
        for i, ev in enumerate(events):
            d = {"index": i, "time": i, "type": ev[0], "process": ev[1], "f": ev[2],
                 "value": ev[3]}
            f.write(json.dumps(d) + "\n")
    return path


VALID = [("invoke", 0, "write", 1), ("ok", 0, "write", 1),
         ("invoke", 1, "read", None), ("ok", 1, "read", 1)]
INVALID = [("invoke", 0, "write", 1), ("ok", 0, "write", 1),
           ("invoke", 0, "write", 2), ("ok", 0, "write", 2),
           ("invoke", 1, "read", None), ("ok", 1, "read", 1)]


@pytest.fixture
def files(tmp_path):
    hard = [("invoke", p, "write", p) for p in range(16)]
    hard += [("ok", p, "write", p) for p in range(16)]
    hard += [("invoke", 99, "read", None), ("ok", 99, "read", 1000)]
    bad = tmp_path / "bad.jsonl"
    write(bad, VALID)
    lines = bad.read_text().splitlines()
    lines[2] = lines[2].replace('"invoke"', '"invokd"')
    bad.write_text("\n".join(lines) + "\n")
    return {"valid": write(tmp_path / "valid.jsonl", VALID),
            "invalid": write(tmp_path / "invalid.jsonl", INVALID),
            "hard": write(tmp_path / "hard.jsonl", hard),
            "bad": bad}


def test_valid_file_exits_0(files):
    code, out, err = run(files["valid"])
    assert code == 0
    assert out.splitlines()[0] == f"{files['valid']}\ttrue"


def test_invalid_file_exits_1_with_explanation(files):
    code, out, _ = run(files["invalid"])
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{files['invalid']}\tfalse"
    assert "read 1, but the register holds 2, written by op 3" in out
    assert "history.txt line 6" in out
    assert "shrunk to" in out


def test_unknown_exits_2(files):
    code, out, _ = run(files["hard"], "--time-limit", "0.01")
    assert code == 2
    assert out.splitlines()[0] == f"{files['hard']}\tunknown"
    assert "time limit" in out


def test_bad_input_exits_254_with_one_line_naming_file_line_field(files):
    code, out, err = run(files["bad"])
    assert code == 254
    assert out.strip() == f"{files['bad']}\terror"
    (line,) = [ln for ln in err.splitlines() if "error" in ln]
    assert f"{files['bad']}:3: type: unknown type" in line
    assert "Traceback" not in err


def test_worst_exit_code_wins(files):
    assert run(files["valid"], files["hard"], "--time-limit", "0.01")[0] == 2
    assert run(files["hard"], files["invalid"], "--time-limit", "0.01")[0] == 1
    code, out, _ = run(files["invalid"], files["bad"], files["valid"])
    assert code == 254
    verdicts = [ln.split("\t")[1] for ln in out.splitlines() if "\t" in ln]
    assert verdicts == ["false", "error", "true"]


def test_json_output_one_object_per_file(files):
    code, out, _ = run(files["valid"], files["invalid"], "--json", "--no-shrink")
    assert code == 1
    objs = [json.loads(ln) for ln in out.splitlines()]
    assert [o["valid"] for o in objs] == [True, False]
    assert objs[1]["file"] == str(files["invalid"])
    assert objs[1]["failures"][0]["line"] == 6
    assert objs[1]["failures"][0]["shrunk"] == []


def test_bad_flags_and_missing_files_exit_254(files, tmp_path):
    assert run(files["valid"], "--model", "queue")[0] == 254
    assert run(files["valid"], "--time-limit", "-1")[0] == 254
    code, out, err = run(tmp_path / "missing.jsonl")
    assert code == 254 and "no such file" in err
    # a register history with cas ops: bad input for that model
    cas = write(tmp_path / "cas.jsonl", [("invoke", 0, "cas", [1, 2]),
                                         ("ok", 0, "cas", [1, 2])])
    code, out, err = run(cas, "--model", "register")
    assert code == 254 and "not an operation of the register model" in err


def test_formats_and_models_from_flags(tmp_path):
    log = tmp_path / "etcd.log"
    log.write_text("INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
                   "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
                   "INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]\n"
                   "INFO  jepsen.util - 1\t:fail\t:cas\t[1 2]\n")
    code, out, _ = run(log)
    assert code == 1 and "precondition-failed" in out
    edn = tmp_path / "kv.edn"
    edn.write_text('{:process 0, :type :invoke, :f :append, :key "k", :value "a"}\n'
                   '{:process 0, :type :ok, :f :append, :key "k", :value "a"}\n'
                   '{:process 1, :type :invoke, :f :get, :key "k", :value nil}\n'
                   '{:process 1, :type :ok, :f :get, :key "k", :value "a"}\n')
    assert run(edn, "--model", "kv", "--format", "edn")[0] == 0


def test_html_report(files, tmp_path):
    out = tmp_path / "report.html"
    code, _, err = run(files["invalid"], "--html", out)
    assert code == 1
    try:
        import report.page  # noqa: F401
    except ImportError:
        assert "not available" in err
    else:
        assert out.exists() and out.stat().st_size > 0


def test_several_invalid_keys_are_all_reported(tmp_path):
    path = tmp_path / "keys.jsonl"
    with open(path, "w") as f:
        i = 0
        for k in range(6):
            for ev in INVALID if k in (1, 4, 5) else VALID:
                d = {"index": i, "time": i, "type": ev[0], "process": 10 * k + ev[1],
                     "f": ev[2], "key": k, "value": ev[3]}
                f.write(json.dumps(d) + "\n")
                i += 1
    code, out, _ = run(path)
    assert code == 1
    assert "3 of 6 keys not linearizable: 1, 4, 5" in out
    assert out.count(": not linearizable") == 3 and "not decided" not in out
    code, out, _ = run("--json", path)
    assert code == 1
    (obj,) = [json.loads(line) for line in out.splitlines()]
    assert [fl["key"] for fl in obj["failures"]] == [1, 4, 5]
    assert all(fl["shrunk"] for fl in obj["failures"])
