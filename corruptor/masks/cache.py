"""On-disk mask cache: masks are computed once per source image and reused by every recipe.

Layout under a dataset's ``masks/`` folder::

    masks/<settings-hash>/<sha256[:2]>/<sha256>.parquet

one row per mask (COCO RLE ``counts``, ``h``, ``w``, ``area``, ``bbox`` as x, y, w, h,
``score``) and file-level metadata naming the image sha256, the source, the settings
hash and the format version. A file that cannot be read or does not match what was asked
for is deleted and reported as a miss with a warning: a wrong mask is worse than a slow one.

Files are written under a temp name and renamed into place. A writer killed mid-write
(SIGKILL, node loss) leaves its temp file behind; readers never look at temp names, and
the job's driver removes the stale ones when the next job starts (`remove_stale_temps`).
Workers never clean: one of them cannot tell a dead writer's file from a live one's.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from corruptor.masks import rle
from maa_format.io import atomic_write
from corruptor.masks.source import MaskError, MaskSet, MaskSource, MaskSourceConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_KEY = b"corruptor.masks"
TEMP_SUFFIX = ".tmp"
# A cache write takes milliseconds; a temp file untouched this long has no live writer,
# whichever machine wrote it (the host/pid check below only works for this machine).
STALE_AFTER_S = 15 * 60


class CacheMismatch(Exception):
    """A cache file exists but is corrupt or belongs to other settings."""


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("counts", pa.string()), ("h", pa.int32()), ("w", pa.int32()), ("area", pa.int64()),
        ("bbox", pa.list_(pa.int32(), 4)), ("score", pa.float32()),
    ])


def _bbox(mask: np.ndarray) -> list[int]:
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def temp_file(folder: Path, stem: str) -> Path:
    """A new, empty temp file in ``folder``, unique per writer, named
    ``.<stem>.<host>-<pid>.<random>.tmp`` so a later driver can tell whose it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.{_host()}-{os.getpid()}.", suffix=TEMP_SUFFIX, dir=folder)
    os.close(fd)
    return Path(tmp)


