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


# ------------------------------------------------------------------ odd input (issue 12)

DATA = ROOT / "tests" / "data"


def one_error_line(code, out, err, file, *words):
    """Exit 254, one line on stderr that names the file (and line and field)."""
    assert code == 254, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    assert lines[0].startswith(f"raftcheck: error: {file}") or file is None, lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.mark.parametrize("events", [[], [("invoke", 0, "write", 1)],
                                    [("invoke", 0, "write", 1), ("info", 0, "write", 1),
                                     ("invoke", 1, "read", None), ("fail", 1, "read", None)]])
def test_nothing_observed_is_valid_with_a_note(tmp_path, events):
    path = write(tmp_path / "h.jsonl", events)
    code, out, err = run(path)
    assert code == 0, (out, err)
    lines = out.splitlines()
    assert lines[0] == f"{path}\ttrue"
    assert lines[1].startswith("  note: nothing observed")
    code, out, _ = run("--json", path)
    obj = json.loads(out)
    assert code == 0 and obj["valid"] is True and obj["note"].startswith("nothing observed")


OK_READ = [("invoke", 0, "write", 1), ("ok", 0, "write", 1), ("invoke", 1, "read", None)]


def _line(i, typ, proc, f, value_json):
    return (f'{{"index":{i},"time":{i},"type":"{typ}","process":{proc},"f":"{f}"'
            + (f',"value":{value_json}' if value_json is not None else "") + "}")


@pytest.mark.parametrize("last, field, words", [
    (None, "value", ["missing"]),                         # today: a false "not linearizable"
    ("NaN", "value", ["NaN is refused"]),
    ("Infinity", "value", ["Infinity is refused"]),
    ("9" * 4301, "value", ["4,301 digits"]),               # today: an internal error
    ("[" * 500 + "]" * 500, "value", ["nested deeper than 64"]),
    ('"\\ud800"', "value", ["lone surrogate"]),
])
def test_odd_values_are_bad_input_naming_file_line_field(tmp_path, last, field, words):
    path = write(tmp_path / "h.jsonl", OK_READ)
    with open(path, "a") as f:
        f.write(_line(3, "ok", 1, "read", last) + "\n")
    one_error_line(*run(path), path, f"{path}:4: {field}: ", *words)


def test_a_json_array_file_and_forced_formats_that_find_no_ops(tmp_path):
    arr = tmp_path / "h.json"
    arr.write_text(json.dumps([json.loads(_line(0, "invoke", 0, "write", "1"))]) + "\n")
    for extra in ([], ["--format", "jsonl"]):
        one_error_line(*run(arr, *extra), arr, f"{arr}:1: ", "one JSON array")
    jsonl = write(tmp_path / "h.jsonl", VALID)
    one_error_line(*run(jsonl, "--format", "edn"), jsonl, f"{jsonl}:1: --format: ",
                   "the file is jsonl")
    one_error_line(*run(jsonl, "--format", "porcupine"), jsonl, f"{jsonl}:1: --format: ")
    edn = tmp_path / "h.edn"
    edn.write_text('{:type :invoke, :f :write, :value 1, :process 0}\n')
    one_error_line(*run(edn, "--format", "jsonl"), edn, f"{edn}:1: --format: ",
                   "the file is edn")
    log = tmp_path / "h.log"
    log.write_text("nothing to see\n")
    one_error_line(*run(log, "--format", "porcupine"), log, f"{log}:1: --format: ",
                   "no jepsen.util op line")


@pytest.mark.parametrize("flag, value, words", [
    ("--memory-limit", "inf", ["--memory-limit", "finite"]),   # today: an internal error
    ("--memory-limit", "nan", ["--memory-limit", "finite"]),
    ("--memory-limit", "-5", ["--memory-limit", "positive"]),
    ("--memory-limit", "1e308", ["--memory-limit", "at most"]),
    ("--time-limit", "inf", ["--time-limit", "finite"]),
    ("--failure-grace", "nan", ["--failure-grace", "finite"]),
    ("--initial", "NaN", ["--initial", "NaN"]),
    ("--initial", "[1,", ["--initial", "not valid JSON"]),
    ("--initial", "[" * 100 + "]" * 100, ["--initial", "nested deeper than 64"]),
])
def test_odd_numbers_in_flags_are_one_line(files, flag, value, words):
    one_error_line(*run(files["valid"], flag, value), None, *words)


