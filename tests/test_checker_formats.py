"""History I/O: jsonl validation, EDN and Porcupine importers, auto detection, history.txt."""

from __future__ import annotations

import json

import pytest

from history.errors import BadInput
from history.formats import detect_format, read_history, write_txt
from history.writer import HistoryWriter


def write_lines(path, dicts):
    with open(path, "w") as f:
        for i, d in enumerate(dicts):
            d = {"index": i, "time": i * 10, **d}
            f.write(json.dumps(d) + "\n")
    return path


GOOD = [
    {"type": "invoke", "process": 0, "f": "write", "value": 1, "key": "a"},
    {"type": "invoke", "process": 1, "f": "read", "value": None, "key": "a"},
    {"type": "ok", "process": 0, "f": "write", "value": 1, "key": "a", "node": "n1"},
    {"type": "info", "process": 1, "f": "read", "value": None, "key": "a",
     "error": "timeout"},
    {"type": "info", "process": "nemesis", "f": "start-partition", "value": "one"},
    {"type": "invoke", "process": 2, "f": "cas", "value": [1, 2], "key": "a"},
    {"type": "fail", "process": 2, "f": "cas", "value": [1, 2], "key": "a",
     "error": "precondition-failed"},
]


def test_jsonl_roundtrip_with_history_writer(tmp_path):
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as w:
        w.append("invoke", 0, "write", 3, key=7)
        w.append("ok", 0, "write", 3, key=7, node="n2")
        w.append("invoke", 1, "cas", [3, 4])
        w.append("fail", 1, "cas", [3, 4], error="precondition-failed")
    ops = read_history(path)
    assert [o.to_dict() for o in ops] == [o.to_dict() for o in w.ops]
    assert ops[0].key == 7 and not ops[2].has_key
    assert ops[3].error == "precondition-failed"


def test_jsonl_good_file_reads_every_field(tmp_path):
    ops = read_history(write_lines(tmp_path / "h.jsonl", GOOD), "jsonl")
    assert len(ops) == 7
    assert ops[2].node == "n1" and ops[3].error == "timeout"
    assert ops[4].process == "nemesis"
    assert ops[5].value == [1, 2]


@pytest.mark.parametrize("line_no, change, field, words", [
    (2, {"type": "done"}, "type", "unknown type"),
    (3, {"process": 5}, "process", "without an open invoke"),
    (2, {"process": 0}, "process", "second op"),
    (3, {"f": "read"}, "f", "invoke at line 1"),
    (3, {"key": "b"}, "key", "invoke at line 1"),
    (1, {"f": ""}, "f", "non-empty"),
    (1, {"time": -4}, "time", "non-negative"),
    (1, {"process": "x"}, "process", "integer"),
    (6, {"value": 3}, "value", "[from, to]"),
    (2, {"index": 7}, "index", "expected 1"),
    (1, {"key": [1]}, "key", "string or an integer"),
])
def test_jsonl_bad_line_names_file_line_field(tmp_path, line_no, change, field, words):
    dicts = [dict(d) for d in GOOD]
    dicts[line_no - 1].update(change)
    path = tmp_path / "h.jsonl"
    with open(path, "w") as f:
        for i, d in enumerate(dicts):
            d = {"index": i, "time": i, **d}
            f.write(json.dumps(d) + "\n")
    with pytest.raises(BadInput) as e:
        read_history(path)
    err = e.value
    assert (err.file, err.line, err.field) == (str(path), line_no, field)
    assert words in str(err)
    assert str(err).startswith(f"{path}:{line_no}: {field}: ")
    assert "\n" not in str(err)


def test_jsonl_malformed_json_and_missing_field(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"index":0,"time":0,"type":"invoke","process":0,"f":"read"}\n'
                    '{"index":1, "time": oops}\n')
    with pytest.raises(BadInput) as e:
        read_history(path)
    assert e.value.line == 2 and "not valid JSON" in str(e.value)
    path.write_text('{"index":0,"time":0,"type":"invoke","f":"read"}\n')
    with pytest.raises(BadInput) as e:
        read_history(path)
    assert (e.value.line, e.value.field) == (1, "process")
    path.write_text('[1, 2]\n')
    with pytest.raises(BadInput) as e:
        read_history(path, "jsonl")
    assert "JSON object" in str(e.value)


