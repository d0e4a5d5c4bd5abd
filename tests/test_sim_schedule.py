"""Fault schedules (sim/schedule.py) and their shrinking (sim/shrink.py).

A schedule is drawn from its own stream, written and read back in its text and JSON
forms, and refused with one line naming the fault and field when malformed. ddmin
finds a 1-minimal failing sub-list whatever the order candidates finish in.
"""

from __future__ import annotations

import json

import pytest

from history.errors import BadInput
from sim.params import SimParams
from sim.schedule import (Fault, faults_to_json, format_spec, generate, load_faults,
                          parse_spec)
from sim.shrink import ddmin

IDS = ["n1", "n2", "n3"]


def test_text_form_round_trips():
    faults = [Fault(0, "crash", "leader", 800), Fault(10, "partition", "n1,n2|n3", 1500),
              Fault(20, "one-way", "n1|n2,n3", 100), Fault(30, "torn-write", "n2", 300, 0.25),
              Fault(40, "clock", "n3", 2000, 0.5), Fault(50, "reorder", "-", 900),
              Fault(60, "isolate", "n1", 0), Fault(70, "pause", "leader", 400)]
    spec = format_spec(faults)
    assert parse_spec(spec, IDS) == faults
    assert parse_spec(spec.replace(";", "\n"), IDS) == faults
    assert format_spec([]) == "none" and load_faults("none", IDS) == []


def test_json_file_and_text_file(tmp_path):
    faults = [Fault(5, "crash", "n1", 10), Fault(1, "torn-write", "n2", 0, 0.5)]
    j = tmp_path / "f.json"
    j.write_text(json.dumps({"seed": 3, "faults": faults_to_json(faults)}))
    assert load_faults(str(j), IDS) == sorted(faults, key=lambda f: f.at)
    t = tmp_path / "f.txt"
    t.write_text(format_spec(faults) + "\n")
    assert load_faults(str(t), IDS) == sorted(faults, key=lambda f: f.at)


@pytest.mark.parametrize("spec, says", [
    ("1:crash:n1", "expected AT:KIND:TARGET:DURATION"),
    ("x:crash:n1:5", "integers"),
    ("1:explode:n1:5", "unknown fault kind 'explode'"),
    ("1:crash:n7:5", "target 'n7'"),
    ("1:partition:n1,n2:5", "expected groups"),
    ("1:partition:n1|n1:5", "two groups"),
    ("1:pause:n1:0", "needs a duration"),
    ("1:clock:n1:5", "needs ARG"),
    ("1:torn-write:n1:5:2", "between 0 and 1"),
])
def test_a_bad_fault_is_one_line_naming_it(spec, says):
    with pytest.raises(BadInput) as e:
        parse_spec("10:crash:n2:5;" + spec, IDS)
    text = str(e.value)
    assert "fault 2" in text and says in text and "\n" not in text


def test_a_bad_json_file_names_file_and_fault(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps([{"at": 1, "kind": "crash", "target": "n1"}, {"at": 2}]))
    with pytest.raises(BadInput) as e:
        load_faults(str(f), IDS)
    assert str(e.value).startswith(f"{f}: faults[1]: ")


def test_the_schedule_is_drawn_from_its_own_stream():
    for mix in ("classic", "figure8"):
        p = SimParams.from_seed(9, 3, 1500, mix)
        a, b = generate(9, p), generate(9, p)
        assert a == b and a and [f.at for f in a] == sorted(f.at for f in a)
        # other parameters (the network's, the clients') do not move the faults
        q = SimParams.from_seed(9, 3, 1500, mix)
        q.drop, q.clients, q.delay_max = 0.3, 9, 99
        assert generate(9, q) == a
    f8 = generate(9, SimParams.from_seed(9, 5, 1500, "figure8"))
    assert sum(f.target == "leader" for f in f8) > 100
    assert any(f.kind == "reorder" for f in f8)


def _batch(pred, log):
    def first_failing(cands):
        log.append(len(cands))
        found = [pred(c) for c in reversed(cands)][::-1]  # any completion order
        return found.index(True) if any(found) else None
    return first_failing


def test_ddmin_finds_a_one_minimal_failing_subset():
    items = list(range(40))
    pred = lambda c: {3, 17, 31} <= set(c)  # noqa: E731
    calls: list[int] = []
    out, complete = ddmin(items, _batch(pred, calls), lambda: False)
    assert complete and out == [3, 17, 31]
    for i in range(len(out)):  # 1-minimal: no single item can go
        assert not pred(out[:i] + out[i + 1:])


def test_ddmin_stops_when_out_of_time():
    out, complete = ddmin(list(range(64)), _batch(lambda c: 5 in c, []), lambda: True)
    assert not complete and out == list(range(64))
