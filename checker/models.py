"""Models: the sequential specification a history is checked against.

A *model* is a small pure object (after Porcupine's `Model`): ``init()`` gives the
initial state, ``step(state, op)`` gives the state after ``op`` or an `Illegal`
saying why ``op`` cannot happen in ``state``, ``describe(op)`` and
``describe_state(state)`` render them for people. States are hashable (the search
caches (linearized ops, state) pairs) and never mutated. Adding a model is one
small class registered in `MODELS`.

An `Operation` is what a model steps on: an invoke paired with its completion.
Its ``status`` says how the checker may use it (SPEC section 2):

- ``ok``: took effect exactly once between invoke and completion; must be linearized.
- ``info``: may have taken effect at any time after its invoke, or never; the search
  may linearize it anywhere after its invoke or leave it out (Knossos's treatment).
- ``fail``: a cas that failed with ``precondition-failed``: it changed nothing, but
  at one instant in its interval the register did not hold ``from``; must be
  linearized as that observation. Every other ``fail`` is dropped before the search.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from history.errors import BadInput
from history.ops import Op

OK, INFO, FAIL = "ok", "info", "fail"


class Illegal:
    """Why an operation cannot be applied in a state (formatted only when read)."""

    __slots__ = ("template", "args")

    def __init__(self, template: str, *args: Any) -> None:
        self.template = template
        self.args = args

    @property
    def reason(self) -> str:
        return self.template.format(*(show(a) for a in self.args))

    def __repr__(self) -> str:
        return f"Illegal({self.reason!r})"


@dataclass(slots=True)
class Operation:
    """An invoke paired with its completion (absent for an unfinished op)."""

    id: int                  # position in its key's list (the search's bit number)
    process: Any
    f: str
    key: Any                 # None when the history has no keys
    input: Any               # the invoke's value
    output: Any              # the ok completion's value (what a read saw)
    status: str              # OK, INFO or FAIL (see the module docstring)
    call: int                # history index of the invoke
    ret: int | None          # history index of the completion; None if unfinished
    invoke: Op
    completion: Op | None

    @property
    def index(self) -> int:
        """The history index that names this op: its completion, else its invoke."""
        return self.ret if self.ret is not None else self.call

    def to_dicts(self) -> list[dict]:
        out = [self.invoke.to_dict()]
        if self.completion is not None:
            out.append(self.completion.to_dict())
        return out


class _Bool:
    """A frozen JSON true/false: unlike Python's bool, never equal to 1 or 0."""

    __slots__ = ("v",)

    def __init__(self, v: bool) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return type(other) is _Bool and other.v is self.v

    def __hash__(self) -> int:
        return hash(("bool", self.v))