def test_html_naming_a_folder_or_an_unwritable_path(files, tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    # checked before any history is: no verdict is computed for nothing
    code, out, err = run(files["valid"], "--html", folder)
    one_error_line(code, out, err, None, "--html", "is a folder")
    assert out == ""
    blocker = tmp_path / "file"
    blocker.write_text("")
    one_error_line(*run(files["valid"], "--html", blocker / "r.html"), None,
                   "--html", "is not a folder")
    one_error_line(*run(files["valid"], files["invalid"], "--html", blocker), None,
                   "--html", "is not a folder")
    # found only when writing: the verdict is printed all the same, then exit 254
    unwritable = Path("/proc/raftcheck-report.html")
    code, out, err = run(files["valid"], "--html", unwritable)
    one_error_line(code, out, err, files["valid"], "--html: cannot write")
    assert out.splitlines() == [f"{files['valid']}\ttrue"]


def test_knossos_mutex_histories():
    bad = DATA / "knossos" / "mutex-bad-etcd.edn"
    code, out, _ = run(bad, "--model", "mutex", "--no-shrink")
    assert code == 1, out
    assert out.splitlines()[0] == f"{bad}\tfalse"
    assert "the mutex: not linearizable" in out and "already held" in out
    good = DATA / "mutex-good.edn"
    code, out, _ = run(good, "--model", "mutex")
    assert (code, out.splitlines()[0]) == (0, f"{good}\ttrue")
    # not a mutex history: bad input, not a verdict
    code, out, err = run(good, "--model", "cas-register")
    one_error_line(code, out, err, good, "not an operation of the cas-register model")


def test_knossos_multi_register_history():
    good = DATA / "knossos" / "multi-register-good.edn"
    # Knossos checks it from x = 0, y = 0 (test/knossos/linear_test.clj)
    code, out, _ = run(good, "--model", "multi-register", "--initial", '{"x": 0, "y": 0}')
    assert (code, out.splitlines()[0]) == (0, f"{good}\ttrue")
    # from null registers, its first reads of 0 cannot be
    code, out, _ = run(good, "--model", "multi-register", "--no-shrink")
    assert code == 1 and "read 0 from" in out
    code, out, err = run(good, "--model", "mutex", "--initial", "{}")
    one_error_line(code, out, err, None, "--initial", "mutex")


def test_many_files_on_two_cores_print_what_one_process_prints(files, tmp_path):
    """A corpus (over SPLIT_MIN_BYTES) is split between this process and a forked
    child; the output is each file's own check, in order, and the exit code the worst."""
    from campaign.check_cmd import SPLIT_MIN_BYTES, split_point
    big = []
    for i in range(900):
        big += [("invoke", i % 7, "write", i), ("ok", i % 7, "write", i),
                ("invoke", 7, "read", None), ("ok", 7, "read", i)]
    corpus = [write(tmp_path / "big1.jsonl", big), files["invalid"], files["bad"],
              files["valid"], write(tmp_path / "big2.jsonl", big)]
    assert sum(p.stat().st_size for p in corpus) > SPLIT_MIN_BYTES
    at = split_point([str(p) for p in corpus])
    assert at is not None and 1 <= at < len(corpus)
    code, out, err = run(*corpus)
    alone = [run(p) for p in corpus]
    assert out == "".join(o for _, o, _ in alone)
    assert err == "".join(e for _, _, e in alone)
    assert code == 254 and [c for c, _, _ in alone] == [0, 1, 254, 0, 0]
    assert [ln.split("\t") for ln in out.splitlines() if "\t" in ln] == [
        [str(corpus[0]), "true"], [str(corpus[1]), "false"], [str(corpus[2]), "error"],
        [str(corpus[3]), "true"], [str(corpus[4]), "true"]]


def test_split_point_balances_the_shares_and_keeps_small_or_large_corpora_whole(tmp_path):
    from campaign.check_cmd import SPLIT_MAX_FILE_BYTES, split_point
    sizes = [10_000, 10_000, 60_000, 30_000, 30_000]
    paths = []
    for i, n in enumerate(sizes):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x" * n)
        paths.append(str(p))
    assert split_point(paths) == 3          # 80,000 | 60,000
    assert split_point(paths[:1]) is None   # one file
    assert split_point(paths[:2]) is None   # 20,000 bytes: not worth a fork
    (tmp_path / "huge").write_bytes(b"x" * (SPLIT_MAX_FILE_BYTES + 1))
    assert split_point(paths + [str(tmp_path / "huge")]) is None
    assert split_point(paths + [str(tmp_path / "missing")]) is None
