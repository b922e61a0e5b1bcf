"""Check a built dataset against the format contract; report every fault found.

Checks: ``dataset.json`` readable; every listed shard has its tar, manifest and done
marker, inside the dataset; each tar reads to its end; members of a sample are adjacent and
keys unique across the dataset; every sample has clean, degraded and json and no member the
format does not define; images decode and clean/degraded (and mask) sizes match; tar,
manifest, stats and ``dataset.json`` counts agree; the tar's sha256 matches the one
recorded when it was written.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maa_format.dataset_files import DatasetFileError, read_dataset, read_stats
from maa_format.layout import FormatError
from maa_format.paths import UnsafePathError, confined

MAX_ERRORS_PER_SHARD = 20


@dataclass
class ValidationReport:
    root: Path
    shards: int = 0
    samples: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        head = f"{self.root}: {self.shards} shard(s), {self.samples} sample(s): "
        if self.ok:
            return head + "OK"
        lines = [head + f"{len(self.errors)} fault(s)"]
        lines += [f"  - {e}" for e in self.errors]
        return "\n".join(lines)


def _decode(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray | None:
    arr = np.frombuffer(data, dtype=np.uint8)
    if arr.size == 0:
        return None
    return cv2.imdecode(arr, flags)


def _read_tar(path: Path, decode: bool, errors: list[str], seen_keys: set[str]) -> tuple[list[str], str]:
    """Sample keys in order; appends faults to ``errors``."""
    name = path.name
    keys: list[str] = []
    samples: dict[str, dict[str, bytes]] = {}
    closed: set[str] = set()
    current = None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        with tarfile.open(path, "r:") as tf:
            for member in tf:
                if not member.isfile():
                    errors.append(f"{name}: member {member.name} is not a regular file")
                    continue
                base = member.name.rsplit("/", 1)[-1]
                key, dot, suffix = base.partition(".")
                if not dot:
                    errors.append(f"{name}: member {member.name} has no extension")
                    continue
                if key != current:
                    if key in closed:
                        errors.append(f"{name}: members of sample {key} are not adjacent")
                    if current is not None:
                        closed.add(current)
                    current = key
                    if key in seen_keys:
                        errors.append(f"{name}: duplicate key {key}")
                    seen_keys.add(key)
                    keys.append(key)
                    samples[key] = {}
                fh = tf.extractfile(member)
                data = fh.read() if fh else b""
                if len(data) != member.size:
                    errors.append(f"{name}: member {member.name} is truncated")
                samples[key][suffix] = data
    except (tarfile.TarError, OSError, EOFError) as exc:
        errors.append(f"{name}: unreadable or truncated tar: {exc}")
    for key in keys:
        _check_sample(name, key, samples[key], decode, errors)
    return keys, digest


_IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
# Members the format defines; anything else (a .pyd or .pth member) is refused: stock
# readers' default decoders unpickle some suffixes, so a dataset must not carry them.
_MEMBERS = {"json", "mask.png", *(f"{stem}.{ext}" for stem in ("clean", "degraded") for ext in _IMAGE_EXTS)}


def _check_sample(shard: str, key: str, members: dict[str, bytes], decode: bool, errors: list[str]) -> None:
    for suffix in sorted(set(members) - _MEMBERS):
        errors.append(f"{shard}: sample {key} has member .{suffix}, which the format does not define "
                      f"(a stock reader's decoder may unpickle it)")
    clean = next((s for s in members if s.startswith("clean.")), None)
    degraded = next((s for s in members if s.startswith("degraded.")), None)
    missing = [n for n, s in (("clean", clean), ("degraded", degraded), ("json", "json" if "json" in members else None))
               if s is None]
    if missing:
        errors.append(f"{shard}: sample {key} lacks {', '.join(missing)}")
        return
    try:
        prov = json.loads(members["json"])
        if not isinstance(prov, dict):
            errors.append(f"{shard}: sample {key} json is not an object")
        elif prov.get("key", key) != key:
            errors.append(f"{shard}: sample {key} json names key {prov.get('key')}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        errors.append(f"{shard}: sample {key} json unreadable: {exc}")
    if not decode:
        return
    c, d = _decode(members[clean]), _decode(members[degraded])
    if c is None or d is None:
        errors.append(f"{shard}: sample {key}: {'clean' if c is None else 'degraded'} image does not decode")
        return
    if c.shape != d.shape:
        errors.append(f"{shard}: sample {key}: clean {c.shape[:2]} and degraded {d.shape[:2]} sizes differ")
    if "mask.png" in members:
        m = _decode(members["mask.png"], cv2.IMREAD_GRAYSCALE)
        if m is None:
            errors.append(f"{shard}: sample {key}: mask.png does not decode")
        elif m.shape[:2] != c.shape[:2]:
            errors.append(f"{shard}: sample {key}: mask {m.shape[:2]} and clean {c.shape[:2]} sizes differ")


def validate(root: str | Path, decode: bool = True) -> ValidationReport:
    root = Path(root)
    report = ValidationReport(root)
    errors = report.errors
    try:
        ds: dict[str, Any] = read_dataset(root)  # format and schema checked: every field used below is there and typed
    except FileNotFoundError:
        errors.append("dataset.json missing (build not finished?)")
        return report
    except (DatasetFileError, FormatError) as exc:
        errors.append(f"dataset.json unreadable: {exc}")
        return report
    report.shards = len(ds["shards"])
    seen: set[str] = set()
    total_ok = 0
    for i, entry in enumerate(ds["shards"]):
        shard_errors: list[str] = []
        total_ok += _check_shard(root, i, entry, decode, seen, shard_errors)
        errors.extend(shard_errors[:MAX_ERRORS_PER_SHARD])
        if len(shard_errors) > MAX_ERRORS_PER_SHARD:
            errors.append(f"{entry['name']}: {len(shard_errors) - MAX_ERRORS_PER_SHARD} more fault(s) not listed")
    report.samples += total_ok
    counted = ds.get("counts", {}).get("pairs")
    if counted is not None and counted != total_ok:
        errors.append(f"dataset.json counts {counted} pairs, the shards hold {total_ok}")
    if total_ok == 0:   # well-formed but useless: a trainer would find nothing to read
        errors.append("the dataset holds no pairs (0 ok samples); see `corruptor stats` for why they failed")
    return report


def _check_shard(root: Path, i: int, entry: dict[str, Any], decode: bool, seen: set[str],
                 shard_errors: list[str]) -> int:
    """Check shard ``i`` of dataset.json (tar, manifest, done marker); returns the samples its tar holds."""
    name = entry["name"]
    try:  # paths from the dataset's own file: never outside the dataset
        tar_path = confined(root, entry["tar"], f"dataset.json: shards[{i}].tar")
        pq_path = confined(root, entry["manifest"], f"dataset.json: shards[{i}].manifest")
        stats_path = confined(root, f"shards/{name}.stats.json", f"dataset.json: shards[{i}].name")
    except UnsafePathError as exc:
        shard_errors.append(f"{name}: {exc}")
        return 0
    shard_errors += [f"{name}: {p.name} missing" for p in (tar_path, pq_path, stats_path) if not p.is_file()]
    if shard_errors:
        return 0
    keys, digest = _read_tar(tar_path, decode, shard_errors, seen)
    table = _read_manifest(pq_path, name, shard_errors)
    try:
        stats = read_stats(stats_path)
    except DatasetFileError as exc:
        shard_errors.append(f"{name}: {stats_path.name} is unreadable (a done marker must be valid JSON): {exc}")
        stats = {}
    if table is not None:
        _compare_manifest(name, table, keys, stats, shard_errors)
    for label, value in (("stats", stats.get("ok")), ("dataset.json", entry.get("samples"))):
        if value != len(keys):
            shard_errors.append(f"{name}: tar has {len(keys)} samples, {label} says {value}")
    if entry.get("tar_sha256") and entry["tar_sha256"] != digest:
        shard_errors.append(f"{name}: tar sha256 differs from the one recorded at build time")
    return len(keys)


def _read_manifest(path: Path, name: str, shard_errors: list[str]) -> list[dict] | None:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=["key", "status"]).to_pylist()
    except Exception as exc:  # any pyarrow failure means an unusable manifest; reported, not raised
        shard_errors.append(f"{name}: manifest unreadable: {exc}")
        return None


def _compare_manifest(name: str, table: list[dict], keys: list[str], stats: dict, shard_errors: list[str]) -> None:
    ok_keys = [r["key"] for r in table if r["status"] == "ok"]
    if sorted(ok_keys) != sorted(keys):
        lost = sorted(set(ok_keys) - set(keys))
        extra = sorted(set(keys) - set(ok_keys))
        if lost:
            shard_errors.append(f"{name}: {len(lost)} sample(s) in the manifest are missing from the tar, "
                                f"e.g. {lost[0]}")
        if extra:
            shard_errors.append(f"{name}: {len(extra)} sample(s) in the tar are not ok in the manifest, "
                                f"e.g. {extra[0]}")
    if len(table) != stats.get("rows"):
        shard_errors.append(f"{name}: manifest has {len(table)} rows, stats say {stats.get('rows')}")