class _Obj(tuple):
    """A frozen JSON object (sorted pairs): never equal to a list of pairs."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is _Obj and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("object", tuple(self)))


_TRUE, _FALSE = _Bool(True), _Bool(False)


def freeze(v: Any) -> Hashable:
    """A hashable version of a JSON value that keeps JSON's types apart (lists
    become tuples; true is not 1; an object is not the list of its pairs)."""
    if v is True:
        return _TRUE
    if v is False:
        return _FALSE
    if isinstance(v, list):
        return tuple(freeze(x) for x in v)
    if isinstance(v, dict):
        return _Obj(sorted(((str(k), freeze(x)) for k, x in v.items()),
                           key=lambda kv: kv[0]))
    return v


def thaw(v: Any) -> Any:
    """The JSON value of a frozen one."""
    if type(v) is _Bool:
        return v.v
    if type(v) is _Obj:
        return {k: thaw(x) for k, x in v}
    if isinstance(v, tuple):
        return [thaw(x) for x in v]
    return v


def show(v: Any) -> str:
    """A value as a person reads it (JSON; frozen values shown as JSON)."""
    try:
        return json.dumps(thaw(v), separators=(", ", ": "), ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(v)


class Model:
    """The model interface. Subclasses set `name`, `fs` and `read_fs`."""

    name = "model"
    fs: frozenset[str] = frozenset()
    read_fs: frozenset[str] = frozenset()   # ops that never change the state
    # True when an op that is legal in two different states either never changes
    # the state or leaves the same state in both (reads, writes, cas). Then an info
    # op only matters if the op right after it was illegal before it, and the search
    # tries info ops only when they make some candidate legal (`precondition`).
    # False for kv (append).
    info_unlocks = False
    writer_word = "written"   # explanations: "..., written by op 3"
    initial_help = "any JSON value (default null)"

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial   # the initial state as JSON; None: the model's default
        self.check_initial()

    def check_initial(self) -> None:
        """Raise BadInput (for --initial) if `initial` is no state of this model."""

    def _bad_initial(self) -> BadInput:
        return BadInput(f"{show(self.initial)} is not an initial state of the "
                        f"{self.name} model (it takes {self.initial_help})",
                        field="--initial")

    def init(self) -> Hashable:
        return freeze(self.initial)

    def step(self, state: Hashable, op: Operation) -> Hashable | Illegal:
        raise NotImplementedError

    def describe(self, op: Operation) -> str:
        return f"{op.f}({show(op.input)}) -> {show(op.output)}"

    def describe_state(self, state: Hashable) -> str:
        return show(state)

    def precondition(self, op: Operation) -> tuple[str, Hashable]:
        """When `op` is legal: ("eq", v) iff the state is v, ("ne", v) iff it is not
        v, ("any", None) in every state, ("?", None) not said (step decides). Needed
        when `info_unlocks` is True; elsewhere it only speeds the search up."""
        return ("?", None)

    def needs(self, op: Operation) -> list[Hashable]:
        """Values `op` observed that some op must have written (used by shrinking,
        so that a shrunk history keeps the writes its reads saw)."""
        return []

    def writes(self, op: Operation) -> list[Hashable]:
        """Values `op` may write."""
        return []

    def interchangeable(self, ops: list[Operation]) -> dict[int, bool]:
        """Info ops (of one key's `ops`) that only ever matter by making an op with
        a ("ne", v) precondition legal, by id: True for the *free* ones (legal in
        every state, each leaving a state that no op of the key can tell from the
        state another one leaves: any of them may stand for any other), False for
        those that a free one invoked before them may stand for (it leaves a state
        where every op legal after them is legal too). So a search tries them in
        call order up to the first unused free one only, and one invoked after
        every op with a ("ne", v) precondition completed can be dropped
        (checker.prepare). Default: none."""
        return {}

    def resets(self, op: Operation) -> bool:
        """Whether `op` may set the state to one `reachable` does not foresee (the
        dead-read rule of checker.search; default: every op)."""
        return True

    def collapse(self, ops: list[Operation]) -> Callable[[Hashable], Hashable] | None:
        """A function mapping each state to a representative of the states that no op
        of one key's `ops` can tell apart from it (in each, the same ops are legal,
        leaving states again told apart by none), so that the search keeps one
        configuration for all of them; None (the default): states are kept as
        they are. The function may carry an ``inert`` attribute: a representative
        state in which every op that `resets` does not name leaves the state as it
        is or is illegal (the search then forces such ops that must come before any
        reset)."""
        return None

    # The dead-read rule: `reachable(state, v)` is False when no run of ops that do
    # not `reset` can turn `state` into `v`; then an ok read of `v` not linearized
    # yet, with no unlinearized reset invoked before it returned, can never be
    # linearized: the search abandons the configuration (checker.search). None
    # (the default): no such rule.
    reachable = None

    def check_op(self, op: Op) -> None:
        """Raise BadInput if this model has no such operation."""
        if op.f not in self.fs:
            raise BadInput(f"{op.f!r} is not an operation of the {self.name} model "
                           f"(it has {', '.join(sorted(self.fs))}); op {op.index} "
                           f"(history.txt line {op.index + 1})", field="f")

    def changes(self, op: Operation) -> bool:
        """Whether `op` may change the state (explanations name the last such op)."""
        return op.f not in self.read_fs and op.status != FAIL

    def relevant(self, op: Operation) -> bool:
        """False for ops that can change nothing and observe nothing (info reads)."""
        return not (op.status == INFO and op.f in self.read_fs)


class RegisterModel(Model):
    """A read/write register; a read of null means never written (SPEC section 2)."""

    name = "register"
    fs = frozenset({"read", "write"})
    read_fs = frozenset({"read"})
    info_unlocks = True

    def step(self, state: Hashable, op: Operation) -> Hashable | Illegal:
        if op.f == "write":
            return freeze(op.input)
        v = freeze(op.output)
        if v == state:
            return state
        return Illegal("read {}, but the register holds {}", v, state)

    def needs(self, op: Operation) -> list[Hashable]:
        if op.f == "read" and op.status == OK and op.output is not None:
            return [freeze(op.output)]
        if op.f == "cas" and op.status != FAIL and op.input[0] is not None:
            return [freeze(op.input[0])]
        return []

    def writes(self, op: Operation) -> list[Hashable]:
        if op.f == "write":
            return [freeze(op.input)]
        if op.f == "cas" and op.status != FAIL:
            return [freeze(op.input[1])]
        return []

    def interchangeable(self, ops: list[Operation]) -> dict[int, bool]:
        """Info writes and info cas of a value that no read returned and no cas
        that succeeded (or may have) compared with (etcd's robustness tests drop
        such writes). Free: an info write of a value no cas compared with at all:
        the register then holds a value that every read and every cas that
        succeeded finds wrong and every precondition-failed cas finds right,
        whichever op wrote it. The others (an info cas, legal in one state only;
        a value a precondition-failed cas compared with) leave a state where
        fewer ops are legal than after a free one."""
        eq: set[Hashable] = set()
        ne: set[Hashable] = set()
        for op in ops:
            if op.f == "read" and op.status == OK:
                eq.add(freeze(op.output))
            elif op.f == "cas":
                (ne if op.status == FAIL else eq).add(freeze(op.input[0]))
            elif op.f != "write":
                return {}          # an op this method does not know: say nothing
        out: dict[int, bool] = {}
        for op in ops:
            if op.status == INFO:
                v = freeze(op.input if op.f == "write" else op.input[1])
                if v not in eq:
                    out[op.id] = op.f == "write" and v not in ne
        return out

    def precondition(self, op: Operation) -> tuple[str, Hashable]:
        if op.f == "read":
            return ("eq", freeze(op.output))
        if op.f == "cas":
            return ("ne" if op.status == FAIL else "eq", freeze(op.input[0]))
        return ("any", None)

    def describe(self, op: Operation) -> str:
        if op.f == "write":
            return f"write({show(op.input)})"
        return f"read() -> {show(op.output) if op.status == OK else '?'}"


class CasRegisterModel(RegisterModel):
    """A register with compare-and-set: cas [from, to] writes `to` if it holds `from`."""

    name = "cas-register"
    fs = frozenset({"read", "write", "cas"})

    def step(self, state: Hashable, op: Operation) -> Hashable | Illegal:
        if op.f != "cas":
            return RegisterModel.step(self, state, op)
        frm, to = op.input
        frm = freeze(frm)
        if op.status == FAIL:
            if frm != state:
                return state
            return Illegal("cas {}->{} failed with precondition-failed, but the "
                           "register holds {}", frm, op.input[1], state)
        if frm == state:
            return freeze(to)
        if op.status == INFO:
            return Illegal("cas {}->{} could only take effect when the register holds "
                           "{}, but it holds {}", frm, to, frm, state)
        return Illegal("cas {}->{} succeeded, but the register holds {}", frm, to, state)

    def describe(self, op: Operation) -> str:
        if op.f != "cas":
            return RegisterModel.describe(self, op)
        frm, to = op.input
        res = {OK: "ok", INFO: "?", FAIL: "fail"}[op.status]
        return f"cas({show(frm)}, {show(to)}) -> {res}"

    def check_op(self, op: Op) -> None:
        super().check_op(op)
        if op.f == "cas" and op.type == "invoke" and not (
                isinstance(op.value, list) and len(op.value) == 2):
            raise BadInput(f"a cas value must be [from, to], not {show(op.value)}; op "
                           f"{op.index} (history.txt line {op.index + 1})", field="value")


class KVModel(Model):
    """One key of Porcupine's kv store: get, put, append on a string (initially "")."""

    name = "kv"
    fs = frozenset({"get", "put", "append"})
    read_fs = frozenset({"get"})
    initial_help = 'a string (default "")'

    def check_initial(self) -> None:
        if self.initial is not None and not isinstance(self.initial, str):
            raise self._bad_initial()

    def init(self) -> Hashable:
        return "" if self.initial is None else self.initial

    def step(self, state: Hashable, op: Operation) -> Hashable | Illegal:
        f = op.f
        if f == "get":
            v = "" if op.output is None else op.output
            if v == state:
                return state
            return Illegal("get saw {}, but the value is {}", v, state)
        if f == "put":
            return "" if op.input is None else str(op.input)
        return state + ("" if op.input is None else str(op.input))  # type: ignore[operator]

    def precondition(self, op: Operation) -> tuple[str, Hashable]:
        if op.f == "get":
            return ("eq", "" if op.output is None else op.output)
        return ("any", None)

    def resets(self, op: Operation) -> bool:
        return op.f == "put"

    def collapse(self, ops: list[Operation]) -> Callable[[Hashable], Hashable] | None:
        """A value that is no prefix of what any get of the key returned is *unseen*:
        no get can return it or anything appended to it, so every append and no get
        is legal in it, and a put leaves the same state as in any other. All unseen
        values are alike: they collapse into one, a string longer than every get's
        value (so itself unseen). Appends that a put will overwrite unobserved then
        leave one state whatever their order."""
        vals = sorted({"" if op.output is None else op.output
                       for op in ops if op.f == "get"})
        if any(type(v) is not str for v in vals):
            return None
        sink = "\x00" * (max(map(len, vals), default=0) + 1)
        find = bisect.bisect_left
        count = len(vals)

        def canon(state: Hashable) -> Hashable:
            i = find(vals, state)
            if i < count and vals[i].startswith(state):  # type: ignore[arg-type]
                return state
            return sink
        canon.inert = sink  # type: ignore[attr-defined]  # appends leave it, gets fail
        return canon

    @staticmethod
    def reachable(state: Hashable, v: Hashable) -> bool:
        """Appends only lengthen the value: `v` is reachable iff `state` is a prefix
        of it."""
        return type(v) is str and v.startswith(state)  # type: ignore[arg-type]

    def describe(self, op: Operation) -> str:
        if op.f == "get":
            return f"get() -> {show(op.output) if op.status == OK else '?'}"
        return f"{op.f}({show(op.input)})"


