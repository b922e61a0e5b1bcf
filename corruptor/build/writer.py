"""One shard on disk: a WebDataset tar, its Parquet manifest, and the done marker.

Files are written under temporary names and renamed into place in a fixed order:
tar, manifest, then ``.stats.json`` last. A shard is done exactly when its stats file
exists, so a crash or a full disk at any point leaves no shard marked done with
partial data; the temp files are removed by the next run.

Output is byte-identical for identical samples: tar members get a fixed mtime, owner
and mode and sorted member order, and the manifest has a fixed schema and no timestamps.
Timings live only in the stats file.

The tar is written with the standard library's `tarfile`, member for member what
``webdataset.TarWriter(user=, group=, mode=, mtime=, encoder=False)`` writes (a test
holds the two to the same bytes): importing webdataset pulls in torch, about half a
gigabyte and over a second per build worker, for nothing a worker needs.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from maa_format import dataset_files
from maa_format.io import PARTIAL_TAG, atomic_write, json_bytes, temp_name
from maa_format.keys import check_key
from maa_format.layout import ShardPaths, shard_name
from maa_format.schema import MANIFEST_SCHEMA, STATUSES
from maa_format.io import file_sha256

__all__ = ["PARTIAL_TAG", "MANIFEST_SCHEMA", "STATUSES", "ShardPaths", "ShardWriter", "SampleTar",
           "file_sha256", "json_bytes", "read_stats", "remove_partials", "shard_name"]

TAR_MTIME = 0  # an int: a float mtime adds a PAX header to every member
TAR_MODE = 0o444
TAR_OWNER = "maa"


class SampleTar:
    """WebDataset sample layout on a stream: member ``<key>.<suffix>`` per file, suffixes
    in sorted order, fixed owner, mode and mtime, the stdlib's default (PAX) tar format."""

    def __init__(self, fileobj, user: str = TAR_OWNER, group: str = TAR_OWNER, mode: int = TAR_MODE,
                 mtime: int = TAR_MTIME):
        self._tar = tarfile.open(fileobj=fileobj, mode="w|")
        self.user, self.group, self.mode, self.mtime = user, group, mode, mtime

    def write(self, key: str, files: dict[str, bytes]) -> None:
        for suffix in sorted(files):
            data = files[suffix]
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ValueError(f"member {suffix!r} of sample {key!r} must be bytes, got {type(data).__name__}")
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size = len(data)
            info.mtime = self.mtime
            info.mode = self.mode
            info.uname = self.user
            info.gname = self.group
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()


def remove_partials(shards_dir: str | Path) -> list[Path]:
    """Delete temp files left by interrupted attempts; returns what was removed."""
    removed = []
    d = Path(shards_dir)
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if PARTIAL_TAG in p.name:
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


class ShardWriter:
    """Streams samples into a temp tar, collects manifest rows, commits on ``close``."""

    def __init__(self, shards_dir: str | Path, index: int):
        self.index = index
        self.paths = ShardPaths.of(shards_dir, index)
        self.paths.tar.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_tar = temp_name(self.paths.tar)
        self._fh = open(self._tmp_tar, "wb")
        self._tar = SampleTar(self._fh)
        self._rows: list[dict[str, Any]] = []
        self._keys: set[str] = set()

    def add(self, row: dict[str, Any], files: dict[str, bytes] | None = None) -> None:
        """One manifest row; ``files`` (member suffix -> bytes) go into the tar when given."""
        key = row["key"]
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r} in shard {shard_name(self.index)}")
        check_key(key)
        if row.get("status") not in STATUSES:
            raise ValueError(f"status {row.get('status')!r} not allowed; allowed: {', '.join(STATUSES)}")
        self._keys.add(key)
        if files:
            self._tar.write(key, files)
        self._rows.append({name: row.get(name) for name in MANIFEST_SCHEMA.names})

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def close(self, stats: dict[str, Any]) -> dict[str, Any]:
        """Commit tar, manifest, then the stats marker. Returns the stats as written."""
        self._tar.close()
        self._fh.close()
        tar_sha = file_sha256(self._tmp_tar)
        atomic_write(self.paths.tar, lambda tmp: None, temp=self._tmp_tar, fsync=True)

        table = pa.Table.from_pylist(self._rows, schema=MANIFEST_SCHEMA)
        atomic_write(self.paths.manifest, lambda tmp: pq.write_table(table, tmp, compression="zstd"), fsync=True)

        counts = {s: sum(1 for r in self._rows if r["status"] == s) for s in STATUSES}
        full = {
            "shard": shard_name(self.index),
            "rows": len(self._rows),
            **counts,
            "transient_failures": sum(1 for r in self._rows if r["error_kind"] == "transient"),
            "tar_bytes": self.paths.tar.stat().st_size,
            "tar_sha256": tar_sha,
            **stats,
        }
        atomic_write(self.paths.stats, json_bytes(full), fsync=True)
        return full

    def abort(self) -> None:
        """Drop everything written so far (the shard stays not-done)."""
        try:
            self._tar.close()
        except Exception:  # the tar stream may be the thing that failed; the file goes anyway
            pass
        self._fh.close()
        self._tmp_tar.unlink(missing_ok=True)



def read_stats(path: str | Path) -> dict[str, Any] | None:
    """A shard's stats, or None when it is not done (missing, unreadable or wrongly typed marker)."""
    try:
        return dataset_files.read_stats(path)
    except (FileNotFoundError, dataset_files.DatasetFileError):
        return None
