"""JSON with integers of any size, for APPS test specs and the values sandboxed programs return.

Python 3.11 refuses to turn a decimal string of more than 4,300 digits into an int (`sys.int_max_str_digits`), so
`json.loads` of a spec or a return value holding a big integer raises ValueError. Lifting the limit in this
trusted process would let a hostile program stall it: the conversion is quadratic (a 4 MB answer: minutes).
Integers over the limit are therefore kept as their digits (`LargeInt`) and compared as text; the sandboxed
program, whose CPU time is limited, gets real ints (`_sandbox_zygote` lifts the limit there).
"""

import json
import sys
from typing import Any

# The digits Python converts without complaint (the limit is 0 when someone lifted it: then no limit).
_MAX_DIGITS = sys.get_int_max_str_digits() or sys.maxsize


class LargeInt(str):
    """An integer too long for `int()`, kept as its canonical JSON digits (`-` sign, no leading zeros)."""

    __slots__ = ()


def _parse_int(text: str) -> int | LargeInt:
    return int(text) if len(text.lstrip("-")) <= _MAX_DIGITS else LargeInt(text)


def loads(text: str | bytes) -> Any:
    """`json.loads` that never fails on an integer's length (long ones become `LargeInt`)."""
    return json.loads(text, parse_int=_parse_int)


def dumps(value: Any) -> str:
    """`json.dumps` that writes a `LargeInt` back as a number, so the sandbox reads the integer the spec had."""
    if isinstance(value, LargeInt):
        return str.__str__(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(key))}: {dumps(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)


def is_integer(value: Any) -> bool:
    """An int (not a bool) or a `LargeInt`."""
    return isinstance(value, LargeInt) or (isinstance(value, int) and not isinstance(value, bool))


def integer_text(value: int | LargeInt) -> str:
    """The canonical digits of an integer, whatever its size, without converting a `LargeInt`."""
    return str.__str__(value) if isinstance(value, LargeInt) else str(value)
