"""Which callables a pickle would call, read off its opcodes without running any of it.

Torch weight files (``.pt``, ``.pth``, ``.bin``) are pickles, and a pickle can name any
importable callable (``os.system``, ``builtins.exec``) to be called on load. The loaders in
this project load them only with ``torch.load(weights_only=True)``, whose restricted
unpickler refuses such names; this module is for the message: it lists the globals a file
references (``module.name``), so a refusal can say what the file wanted to call.

It reads a torch zip archive's ``*.pkl`` records or a bare pickle stream with
`pickletools.genops`, which decodes opcodes and never imports or calls anything. Best
effort: an unreadable file gives an empty list.
"""
from __future__ import annotations

import io
import os
import pickletools
import zipfile

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
MAX_SCAN_BYTES = 64 << 20  # the pickle part of a torch file is small; tensor data lives beside it


def _globals_in(data: bytes, limit: int) -> list[str]:
    found: list[str] = []
    strings: list[str] = []     # recent string pushes: STACK_GLOBAL takes the last two
    memo: dict[int, str] = {}
    stream = io.BytesIO(data)
    while stream.tell() < len(data) and len(found) < limit:
        try:
            for op, arg, _ in pickletools.genops(stream):
                name = op.name
                if name in _STRING_OPS and isinstance(arg, (str, bytes)):
                    strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
                elif name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                    memo[int(arg)] = strings[-1]
                elif name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                    strings.append(memo[int(arg)])
                elif name in ("GLOBAL", "INST") and isinstance(arg, str):
                    found.append(arg.replace(" ", ".", 1))
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                if len(found) >= limit:
                    break
        except Exception:  # not (or no longer) a pickle: what was found so far is the answer
            break
    return found


def pickle_globals(path: str | os.PathLike, limit: int = 1000) -> list[str]:
    """Distinct ``module.name`` globals the pickle(s) in ``path`` reference, in order of appearance."""
    found: list[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if info.filename.endswith(".pkl") and info.file_size <= MAX_SCAN_BYTES:
                        found += _globals_in(zf.read(info), limit)
        else:
            with open(path, "rb") as fh:
                found = _globals_in(fh.read(MAX_SCAN_BYTES), limit)
    except (OSError, zipfile.BadZipFile, ValueError):
        return []
    return list(dict.fromkeys(found))


# Globals a plain tensor file references (torch's own rebuild helpers, storages, containers).
_PLAIN_PREFIXES = ("torch._utils.", "torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset",
                   "builtins.bytearray", "builtins.complex", "builtins.slice")


def suspicious_globals(path: str | os.PathLike) -> list[str]:
    """The globals in ``path`` that a file of plain tensors would not reference (for messages)."""
    return [g for g in pickle_globals(path) if not g.startswith(_PLAIN_PREFIXES)]


def refusal_message(path: str | os.PathLike, error: str) -> str:
    """One line for a file ``torch.load(weights_only=True)`` refused with ``error``: the callables it
    wanted, when its opcodes name any beyond a tensor file's own, else the loader's first line."""
    wanted = suspicious_globals(path)
    if wanted:
        return (f"{path}: refused: the pickle calls {', '.join(wanted[:5])}{' ...' if len(wanted) > 5 else ''}, "
                f"which could run code; only tensors and plain containers are loaded (weights_only=True)")
    lines = error.strip().splitlines()
    return f"{path}: not a loadable torch weight file (weights_only=True): {lines[0][:200] if lines else 'unreadable'}"


__all__ = ["pickle_globals", "refusal_message", "suspicious_globals"]
