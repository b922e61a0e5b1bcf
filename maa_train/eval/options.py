"""What an evaluation is asked to do: the adapter checkpoints to compare and the options of
the mechanism table, checked where they are made."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TOKEN_MODES = ("pooled", "sampled", "all")


class EvaluationError(ValueError):
    """The evaluation cannot run on these inputs (data, options, checkpoints)."""


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    path: Path

    @classmethod
    def parse(cls, text: str) -> "AdapterSpec":
        """`NAME=DIR`, or a bare DIR named after its folder."""
        name, sep, path = text.partition("=")
        if not sep:
            name, path = Path(text).name, text
        if not name or not path:
            raise EvaluationError(f"--adapters expects NAME=DIR, got {text!r}")
        return cls(name, Path(path))


@dataclass(frozen=True)
class EvalOptions:
    tokens: Literal["pooled", "sampled", "all"] = "pooled"
    per_image: int = 16  # patches per image for tokens=sampled
    batch_size: int = 32
    max_samples: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    feature_layer: int | None = None  # None: the checkpoints' (they must agree), else the model's default
    use_projector: bool | None = None
    image_size: int | None = None  # None: the checkpoints' training size (they must agree), else the model's
    seed: int = 0
    bootstrap: int = 200  # replicates for the intervals; 0: point values only
    max_rows: int = 10_000  # rows per feature set; the pairwise metrics take rows^2 time (memory: rows)
    workers: int = 0

    def __post_init__(self) -> None:
        if self.tokens not in TOKEN_MODES:
            raise EvaluationError(f"tokens must be one of {', '.join(TOKEN_MODES)}, got {self.tokens!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise EvaluationError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise EvaluationError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise EvaluationError(f"bootstrap must be an int >= 0, got {self.bootstrap!r}")
        for name in ("per_image", "batch_size", "max_rows"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise EvaluationError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.max_samples is not None and self.max_samples < 1:
            raise EvaluationError(f"max_samples must be a positive int or None, got {self.max_samples!r}")
        if self.workers < 0:
            raise EvaluationError(f"workers must be >= 0, got {self.workers!r}")