class MutexModel(Model):
    """Knossos's mutex: one lock, free at first; acquire takes a free lock, release
    frees a held one (by any process, as in Knossos); anything else cannot happen."""

    name = "mutex"
    fs = frozenset({"acquire", "release"})
    info_unlocks = True     # each op is legal in one state only
    writer_word = "set"
    FREE, LOCKED = "free", "locked"
    initial_help = '"free" (the default) or "locked"'

    def check_initial(self) -> None:
        if self.initial not in (None, self.FREE, self.LOCKED):
            raise self._bad_initial()

    def init(self) -> Hashable:
        return self.FREE if self.initial is None else self.initial

    def step(self, state: Hashable, op: Operation) -> Hashable | Illegal:
        if op.f == "acquire":
            if state == self.FREE:
                return self.LOCKED
            return Illegal("acquire, but the lock is already held")
        if state == self.LOCKED:
            return self.FREE
        return Illegal("release, but the lock is not held")

    def precondition(self, op: Operation) -> tuple[str, Hashable]:
        return ("eq", self.FREE if op.f == "acquire" else self.LOCKED)

    def describe(self, op: Operation) -> str:
        return f"{op.f}()" + (" -> ?" if op.status == INFO else "")

    def describe_state(self, state: Hashable) -> str:
        return str(state)