def test_jsonl_truncated_last_line_of_a_crashed_run_is_skipped(tmp_path):
    path = write_lines(tmp_path / "h.jsonl", GOOD[:3])
    with open(path, "a") as f:
        f.write('{"index":3,"time":3,"type":"inv')   # no newline: the writer died
    ops = read_history(path)
    assert len(ops) == 3


def test_missing_file_and_bad_format_are_bad_input(tmp_path):
    with pytest.raises(BadInput) as e:
        read_history(tmp_path / "nope.jsonl")
    assert "no such file" in str(e.value)
    with pytest.raises(BadInput):
        read_history(write_lines(tmp_path / "h.jsonl", GOOD), "xml")
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BadInput):
        read_history(tmp_path / "bin")


EDN_LINES = """\
{:type :invoke, :f :write, :value [1 3], :process 0, :time 100, :index 0}
{:type :invoke, :f :read, :value [2 nil], :process 1, :time 110}
{:type :ok, :f :write, :value [1 3], :process 0, :time 120}
{:type :info, :f :start, :value nil, :process :nemesis, :time 125}
{:type :info, :f :read, :value [2 nil], :process 1, :time 130, :error :timeout}
{:type :invoke, :f :cas, :value [1 [3 4]], :process 2, :time 140}
{:type :fail, :f :cas, :value [1 [3 4]], :process 2, :time 150}
"""


def test_edn_one_map_per_line_with_independent_keys(tmp_path):
    path = tmp_path / "history.edn"
    path.write_text(EDN_LINES)
    ops = read_history(path)
    assert [o.type for o in ops] == ["invoke", "invoke", "ok", "info", "info",
                                     "invoke", "fail"]
    assert (ops[0].key, ops[0].value, ops[0].time) == (1, 3, 100)
    assert ops[3].process == "nemesis" and not ops[3].has_key
    assert ops[4].error == "timeout" and ops[4].key == 2
    assert ops[5].value == [3, 4] and ops[5].key == 1
    assert ops[6].error is None          # Jepsen :fail carries no reason: dropped
    assert [o.index for o in ops] == list(range(7))


def test_edn_vector_form_and_kv_keys(tmp_path):
    path = tmp_path / "h.edn"
    path.write_text('[{:process 0, :type :invoke, :f :append, :key "k", :value "x 0 y"}\n'
                    ' {:process 0, :type :ok, :f :append, :key "k", :value "x 0 y"}\n'
                    ' {:process 1, :type :invoke, :f :get, :key "k", :value nil}\n'
                    ' {:process 1, :type :ok, :f :get, :key "k", :value "x 0 y"}]\n')
    ops = read_history(path, "edn")
    assert [(o.key, o.f, o.value) for o in ops][-1] == ("k", "get", "x 0 y")
    assert ops[1].time == 1              # no clock: positions order the ops


@pytest.mark.parametrize("text,flat", [
    ('{:process 1, :type :invoke, :f :get, :key "0", :value nil}\n\n'
     '  {:process 1 :type :ok :f :get :key "0" :value "x 0 y"},\r\n', True),
    ('{:a 1, :b -2, :c +3, :d 99999999999999999999999, :e true, :f false, :a :x.y/z}',
     True),
    # not flat: read by the general tokenizer alone
    ('{:a -5:foo}', False), ('{:a 1}{:b 2}', False), ('{:a 1e5}', False),
    ('{:a "\\n"}', False), ('{:é 1}', False), ('; a comment\n{:a 1}', False),
    ('{:a [1 2]}', False), ('{:a #inst "2020"}', False),
])
def test_edn_flat_lines_read_as_the_general_tokenizer_reads_them(text, flat):
    from history import importers
    read = importers._flat_values(text)
    assert (read is not None) is flat
    if read is not None:
        fast, lines, refused = read
        general = list(importers._edn_values(text))
        # each map's line, as the general reader's offsets give it
        assert lines == [text.count("\n", 0, o) + 1 for o, _, _ in general]
        assert refused is False
        assert [(o, v) for o, v, _ in fast] == [(o, v) for o, v, _ in general]
        assert [[type(x) for kv in v.items() for x in kv] for _, v, _ in fast] == \
            [[type(x) for kv in v.items() for x in kv] for _, v, _ in general]
        # ready for the op reader: keywords as plain strings, as _plain makes them
        plain = importers._flat_values(text, plain=True)[0]
        want = [{str(k): importers._plain(x) for k, x in v.items()} for _, v, _ in general]
        assert [v for _, v, _ in plain] == want
        assert all(type(x) is str for _, v, _ in plain for kv in v.items() for x in kv
                   if isinstance(x, str))