def is_temp(name: str) -> bool:
    """Whether a file name under ``masks/`` is a writer's temp file, not a cache entry."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _is_stale(path: Path, now: float, host: str, stale_after_s: float) -> bool:
    parts = path.name.split(".")  # ["", stem, "host-pid", random, "tmp"]
    if len(parts) == 5:
        writer_host, _, pid = parts[2].rpartition("-")
        if writer_host == host and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            return True
    try:
        return now - path.stat().st_mtime > stale_after_s
    except FileNotFoundError:  # its writer renamed it into place meanwhile
        return False


def remove_stale_temps(root: Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete temp files under a ``masks/`` folder whose writer is gone: its process on
    this machine no longer runs, or the file has not changed for ``stale_after_s``.
    For a job's driver at start; returns what was removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    now, host, removed = time.time(), _host(), []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif is_temp(entry.name):
                    path = Path(entry.path)
                    if _is_stale(path, now, host, stale_after_s):
                        path.unlink(missing_ok=True)
                        removed.append(path)
    if removed:
        log.info("mask cache: removed %d temp file(s) left by interrupted writers under %s", len(removed), root)
    return sorted(removed)


class MaskCache:
    """Masks of one mask-source configuration; ``root`` is the dataset's ``masks/`` folder."""

    def __init__(self, root: Path, cfg: MaskSourceConfig):
        self.root = Path(root)
        self.config = cfg
        self.settings_hash = cfg.settings_hash()
        self.dir = self.root / self.settings_hash
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0  # misses caused by a corrupt or mismatched file

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"mask cache keys are lowercase hex sha256 digests, got '{sha256}'")
        return self.dir / sha256[:2] / f"{sha256}.parquet"

    # -- reading ----------------------------------------------------------------------

    def _check_meta(self, meta: dict | None, sha256: str) -> dict:
        if not meta or META_KEY not in meta:
            raise CacheMismatch("no corruptor.masks metadata")
        info = json.loads(meta[META_KEY])
        expected = {"sha256": sha256, "settings_hash": self.settings_hash, "source": self.config.kind,
                    "format_version": FORMAT_VERSION}
        for key, want in expected.items():
            if info.get(key) != want:
                raise CacheMismatch(f"{key} is {info.get(key)!r}, expected {want!r}")
        return info

    def _read(self, path: Path, sha256: str, shape: tuple[int, int] | None) -> MaskSet:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        info = self._check_meta(table.schema.metadata, sha256)
        h, w = int(info["height"]), int(info["width"])
        if shape is not None and (h, w) != tuple(shape):
            raise CacheMismatch(f"masks are {h}x{w} but the image is {shape[0]}x{shape[1]}")
        if table.num_rows != int(info["count"]):
            raise CacheMismatch(f"{table.num_rows} rows, metadata says {info['count']}")
        masks, scores = [], []
        for row in table.to_pylist():
            if (row["h"], row["w"]) != (h, w):
                raise CacheMismatch(f"a mask is {row['h']}x{row['w']}, expected {h}x{w}")
            m = rle.decode({"size": [h, w], "counts": row["counts"]})
            if int(m.sum()) != row["area"]:
                raise CacheMismatch("a mask's area does not match its RLE")
            masks.append(m)
            scores.append(float(row["score"]))
        return MaskSet(masks, scores)

    def _read_runs(self, path: Path, sha256: str, shape: tuple[int, int] | None):
        """Like ``_read`` but undecoded: (run lengths per mask, (h, w)), checked the same
        way (the stored area must equal the sum of the runs of ones)."""
        import pyarrow.parquet as pq

        from corruptor.build.mask_view import runs_of

        table = pq.read_table(path, columns=["counts", "h", "w", "area"])
        info = self._check_meta(table.schema.metadata, sha256)
        h, w = int(info["height"]), int(info["width"])
        if shape is not None and (h, w) != tuple(shape):
            raise CacheMismatch(f"masks are {h}x{w} but the image is {shape[0]}x{shape[1]}")
        if table.num_rows != int(info["count"]):
            raise CacheMismatch(f"{table.num_rows} rows, metadata says {info['count']}")
        out = []
        cols = table.to_pydict()
        for counts, mh, mw, area in zip(cols["counts"], cols["h"], cols["w"], cols["area"]):
            if (mh, mw) != (h, w):
                raise CacheMismatch(f"a mask is {mh}x{mw}, expected {h}x{w}")
            runs = runs_of(counts, (h, w))
            if int(runs[1::2].sum()) != area:
                raise CacheMismatch("a mask's area does not match its RLE")
            out.append(runs)
        return out, (h, w)

    def get_runs(self, sha256: str, shape: tuple[int, int] | None = None):
        """Cached masks as run lengths, without decoding them, or None on a miss (a corrupt
        or mismatched file is deleted, as in ``get``)."""
        path = self.path(sha256)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            runs = self._read_runs(path, sha256, shape)
        except Exception as exc:
            self._discard(path, exc)
            self.misses += 1
            return None
        self.hits += 1
        return runs

    def _discard(self, path: Path, why: Exception) -> None:
        log.warning("mask cache: discarding %s (%s); it will be rebuilt", path, why)
        self.rebuilt += 1
        path.unlink(missing_ok=True)

    def get(self, sha256: str, shape: tuple[int, int] | None = None) -> MaskSet | None:
        """Cached masks, or None on a miss (also for a corrupt or mismatched file, which is deleted)."""
        path = self.path(sha256)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            masks = self._read(path, sha256, shape)
        except Exception as exc:  # unreadable Parquet, bad RLE, wrong metadata: never use it
            self._discard(path, exc)
            self.misses += 1
            return None
        self.hits += 1
        return masks

    def has(self, sha256: str) -> bool:
        """Cheap check (metadata only) used to skip work before scheduling it."""
        import pyarrow.parquet as pq

        path = self.path(sha256)
        if not path.is_file():
            return False
        try:
            self._check_meta(pq.read_schema(path).metadata, sha256)
        except Exception as exc:
            self._discard(path, exc)
            return False
        return True

    # -- writing ----------------------------------------------------------------------

    def put(self, sha256: str, masks: Sequence[np.ndarray], height: int | None = None,
            width: int | None = None, scores: Sequence[float] | None = None) -> Path:
        """Write atomically (temp file + rename) so readers never see half a file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if scores is None:
            scores = getattr(masks, "scores", None) or [1.0] * len(masks)
        if masks:
            height, width = masks[0].shape
        if height is None or width is None:
            raise ValueError("put() of zero masks needs the image height and width")
        rows = {"counts": [], "h": [], "w": [], "area": [], "bbox": [], "score": []}
        for m, s in zip(masks, scores):
            m = np.asarray(m, dtype=bool)
            if m.shape != (height, width):
                raise ValueError(f"all masks of an image must share its size; got {m.shape} and {(height, width)}")
            rows["counts"].append(rle.encode(m)["counts"])
            rows["h"].append(height)
            rows["w"].append(width)
            rows["area"].append(int(m.sum()))
            rows["bbox"].append(_bbox(m))
            rows["score"].append(float(s))
        info = {"sha256": sha256, "source": self.config.kind, "settings_hash": self.settings_hash,
                "format_version": FORMAT_VERSION, "count": len(rows["counts"]),
                "height": int(height), "width": int(width),
                "settings": json.loads(self.config.model_dump_json())}
        schema = _schema().with_metadata({META_KEY: json.dumps(info, sort_keys=True).encode()})
        table = pa.table(rows, schema=schema)
        path = self.path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The temp name says whose it is, so a later driver can clean up after a dead one.
        return atomic_write(path, lambda tmp: pq.write_table(table, tmp), temp=temp_file(path.parent, sha256[:8]))

    def get_or_compute(self, source: MaskSource, sha256: str, image: np.ndarray,
                       keys: Sequence[str] | None = None) -> MaskSet:
        """Cached masks, or segment now and cache; a per-image `MaskError` is raised."""
        cached = self.get(sha256, image.shape[:2])
        if cached is not None:
            return cached
        outcome = source.generate([image], [[sha256, *(keys or [])]])[0]
        if isinstance(outcome, MaskError):
            raise outcome
        self.put(sha256, outcome, image.shape[0], image.shape[1])
        return outcome

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "rebuilt": self.rebuilt}
