"""report.html: it renders in real headless Chromium without script errors, for a valid
and an invalid run, shows the failing op, stays bounded, and never raises on bad data."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from report import timeline
from history.intervals import pair
from report.page import render_report
from history.ops import Op
from report.sample import results_for, synthetic_history
from tests.support import require

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TEST_JSON = {"name": "register-partition", "seed": 42,
             "options": {"nodes": 3, "concurrency": 5, "nemesis": ["partition"]}}


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium (Debian's), driven by selenium through chromedriver."""
    chromium = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    driver_bin = CHROMEDRIVER if os.path.exists(CHROMEDRIVER) else shutil.which("chromedriver")
    require(bool(chromium and driver_bin), "chromium and chromedriver are needed "
            "(apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium is needed (pip install selenium)")
    profile = tempfile.mkdtemp(prefix="raftcheck-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(driver_bin))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver, path: Path) -> list[dict]:
    """Load a page; return its script errors (and failed loads) from the browser log."""
    driver.get_log("browser")  # drop what an earlier page left
    driver.get(path.resolve().as_uri())
    driver.execute_script("return document.readyState")
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _hover_op(driver, index: int):
    """Move the mouse onto op `index`'s bar in the timeline; return the tooltip."""
    from selenium.webdriver.common.action_chains import ActionChains

    x, y = driver.execute_script("""
        var tl = window.raftcheckTimeline; tl.focusFailure();
        var p = tl.locate(arguments[0]), c = document.getElementById('tl-canvas');
        var r = c.getBoundingClientRect(); window.scrollBy(0, r.top + p.y - innerHeight / 2);
        r = c.getBoundingClientRect();
        return [Math.round(r.left + p.x), Math.round(r.top + p.y)];""", index)
    actions = ActionChains(driver)
    actions.w3c_actions.pointer_action.move_to_location(x, y)
    actions.perform()
    return driver.find_element("id", "tl-tip")


def test_valid_run_renders_without_script_errors(browser, tmp_path):
    ops = synthetic_history(2000, seed=5)
    results = results_for(ops)
    assert results["valid"] is True
    out = tmp_path / "report.html"
    assert render_report(ops, results, TEST_JSON, out) == []
    assert _open(browser, out) == []
    assert browser.find_element("id", "verdict").text == "VALID"
    assert browser.find_element("id", "seed").text == "42"
    assert browser.find_elements("id", "no-failures")
    # the timeline script ran and drew every op; both plots decode as images
    drawn = browser.execute_script("return window.raftcheckTimeline.drawn")
    assert drawn == len(pair(ops).ops)
    for plot in ("plot-latency", "plot-rate"):
        width = browser.execute_script(
            f"return document.getElementById('{plot}').naturalWidth")
        assert width > 100
    # zoom in, out and back: the view changes and no error is raised
    whole = browser.execute_script("return window.raftcheckTimeline.view()")
    browser.find_element("id", "tl-in").click()
    zoomed = browser.execute_script("return window.raftcheckTimeline.view()")
    assert zoomed[1] - zoomed[0] < whole[1] - whole[0]
    browser.find_element("id", "tl-reset").click()
    assert browser.execute_script("return window.raftcheckTimeline.view()") == whole
    from selenium.webdriver.support.ui import Select
    keys = Select(browser.find_element("id", "tl-key"))
    assert len(keys.options) == 1 + 8  # "all" and the 8 keys of the synthetic run
    keys.select_by_index(2)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_invalid_run_shows_the_failing_op(browser, tmp_path):
    ops = synthetic_history(2000, seed=3, stale_read=True)
    results = results_for(ops)
    assert results["valid"] is False
    failure = results["checkers"]["linearizable"]["failures"][0]
    bad = failure["op"]["index"]
    out = tmp_path / "report.html"
    assert render_report(ops, results, TEST_JSON, out) == []
    assert _open(browser, out) == []
    assert browser.find_element("id", "verdict").text == "INVALID"
    shown = browser.find_element("id", "failing-op")
    assert shown.is_displayed() and f"op {bad} " in shown.text
    assert failure["reason"] in browser.find_element("css selector", ".reason").text
    # the Porcupine-like window: the failing op in red, numbered linearization points
    svg_bad = browser.find_elements("css selector", ".failure .lv-fail-op")
    assert svg_bad and svg_bad[0].get_attribute("data-index") is not None
    assert len(browser.find_elements("css selector", "#failure-1 .lv-point")) >= 1
    assert browser.find_elements("css selector", ".shrunk svg")
    # the timeline starts on the failing op; hovering its bar (a real mouse move) names it
    idx = int(svg_bad[0].get_attribute("data-index"))
    tip = _hover_op(browser, idx)
    assert tip.is_displayed()
    assert f"op {idx} " in tip.text and "CANNOT BE LINEARIZED" in tip.text
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_history_values_cannot_inject_script(browser, tmp_path):
    evil = "</script><script>window.pwned=1</script><img src=x onerror='window.pwned=2'>"
    ops = [Op(0, 0, "invoke", 0, "write", evil, key="k"),
           Op(1, 1_000_000, "ok", 0, "write", evil, key="k"),
           Op(2, 2_000_000, "invoke", 1, "read", None, key="k"),
           Op(3, 3_000_000, "ok", 1, "read", evil, key="k")]
    out = tmp_path / "report.html"
    render_report(ops, results_for(ops), {"name": evil, "seed": evil}, out)
    assert _open(browser, out) == []
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.find_element("id", "seed").text == evil


def test_ten_thousand_ops_stay_under_five_megabytes(tmp_path):
    ops = synthetic_history(10_000, seed=7, stale_read=True)
    out = tmp_path / "report.html"
    assert render_report(ops, results_for(ops), TEST_JSON, out) == []
    assert out.stat().st_size < 5 * 1024 * 1024
    assert "Cannot be linearized" in out.read_text(encoding="utf-8")


def test_large_histories_draw_a_bounded_window_and_keep_named_ops():
    iv = pair(synthetic_history(6000, seed=2))
    named = iv.ops[0].index            # far from the centre: kept because it is named
    centre = iv.ops[len(iv.ops) // 2].start
    drawn, note = timeline.select(iv, centre, [named], max_ops=500)
    assert len(drawn) == 501 and note and "3,000 ops" in note
    assert named in {o.index for o in drawn}
    assert len(timeline.select(iv, centre, [], max_ops=10_000)[0]) == len(iv.ops)
    data = timeline.payload(iv, drawn, {})
    assert sum(data["overview"]["ok"] + data["overview"]["fail"]
               + data["overview"]["info"]) == len(iv.ops)


def test_drawing_problems_are_warnings_and_keep_the_verdict(tmp_path):
    ops = synthetic_history(200, seed=1)
    ops.append(Op(len(ops), ops[-1].time + 1, "ok", 999, "read", 1, key=0))  # no invoke
    broken = {"valid": False, "checkers": {"linearizable": {
        "valid": False, "failures": [{"key": 0, "op": {"index": 10**9},
                                      "prefix": "not a list", "concurrent": [None, "x"],
                                      "shrunk": [{"type": "ok"}, 5], "state": object()}]}},
        "stats": {}}
    out = tmp_path / "report.html"
    warnings = render_report(ops, broken, None, out)
    assert any("no invoke" in w for w in warnings)
    page = out.read_text(encoding="utf-8")
    assert 'id="verdict">INVALID<' in page
    # an unwritable destination is a warning too, never an exception
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert any("cannot write" in w for w in render_report(ops, broken, None, blocker / "r.html"))


def test_offline_report_accepts_a_bare_checker_result(tmp_path):
    ops = synthetic_history(300, seed=4, stale_read=True)
    lin = results_for(ops)["checkers"]["linearizable"]
    out = tmp_path / "offline.html"
    assert render_report(ops, lin, None, out) == []
    page = out.read_text(encoding="utf-8")
    assert 'id="verdict">INVALID<' in page and "Offline check" in page
    assert not re.search(r"(src|href|url)\s*[=(]\s*[\"']?\s*(https?:)?//", page)  # offline
    json.loads(page.split('id="tl-data">')[1].split("</script>")[0])


def test_an_offline_check_that_observed_nothing_says_so(tmp_path):
    import checker
    lin = checker.check([]).to_dict()
    out = tmp_path / "empty.html"
    assert render_report([], lin, None, out) == []
    page = out.read_text(encoding="utf-8")
    assert 'id="verdict">VALID<' in page
    assert "linearizable: " in page and "nothing observed: the history has no completed" in page


def test_empty_unknown_run_renders(browser, tmp_path):
    results = {"valid": "unknown", "checkers": {"linearizable": {
        "valid": "unknown", "unknown_reason": "time limit 1 s reached at key 3"}}, "stats": {}}
    out = tmp_path / "report.html"
    assert render_report([], results, {"name": "empty", "seed": 1}, out) == []
    assert _open(browser, out) == []
    assert browser.find_element("id", "verdict").text == "UNKNOWN"
    assert "time limit 1 s reached at key 3" in browser.find_element("id", "summary").text
    assert browser.execute_script("return window.raftcheckTimeline.drawn") == 0


def _evidence_run(tmp_path: Path, evil: str = "") -> dict:
    """The evidence checkers, computed by campaign.evidence on real files: two leaders
    in term 2 (with their log lines) and logs that differ at a committed index."""
    from campaign.evidence import add_to_results, check_run
    from tests.test_evidence import IDS, clean_log, event, make_run, wal
    logs = {nid: clean_log(nid) for nid in IDS}
    logs["n2"].insert(6, event(5, "n2", event="leader", term=2))
    logs["n1"].insert(5, "2026-01-01T00:00:04.500 INFO n1 raftcheck.node.server: " + evil)
    bad = [(1, None), (1, {"op": "write", "key": evil or 1, "value": 6})]
    run = make_run(tmp_path, logs=logs, wals={"n3": wal(2, "n1", 2, bad)})
    ops = synthetic_history(300, seed=6)
    results = add_to_results(results_for(ops), check_run(run, IDS, []))
    return {"ops": ops, "results": results}


def test_evidence_violations_show_with_their_log_lines_and_entries(browser, tmp_path):
    run = _evidence_run(tmp_path)
    results = run["results"]
    assert results["checkers"]["linearizable"]["valid"] is True
    assert results["valid"] is False
    out = tmp_path / "report.html"
    assert render_report(run["ops"], results, TEST_JSON, out) == []
    assert _open(browser, out) == []
    assert browser.find_element("id", "verdict").text == "INVALID"
    # near the top: one badge per checker with its verdict
    badges = {b.get_attribute("data-checker"): b.text for b in
              browser.find_elements("css selector", "#checkers .badge")}
    assert badges == {"linearizable": "linearizable: VALID",
                      "node-health": "node-health: VALID",
                      "raft-invariants": "raft-invariants: INVALID"}
    section = browser.find_element("id", "ev-raft-invariants")
    assert "Election Safety (Figure 3): term 2 has 2 leaders" in section.text
    row = browser.find_element("css selector", 'tr[data-invariant="election-safety"]')
    assert "INVALID" in row.text and "leader events 3" in row.text
    # the leader lines of both nodes, marked in their excerpts
    marked = [m.text for m in browser.find_elements(
        "css selector", "#ev-raft-invariants-1 pre.logx .mark")]
    assert len(marked) == 2 and all('"event":"leader","term":2' in m for m in marked)
    # the diverging entries side by side, the differing index marked
    diverge = browser.find_elements("css selector", "#ev-raft-invariants .entries tr.diverge")
    assert diverge and diverge[0].text.startswith("2 ")
    assert '"value":6' in diverge[0].text and '"value":5' in diverge[0].text
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_evidence_text_cannot_inject_script(browser, tmp_path):
    evil = "</pre><script>window.pwned=1</script><img src=x onerror='window.pwned=2'>"
    run = _evidence_run(tmp_path, evil)
    out = tmp_path / "report.html"
    render_report(run["ops"], run["results"], TEST_JSON, out)
    assert _open(browser, out) == []
    assert browser.execute_script("return window.pwned === undefined")


def test_a_run_without_evidence_says_so(tmp_path):
    ops = synthetic_history(100, seed=2)
    out = tmp_path / "report.html"
    assert render_report(ops, results_for(ops), TEST_JSON, out) == []
    page = out.read_text(encoding="utf-8")
    assert 'id="no-evidence"' in page and 'data-checker="linearizable"' in page


def test_the_first_screen_is_the_verdict_the_timeline_and_the_plots(browser, tmp_path):
    """A person reads the verdict, then the drawings; the figures come as small tables
    after them and the options are folded at the end."""
    ops = synthetic_history(2000, seed=5)
    results = results_for(ops)
    results["stats"] = {"by_phase": {"during-faults": {"ok": 5, "fail": 1, "info": 0}},
                        "errors": {"timeout": 3, "not-leader": 7},
                        "faults": {"kinds": {"kill": {"count": 2, "active_s": 3.5,
                                                      "ops": {"ok": 9}, "availability": 0.9}}}}
    out = tmp_path / "report.html"
    assert render_report(ops, results, TEST_JSON, out) == []
    page = out.read_text()
    order = [page.index(f'id="{i}"') for i in ("verdict", "summary", "timeline", "plots",
                                               "evidence", "stats", "run-options")]
    assert order == sorted(order)
    assert "<details><summary>Options</summary>" in page          # folded
    assert 'id="by-phase"' in page and 'id="errors"' in page and 'id="faults"' in page
    assert page.index('id="stats-all"') > page.index('id="faults"')  # dotted keys last
    assert _open(browser, out) == []
    top = browser.execute_script(
        "return ['timeline', 'plots'].map(i => document.getElementById(i)"
        ".getBoundingClientRect().top + window.scrollY)")
    assert top[0] < 1200 and top[1] < 2000, top
    assert not browser.find_element("id", "options").is_displayed()