def test_edn_errors_name_the_line(tmp_path):
    path = tmp_path / "h.edn"
    path.write_text('{:type :invoke, :f :read, :process 0, :value nil}\n'
                    '{:type :ok, :f :read, :process 0 :value}\n')
    with pytest.raises(BadInput) as e:
        read_history(path, "edn")
    assert e.value.line == 2 and "even number" in str(e.value)
    path.write_text('{:type :invoke, :f :read, :process 0, :value nil}\n'
                    '{:type :ok, :f :write, :process 0, :value 1}\n')
    with pytest.raises(BadInput) as e:
        read_history(path, "edn")
    assert (e.value.line, e.value.field) == (2, "f")
    path.write_text('{:type :invoke, :f :read\n')
    with pytest.raises(BadInput) as e:
        read_history(path, "edn")
    assert "never closed" in str(e.value)


PORC = """\
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:invoke\t:cas\t[1 4]
INFO  jepsen.util - 0\t:ok\t:read\tnil
INFO  jepsen.util - 1\t:fail\t:cas\t[1 4]
INFO  jepsen.util - 2\t:invoke\t:write\t3
INFO  jepsen.util - 2\t:info\t:write\t:timed-out
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 0\t:fail\t:read\t:timed-out
INFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]
INFO  jepsen.util - 3\t:ok\t:cas\t[3 0]
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 0\t:ok\t:read\t0
"""


def test_porcupine_etcd_log(tmp_path):
    path = tmp_path / "etcd_000.log"
    path.write_text("some other log line\n" + PORC)
    assert detect_format(PORC) == "porcupine"
    ops = read_history(path)
    assert len(ops) == 12
    assert ops[1].value == [1, 4]
    assert (ops[3].type, ops[3].error) == ("fail", "precondition-failed")
    assert (ops[5].type, ops[5].error, ops[5].value) == ("info", "timed-out", 3)
    assert (ops[7].type, ops[7].error) == ("fail", "timed-out")
    assert ops[11].value == 0 and ops[2].value is None


def test_porcupine_bad_value_names_line(tmp_path):
    path = tmp_path / "etcd.log"
    path.write_text(PORC.replace("[1 4]", "[1 x]", 1))
    with pytest.raises(BadInput) as e:
        read_history(path, "porcupine")
    assert (e.value.line, e.value.field) == (2, "value")


def test_auto_detection(tmp_path):
    assert detect_format('{"index":0}') == "jsonl"
    assert detect_format("\n{:type :invoke}") == "edn"
    assert detect_format("[{:type :invoke}]") == "edn"
    assert detect_format("") == "jsonl"
    with pytest.raises(BadInput) as e:
        detect_format("\nhello world", "f.txt")
    assert e.value.line == 2


def test_write_txt_line_n_plus_one_holds_index_n(tmp_path):
    ops = read_history(write_lines(tmp_path / "h.jsonl", GOOD))
    out = tmp_path / "history.txt"
    write_txt(ops, out)
    lines = out.read_text().splitlines()
    assert len(lines) == len(ops)
    for n, line in enumerate(lines):
        assert line.split(" ")[0] == str(n)
    assert lines[0] == '0 0 invoke write "a" 1 -'
    assert lines[4] == '4 nemesis info start-partition - "one" -'
    assert lines[6].endswith("[1,2] precondition-failed")


def test_porcupine_format_reads_its_kv_logs_as_edn(tmp_path):
    path = tmp_path / "c01-ok.txt"
    path.write_text('{:process 0, :type :invoke, :f :put, :key "3", :value "x 0 0 y"}\n'
                    '{:process 0, :type :ok, :f :put, :key "3", :value "x 0 0 y"}\n')
    ops = read_history(path, "porcupine")
    assert [(o.type, o.f, o.key, o.value) for o in ops] == [
        ("invoke", "put", "3", "x 0 0 y"), ("ok", "put", "3", "x 0 0 y")]


# ------------------------------------------------------------------ odd input (issue 12)

W = '{"index":0,"time":0,"type":"invoke","process":0,"f":"write","value":%s}'


