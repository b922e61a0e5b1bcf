"""Fetch real documents for `pdf:` sources into a cache folder, once.

    python -m pipelines.fetch_documents [--cache DIR] [--only texlive,ocrmypdf] [--apt-update]

- ``texlive``: Debian's ``texlive-latex-recommended-doc`` (``apt-get download``, about 50 MB;
  155 typeset manuals, about 6,100 pages), unpacked with ``dpkg-deb -x``.
- ``ocrmypdf``: the ``ocrmypdf`` 17.13.0 source distribution (``pip download``, sha256 pinned);
  its ``tests/resources`` hold real scans, photos of text and odd PDFs (one of them invalid).

Default cache: ``~/.cache/maa-toolkit/documents`` (or ``$MAA_CACHE_DIR/documents``, as for `maa-models`). A finished
fetch leaves ``.complete.json`` beside the files; running again finds it and downloads
nothing. Prints the ``--source`` arguments for ``corruptor build``; exit 2 with one line
when a download fails (offline, no apt lists, wrong hash).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from maa_format.io import file_sha256 as sha256_of

MARKER = ".complete.json"
TEXLIVE_PACKAGE = "texlive-latex-recommended-doc"
# sha256 of the .deb per Debian version seen so far; another version is accepted and recorded.
TEXLIVE_KNOWN_SHA256 = {
    "2022.20230122-3": "8bea1f81bf50354fa4f3046c2dbb82efba9b8520aca0b2ab12eed18554a66c11",
}
OCRMYPDF_VERSION = "17.13.0"
OCRMYPDF_SHA256 = "151c35d810eb628fbc5cb9bbe80b834ecf094737efa0e7a2e9e1fac3c730ed49"


class FetchError(RuntimeError):
    """A download or unpack step failed; the message says which and why."""


def default_cache() -> Path:
    base = os.environ.get("MAA_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "maa-toolkit") / "documents"



def _run(cmd: list[str], cwd: Path, what: str) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FetchError(f"{what}: {cmd[0]} is not installed") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        raise FetchError(f"{what}: `{' '.join(cmd)}` failed: {tail[-1] if tail else f'exit {done.returncode}'}")
    return done.stdout


@dataclass(frozen=True)
class Fetched:
    name: str
    pdf_root: Path      # folder to give a pdf: source
    record: dict


def _finished(dest: Path) -> dict | None:
    marker = dest / MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def _fetch_into(dest: Path, fill: Callable[[Path, Path], dict]) -> dict:
    """Run ``fill(work, staging)`` in a temp folder beside ``dest`` and move the result into
    place only when it succeeded, so an interrupted fetch never looks finished."""
    record = _finished(dest)
    if record is not None:
        return record
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp:
        work, staging = Path(tmp) / "download", Path(tmp) / "files"
        work.mkdir()
        staging.mkdir()
        record = fill(work, staging)
        record["pdfs"] = sum(1 for _ in staging.rglob("*.pdf"))
        (staging / MARKER).write_text(json.dumps(record, indent=2, sort_keys=True))
        if dest.exists():
            shutil.rmtree(dest)  # an unfinished earlier attempt: no marker
        os.replace(staging, dest)
    return record


def fetch_texlive(cache: Path, apt_update: bool = False) -> Fetched:
    dest = cache / TEXLIVE_PACKAGE

    def fill(work: Path, staging: Path) -> dict:
        if apt_update:
            _run(["apt-get", "update"], work, "apt-get update")
        try:
            _run(["apt-get", "download", TEXLIVE_PACKAGE], work, f"apt-get download {TEXLIVE_PACKAGE}")
        except FetchError as exc:
            hint = "" if apt_update else " (no package lists? run with --apt-update, or `apt-get update` first)"
            raise FetchError(f"{exc}{hint}") from None
        debs = sorted(work.glob(f"{TEXLIVE_PACKAGE}_*.deb"))
        if not debs:
            raise FetchError(f"apt-get download {TEXLIVE_PACKAGE}: no .deb was written")
        deb = debs[-1]
        version = deb.name.split("_")[1]
        digest = sha256_of(deb)
        known = TEXLIVE_KNOWN_SHA256.get(version)
        if known is not None and known != digest:
            raise FetchError(f"{deb.name}: sha256 {digest} differs from the known {known} for version {version}")
        _run(["dpkg-deb", "-x", str(deb), str(staging)], work, f"dpkg-deb -x {deb.name}")
        return {"package": TEXLIVE_PACKAGE, "version": version, "sha256": digest, "known_hash": known is not None,
                "pdf_root": "usr/share/doc/texlive-doc"}

    record = _fetch_into(dest, fill)
    return Fetched("texlive", dest / record["pdf_root"], record)


def fetch_ocrmypdf(cache: Path) -> Fetched:
    dest = cache / f"ocrmypdf-{OCRMYPDF_VERSION}-tests"

    def fill(work: Path, staging: Path) -> dict:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", str(work),
              f"ocrmypdf=={OCRMYPDF_VERSION}"], work, f"pip download ocrmypdf=={OCRMYPDF_VERSION}")
        sdist = work / f"ocrmypdf-{OCRMYPDF_VERSION}.tar.gz"
        if not sdist.is_file():
            raise FetchError(f"pip download ocrmypdf=={OCRMYPDF_VERSION}: {sdist.name} was not written")
        digest = sha256_of(sdist)
        if digest != OCRMYPDF_SHA256:
            raise FetchError(f"{sdist.name}: sha256 {digest} differs from the pinned {OCRMYPDF_SHA256}")
        prefix = f"ocrmypdf-{OCRMYPDF_VERSION}/tests/resources/"
        with tarfile.open(sdist, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix):]
                if ".." in Path(m.name).parts or m.name.startswith("/"):
                    raise FetchError(f"{sdist.name}: refusing member path {m.name!r}")
            tar.extractall(staging / "resources", members=members, filter="data")
        return {"package": "ocrmypdf", "version": OCRMYPDF_VERSION, "sha256": digest, "known_hash": True,
                "pdf_root": "resources", "files": len(members)}

    record = _fetch_into(dest, fill)
    return Fetched("ocrmypdf", dest / record["pdf_root"], record)


FETCHERS = {"texlive": fetch_texlive, "ocrmypdf": fetch_ocrmypdf}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.fetch_documents", description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=None, help=f"cache folder (default {default_cache()})")
    p.add_argument("--only", default=",".join(FETCHERS), help="comma-separated subset of: " + ", ".join(FETCHERS))
    p.add_argument("--apt-update", action="store_true", help="run `apt-get update` before `apt-get download`")
    args = p.parse_args(argv)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(wanted) - set(FETCHERS))
    if unknown or not wanted:
        p.error(f"--only {args.only!r}: allowed: {', '.join(FETCHERS)}")
    cache = args.cache or default_cache()
    try:
        fetched = [fetch_texlive(cache, args.apt_update) if w == "texlive" else FETCHERS[w](cache) for w in wanted]
    except (FetchError, OSError) as exc:
        print(f"fetch_documents: error: {exc}", file=sys.stderr)
        return 2
    for f in fetched:
        r = f.record
        print(f"{f.name}: {r['package']} {r['version']}, {r['pdfs']} PDFs in {f.pdf_root}")
    print("sources: " + " ".join(f"--source {f.name}=pdf:{f.pdf_root}" for f in fetched))
    return 0


if __name__ == "__main__":
    sys.exit(main())
