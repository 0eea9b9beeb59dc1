"""Turning pydantic validation failures into one precise line for the user.

Both ``Occlum.json`` and BOM files are validated with pydantic models. A user must never see
pydantic's multi-line report: they get the JSON path of the first problem, the offending value
and what is allowed, e.g. ``resource_limits.user_space_size: "12XB" is not a size (use e.g.
"256MB")``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from occlum.instance.builtconf import SIZE_FACTORS, size_bytes


class FieldProblem(ValueError):
    """Raised by our validators: ``message`` completes ``<path>: <value> ...``.

    ``show_value=False`` when the message names the value itself; ``subpath`` points below the
    location pydantic reports (a model validator that blames one of the model's fields).
    """

    def __init__(self, message: str, *, show_value: bool = True, subpath: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.show_value = show_value
        self.subpath = subpath


_FACTORS = SIZE_FACTORS


def parse_size(value: object) -> int:
    """Parse an Occlum memory size (``"256MB"``, ``"4KB"``, ``"1GB"``, ``"512B"``) into bytes."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise FieldProblem('is not a size (use a string such as "256MB")')
    size = size_bytes(value)
    if size is None:
        raise FieldProblem('is not a size (use e.g. "256MB")')
    return size


def format_size(n: int) -> str:
    """The inverse of ``parse_size``: the largest unit that represents ``n`` exactly."""
    for unit in ("TB", "GB", "MB", "KB"):
        f = _FACTORS[unit]
        if n and n % f == 0:
            return f"{n // f}{unit}"
    return f"{n}B"


def format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text


_TYPE_MESSAGES = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}


def describe_error(label: str, exc: ValidationError) -> str:
    """One line for the first error of ``exc``, prefixed with ``label`` (a file name)."""
    errors = exc.errors()
    err = errors[0]
    loc = [p for p in err["loc"] if isinstance(p, int | str)]
    value = err.get("input")
    kind = err["type"]
    ctx = err.get("ctx") or {}
    show_value = True
    if kind == "value_error" and isinstance(ctx.get("error"), FieldProblem):
        problem: FieldProblem = ctx["error"]
        text = problem.message
        show_value = problem.show_value
        for part in problem.subpath.split(".") if problem.subpath else ():
            key: int | str = int(part) if part.isdigit() else part
            loc.append(key)
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and isinstance(key, int) and key < len(value):
                value = value[key]
            else:
                value = None
    elif kind == "value_error":
        text = str(ctx.get("error", err["msg"]))
    elif kind == "missing":
        text, show_value = "is required", False
    elif kind == "literal_error":
        text = f"is not allowed (use one of {ctx.get('expected', '?')})"
    elif kind in ("greater_than_equal", "greater_than"):
        text = f"is too small (minimum {ctx.get('ge', ctx.get('gt'))})"
    elif kind in ("less_than_equal", "less_than"):
        text = f"is too large (maximum {ctx.get('le', ctx.get('lt'))})"
    else:
        text = _TYPE_MESSAGES.get(kind, err["msg"])
    where = format_loc(loc)
    line = f"{label}: {where}: {_show(value)} {text}" if show_value else f"{label}: {where}: {text}"
    more = len(errors) - 1
    if more:
        line += f" (and {more} more problem{'s' if more > 1 else ''})"
    return line


def iter_unknown_keys(model: BaseModel, loc: tuple[int | str, ...] = ()) -> Iterator[str]:
    """JSON paths of keys no model declares (models use ``extra="allow"``)."""
    for key in model.model_extra or {}:
        yield format_loc((*loc, key))
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        yield from _iter_value(value, (*loc, info.alias or name))


def _iter_value(value: object, loc: tuple[int | str, ...]) -> Iterator[str]:
    if isinstance(value, BaseModel):
        yield from iter_unknown_keys(value, loc)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _iter_value(item, (*loc, i))