def _bad(path, text, format="auto"):
    path.write_text(text)
    with pytest.raises(BadInput) as e:
        read_history(path, format)
    assert "\n" not in str(e.value)
    return e.value


@pytest.mark.parametrize("value, words", [
    ("NaN", "NaN is refused"),
    ("Infinity", "Infinity is refused"),
    ("-Infinity", "-Infinity is refused"),
    ("[1, 1e999]", "reads as Infinity (at value[1])"),
    ("9" * 5000, "an integer of 5,000 digits"),
    ("[" * 500 + "]" * 500, "nested deeper than 64 levels"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
    ('"\\ud800"', "lone surrogate (U+D800)"),
    ('{"a": ["x\\udfff"]}', "lone surrogate (U+DFFF), which is not text (at value"),
])
def test_jsonl_values_that_are_not_plain_data_name_line_and_field(tmp_path, value, words):
    good = W % 1
    err = _bad(tmp_path / "h.jsonl", good.replace('"value":1', '"value":1,"x":0') + "\n"
               + (W % value).replace('"index":0', '"index":1').replace(
                   '"process":0', '"process":1') + "\n")
    assert (err.line, err.field) == (2, "value"), str(err)
    assert words in str(err)


def test_jsonl_values_at_the_limits_are_kept(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text(W % ("-" + "9" * 4300) + "\n"
                    + (W % ("[" * 64 + "]" * 64)).replace('"index":0', '"index":1')
                    .replace('"process":0', '"process":1') + "\n"
                    + (W % '"\\ud83d\\ude00 \\u00e9"').replace('"index":0', '"index":2')
                    .replace('"process":0', '"process":2') + "\n")
    ops = read_history(path)
    assert len(str(ops[0].value)) == 4301 and ops[2].value == "\U0001F600 \u00e9"
    write_txt(ops, tmp_path / "history.txt")   # and they can be written back


def test_a_truncated_last_line_with_a_long_integer_is_still_skipped(tmp_path):
    path = write_lines(tmp_path / "h.jsonl", GOOD[:3])
    with open(path, "a") as f:
        f.write('{"index":3,"time":3,"value":' + "1" * 5000 + ',"type":"inv')
    assert len(read_history(path)) == 3
    with open(path, "a") as f:
        f.write('"}\n{"index":4}\n')       # not the last line after all: bad input
    with pytest.raises(BadInput) as e:
        read_history(path)
    assert (e.value.line, e.value.field) == (4, "value") and "5,000 digits" in str(e.value)


def test_a_field_name_with_a_lone_surrogate(tmp_path):
    err = _bad(tmp_path / "h.jsonl", (W % 1)[:-1] + ',"n\\ud800":2}\n')
    assert err.line == 1 and "field name" in str(err)


@pytest.mark.parametrize("fmt, text, line", [
    ("jsonl", '{"index":0,"time":0,"type":"invoke","process":1,"f":"read","value":null}\n'
              '{"index":1,"time":1,"type":"ok","process":1,"f":"read"}\n', 2),
    ("edn", '{:type :invoke, :f :read, :process 1}\n{:type :ok, :f :read, :process 1}\n', 2),
    ("edn", '{:type :invoke, :f :get, :key "k", :process 1}\n'
            '{:type :ok, :f :get, :key "k", :process 1}\n', 2),
])
def test_an_ok_read_without_a_value_is_bad_input(tmp_path, fmt, text, line):
    err = _bad(tmp_path / f"h.{fmt}", text)
    assert (err.line, err.field) == (line, "value") and "missing" in str(err)


def test_an_ok_read_of_null_and_ops_that_read_nothing_need_no_value(tmp_path):
    path = tmp_path / "h.edn"
    path.write_text('{:type :invoke, :f :read, :process 1}\n'
                    '{:type :ok, :f :read, :process 1, :value nil}\n'
                    '{:type :invoke, :f :acquire, :process 2}\n'
                    '{:type :ok, :f :acquire, :process 2}\n')
    assert [o.value for o in read_history(path)] == [None] * 4


@pytest.mark.parametrize("text, line, field, words", [
    ('{:type :invoke, :f :write, :process 0, :value ' + "[" * 500 + "]" * 500 + '}\n',
     1, None, "nested deeper than 64"),
    ('{:type :invoke, :f :write, :process 0}\n{:type :invoke, :f :write, :process 1, '
     ':value ' + "7" * 4301 + '}\n', 2, "value", "4,301 digits"),
    ('{:type :invoke, :f :write, :process 0, :value ##NaN}\n', 1, "value", "##NaN"),
    ('{:type :invoke, :f :write, :process 0, :value [##Inf 2]}\n', 1, "key", "##Inf"),
    ('{:type :invoke, :f :write, :process 0, :value 1e999}\n', 1, "value", "inf"),
    ('{:type :invoke, :f :write, :process 0, :value "a\\ud800"}\n', 1, "value",
     "surrogate"),
])
def test_edn_values_that_are_not_plain_data(tmp_path, text, line, field, words):
    err = _bad(tmp_path / "h.edn", text)
    assert (err.line, err.field) == (line, field) and words in str(err)


def test_porcupine_integer_too_long(tmp_path):
    err = _bad(tmp_path / "etcd.log", "INFO  jepsen.util - 0\t:invoke\t:write\t"
               + "1" * 4400 + "\n")
    assert (err.line, err.field) == (1, "value") and "4,400 digits" in str(err)


@pytest.mark.parametrize("text", [
    '[{"index":0,"time":0,"type":"invoke","process":0,"f":"read","value":null}]\n',
    '[\n  {"index": 0, "time": 0, "type": "invoke", "process": 0, "f": "read"}\n]\n',
])
@pytest.mark.parametrize("fmt", ["auto", "jsonl"])
def test_a_file_that_is_one_json_array(tmp_path, text, fmt):
    err = _bad(tmp_path / "h.json", text, fmt)
    assert err.line == 1 and "one JSON array, not JSON lines" in str(err)


JSONL = '{"index":0,"time":0,"type":"invoke","process":0,"f":"write","value":1}\n'
EDN = '{:type :invoke, :f :write, :value 1, :process 0}\n'
LOG = 'INFO  jepsen.util - 0\t:invoke\t:write\t1\n'


@pytest.mark.parametrize("text, fmt, found, line", [
    (JSONL, "edn", "jsonl", 1), (JSONL, "porcupine", "jsonl", 1), (EDN, "jsonl", "edn", 1),
    (LOG, "edn", "porcupine", 1), (LOG, "jsonl", "porcupine", 1),
    ("\n; a comment\n" + EDN, "jsonl", "edn", 3),
])
def test_a_forced_format_that_finds_no_ops(tmp_path, text, fmt, found, line):
    err = _bad(tmp_path / "h.txt", text, fmt)
    assert (err.line, err.field) == (line, "--format")
    assert f"the file is {found}" in str(err) and f"use --format {found}" in str(err)


def test_forced_porcupine_without_op_lines_and_on_edn(tmp_path):
    err = _bad(tmp_path / "h.log", "starting\nnothing happened\n", "porcupine")
    assert (err.line, err.field) == (1, "--format") and "no jepsen.util op line" in str(err)
    path = tmp_path / "h.edn"       # Porcupine's kv logs are EDN: read as EDN
    path.write_text("[\n" + EDN + "]\n")
    assert len(read_history(path, "porcupine")) == 1
    (tmp_path / "empty.log").write_text("")
    assert read_history(tmp_path / "empty.log", "porcupine") == []


def test_edn_comment_lines_before_the_first_op_and_txn_values(tmp_path):
    path = tmp_path / "h.edn"
    path.write_text("; a multi-register history\n"
                    "{:type :invoke, :f :txn, :value [[:read :x nil] [:write :y 2]], "
                    ":process 0}\n"
                    "{:type :ok, :f :txn, :value [[:read :x 1] [:write :y 2]], "
                    ":process 0}\n")
    ops = read_history(path)
    # two micro-ops are not Jepsen's independent [key value] tuple
    assert not ops[0].has_key and ops[1].value == [["read", "x", 1], ["write", "y", 2]]


def test_a_non_utf8_byte_names_its_line(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_bytes(JSONL.encode() + b'{"index":1,"f":"\xed\xa0\x80"}\n')
    with pytest.raises(BadInput) as e:
        read_history(path)
    assert e.value.line == 2 and "not UTF-8" in str(e.value)


def test_edn_flat_lines_say_when_a_value_is_refused():
    from history import importers
    text = '{:process 1, :type :invoke, :f :write, :value ' + "9" * 5000 + '}\n'
    fast, lines, refused = importers._flat_values(text)
    assert lines == [1] and refused is True
