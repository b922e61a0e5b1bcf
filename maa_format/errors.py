"""One line of text for a pydantic ValidationError: ``field: message; field: message``.

Every typed config of both halves (recipes, mask settings, build settings, training
configs) is validated by pydantic at its entry point; a user mistake must come back as
one line naming each bad field, not as pydantic's multi-line report. Pure pydantic: no
torch, no OpenCV.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

# Messages the project's own validators raise are already sentences: no "(got ...)" after them.
_OWN_MESSAGE = frozenset({"value_error", "assertion_error", "missing"})
_PREFIXES = ("Value error, ", "Assertion failed, ")
_MAX_INPUT = 80   # characters of a rejected value shown after "got"


def field_path(loc: Sequence[Any], root: str | None = None) -> str:
    """``("global", "one_of", 2, "op")`` -> ``global.one_of[2].op`` (``recipe.global...`` with
    ``root="recipe"``). Tagged-union tags such as ``<op>`` are left out: they are not fields."""
    out = root or ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("<") and part.endswith(">"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_INPUT else text[:_MAX_INPUT - 3] + "..."


def error_message(err: Mapping[str, Any]) -> str:
    """One error's message: our validators' sentence as raised, pydantic's with the bad value."""
    kind, msg = err.get("type", ""), str(err.get("msg", ""))
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    value = err.get("input")
    if "input" in err and kind not in _OWN_MESSAGE and not isinstance(value, (Mapping, list, tuple)) \
            and not kind.startswith("invalid_"):   # invalid_*: a custom union error, a sentence too
        msg += f" (got {_shown(value)})"
    return msg


def describe_validation_error(exc: Any, source: str | None = None, *, root: str | None = None) -> str:
    """``exc`` (a pydantic ``ValidationError``) as one line: ``field: message; field: message``,
    each distinct line once, prefixed ``source: `` when given (a file name, a flag)."""
    seen: list[str] = []
    for err in exc.errors(include_url=False):
        line = f"{field_path(err.get('loc', ()), root)}: {error_message(err)}"
        if line not in seen:
            seen.append(line)
    body = "; ".join(seen) or str(exc)
    return f"{source}: {body}" if source else body
