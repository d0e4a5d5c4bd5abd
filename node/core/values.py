"""Register values: the JSON values a client may store, and how they compare.

A value is strict JSON (RFC 8259): null, true, false, finite numbers, strings,
arrays and objects, nested at most MAX_DEPTH levels. NaN and Infinity are not JSON
(Python's json module accepts them by default), and a value nested hundreds of levels
deep would exhaust the interpreter's recursion when it is encoded for the log or a
peer. Equality is JSON's: `true` is not `1` and `[true]` is not `[1]`, which
Python's `==` says they are. Every node applies the same checks to a committed
command, so a command that fails them is refused the same way everywhere (paper
section 5.3: the state machines stay identical).
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32          # nesting levels of arrays and objects in a value


class NotStrictJSON(ValueError):
    """A text that is not strict JSON within the bounds above."""


def _no_constant(name: str) -> Any:
    raise NotStrictJSON(f"{name} is not JSON")


def loads_strict(text: str | bytes) -> Any:
    """Parse strict JSON: NaN and Infinity refused, nesting bounded by the
    interpreter (RecursionError becomes NotStrictJSON). Depth is checked by
    `too_deep` on what the caller keeps."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise NotStrictJSON("nested too deeply") from None
    except NotStrictJSON:
        raise
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise NotStrictJSON(f"not JSON ({e})") from None


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests arrays and objects more than `limit` levels (iterative,
    so any depth is measured without recursion)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (list, dict)):
            if depth >= limit:
                return True
            children = v.values() if isinstance(v, dict) else v
            stack.extend((c, depth + 1) for c in children)
    return False


def value_problem(value: Any, field: str) -> str | None:
    """Why `value` may not be stored (not finite, too deep), or None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return f"field {field!r}: NaN and Infinity are not JSON"
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    if too_deep(value):
        return f"field {field!r}: nested more than {MAX_DEPTH} levels"
    return None


def same_value(a: Any, b: Any) -> bool:
    """JSON equality, all the way down: booleans equal only booleans (true is not 1),
    numbers compare by value (1 equals 1.0, as in JSON), arrays by element, objects by
    key and value."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if isinstance(x, bool) or isinstance(y, bool):
            if type(x) is not type(y) or x != y:
                return False
        elif isinstance(x, dict) or isinstance(y, dict):
            if not (isinstance(x, dict) and isinstance(y, dict)) or x.keys() != y.keys():
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list) or isinstance(y, list):
            if not (isinstance(x, list) and isinstance(y, list)) or len(x) != len(y):
                return False
            stack.extend(zip(x, y))
        elif x != y:
            return False
    return True