def _key_order(kv: tuple) -> tuple:
    return (type(kv[0]) is str, kv[0])


class MultiRegisterModel(Model):
    """Knossos's multi-register: several registers (by key), null at first. The one
    op, ``txn``, has a list of micro-ops ``[f, key, value]`` as its value, applied in
    order: ``["write", k, v]`` sets k; ``["read", k, v]`` saw v in k. As in Knossos, a
    read of null is always legal (not known: an invoke's reads are null); the ok
    completion's value, with what each read saw, is the transaction that ran."""

    name = "multi-register"
    fs = frozenset({"txn"})
    MICRO = ("read", "write")
    initial_help = 'an object {key: value} (default {}: every register null)'

    def check_initial(self) -> None:
        if self.initial is not None and not isinstance(self.initial, dict):
            raise self._bad_initial()

    def init(self) -> Hashable:
        regs = {k: freeze(v) for k, v in (self.initial or {}).items()}
        return _Obj(sorted(regs.items(), key=_key_order))

    def step(self, state: Hashable, op: Operation) -> Hashable | Illegal:
        regs = dict(state)  # type: ignore[arg-type]
        for f, k, v in (op.output if op.status == OK else op.input):
            if f == "write":
                regs[k] = freeze(v)
            elif v is not None and freeze(v) != regs.get(k):
                return Illegal("read {} from {}, but it holds {}", freeze(v), k, regs.get(k))
        return _Obj(sorted(regs.items(), key=_key_order))

    def changes(self, op: Operation) -> bool:
        txn = op.output if op.status == OK else op.input
        return any(m[0] == "write" for m in txn or [])

    def describe(self, op: Operation) -> str:
        txn = op.output if op.status == OK else op.input
        parts = []
        for f, k, v in txn or []:
            if f == "write":
                parts.append(f"write({show(k)}, {show(v)})")
            else:
                seen = show(v) if op.status == OK and v is not None else "?"
                parts.append(f"read({show(k)}) -> {seen}")
        return f"txn[{', '.join(parts)}]"

    def check_op(self, op: Op) -> None:
        super().check_op(op)
        if op.type not in ("invoke", "ok"):
            return
        v = op.value
        where = f"op {op.index} (history.txt line {op.index + 1})"
        if not isinstance(v, list):
            raise BadInput(f"a txn value must be a list of [f, key, value] micro-ops, "
                           f"not {show(v)}; {where}", field="value")
        for m in v:
            if not (isinstance(m, list) and len(m) == 3 and m[0] in self.MICRO
                    and (type(m[1]) is str or type(m[1]) is int)):
                raise BadInput(f"a micro-op must be [\"read\" or \"write\", key (a "
                               f"string or an integer), value], not {show(m)}; {where}",
                               field="value")


MODELS: dict[str, type[Model]] = {m.name: m for m in (RegisterModel, CasRegisterModel,
                                                      KVModel, MutexModel,
                                                      MultiRegisterModel)}


def get_model(name: str | Model, initial: Any = None) -> Model:
    """A model by name (`MODELS`), starting from `initial` (JSON; None: the model's
    default); raise BadInput for an unknown model or an initial state it cannot take."""
    if isinstance(name, Model):
        return name
    try:
        cls = MODELS[name]
    except KeyError:
        raise BadInput(f"unknown model {name!r} (one of {', '.join(MODELS)})",
                       field="--model") from None
    return cls(initial)
