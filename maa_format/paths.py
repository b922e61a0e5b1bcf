"""Paths named inside a dataset's own files stay inside that dataset.

A dataset folder is data someone may have handed over: its ``dataset.json``, ``plan.json``
and ``*.stats.json`` name files, and every such name is read through `confined`, which
refuses absolute paths, ``..`` components and symbolic links that lead out of the folder.
The folder itself may be a symbolic link (a dataset kept on another disk): it is resolved
first, and only what lies under it counts as inside.

`link_or_copy_regular` shares a file from one dataset with another (the mask cache on
rebuild) without ever following a symbolic link: a link planted there would otherwise turn
into a hard link to (or a copy of) whatever private file it points to.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path, PurePosixPath


class UnsafePathError(ValueError):
    """A path read from a dataset's files points outside the dataset (or through a link)."""


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` lies under ``root`` once both are resolved (symbolic links followed)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def check_relative(relative: object, where: str = "") -> str:
    """``relative`` as a clean relative path string, or `UnsafePathError`: not a string, empty,
    absolute, holding a NUL byte or a ``..`` component."""
    if not isinstance(relative, str):
        raise UnsafePathError(f"{_where(where)}expected a relative path (a string), got {type(relative).__name__}")
    if not relative or "\x00" in relative:
        raise UnsafePathError(f"{_where(where)}path {relative!r} is empty or holds a NUL byte")
    if os.path.isabs(relative) or PurePosixPath(relative).is_absolute():
        raise UnsafePathError(f"{_where(where)}path {relative!r} is absolute; a dataset names its files "
                              "relative to its own folder")
    if ".." in PurePosixPath(relative).parts:
        raise UnsafePathError(f"{_where(where)}path {relative!r} contains '..'; a dataset names its files "
                              "inside its own folder")
    return relative


def confined(root: str | os.PathLike, relative: object, where: str = "") -> Path:
    """``root / relative``, checked to stay inside ``root``.

    ``relative`` comes from a file inside ``root`` (``where`` names that file and field for the
    error, e.g. ``"dataset.json: shards[0].tar"``). Refused with `UnsafePathError`: anything
    `check_relative` refuses, and a path that resolves outside ``root`` through a symbolic link
    (a link that stays inside is fine). The path need not exist."""
    rel = check_relative(relative, where)
    path = Path(root) / rel
    if not is_within(path, root):
        raise UnsafePathError(f"{_where(where)}path {rel!r} leads out of {root} through a symbolic link; "
                              "a dataset's files must lie inside its folder")
    return path


def check_inside(path: str | os.PathLike, root: str | os.PathLike, where: str = "") -> Path:
    """``path`` (already joined under ``root``) checked to resolve inside ``root``."""
    if not is_within(path, root):
        raise UnsafePathError(f"{_where(where)}{path} leads out of {root} through a symbolic link; "
                              "a dataset's files must lie inside its folder")
    return Path(path)


def lexically_within(path: str | os.PathLike, base: str | os.PathLike) -> bool:
    """Whether ``path`` names something under ``base`` by its components alone (no ``..``, no
    link resolution): for files of a user's source folder, where links are the user's own."""
    p, raw_base = os.fspath(path), str(Path(base))  # Path() drops "./" and doubled slashes, as scanning did
    rest = p[len(raw_base):] if p.startswith(raw_base.rstrip(os.sep) + os.sep) else p
    if ".." in PurePosixPath(rest).parts:  # the base may climb ("../photos"), what follows it may not
        return False
    a, b = os.path.abspath(p), os.path.abspath(raw_base)
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep)


def link_or_copy_regular(src: str | os.PathLike, dst: str | os.PathLike, where: str = "") -> None:
    """Hard-link ``src`` to ``dst`` (a copy where linking fails), only if ``src`` is a regular
    file and not a symbolic link; anything else is refused with `UnsafePathError`.

    The copy opens ``src`` with O_NOFOLLOW and checks what it opened, so a link swapped in after
    the check is not followed either."""
    src, dst = os.fspath(src), os.fspath(dst)
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{_where(where)}{src} is a symbolic link; only regular files are shared")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{_where(where)}{src} is not a regular file")
    try:
        os.link(src, dst, follow_symlinks=False)  # links the entry itself, never a link's target
    except OSError:
        pass
    else:
        if not stat.S_ISREG(os.lstat(dst).st_mode):  # src was swapped for something else meanwhile
            os.unlink(dst)
            raise UnsafePathError(f"{_where(where)}{src} changed into a non-regular file while being linked")
        return
    try:
        fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a symbolic link after the check above
            raise UnsafePathError(f"{_where(where)}{src} is a symbolic link; only regular files are shared") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(f"{_where(where)}{src} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fin, open(dst, "xb") as fout:
            shutil.copyfileobj(fin, fout)
        shutil.copystat(src, dst, follow_symlinks=False)
    finally:
        os.close(fd)


__all__ = ["UnsafePathError", "check_inside", "check_relative", "confined", "is_within", "lexically_within",
           "link_or_copy_regular"]
