"""The build's settings (`BuildConfig`, validated once, at construction) and its report.

Field names and defaults are the ``corruptor build`` flags'. How shards are distributed is
the runner's business: ``distributor`` names a runner (corruptor.run.registry) and
``runner_settings()`` hands it workers, retries and the Ray address.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from corruptor.build.worker import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from corruptor.run.runner import RunnerSettings
from corruptor.sources.spec import SourceSpec
from maa_format.errors import describe_validation_error

MODES: tuple[str, ...] = ("resume", "overwrite")
# A build whose failed samples exceed this fraction of its rows fails (the shards are kept):
# a recipe or source that breaks every sample must not end as a quiet, short dataset.
DEFAULT_MAX_FAILED = 0.05


class BuildError(RuntimeError):
    """A build that cannot start (bad input) or did not finish (failed shards)."""


class BuildConfig(BaseModel):
    """A bad field raises `BuildError` naming it (one line), never pydantic's report."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    recipe: Any                          # path, built-in name, mapping or Recipe
    sources: list[SourceSpec]
    out: Path
    target: int
    seed: int = 0
    shard_size: int = 256
    variants: int | None = None          # max variants per image; None: as many as needed
    crops: int = 1                       # crops per variant (needs output.crop: random when > 1)
    distributor: str = "local"           # a runner's name
    workers: int = 1
    retries: int = 2
    ray_address: str | None = None
    mode: str = "resume"
    retry_failed: bool = False
    mask_source: Any = None              # MaskSourceConfig, a mapping, or None for the default
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    progress: bool | str = False         # True: a bar; "log": a plain line every 30 s (stderr not a terminal)
    max_failed: float = DEFAULT_MAX_FAILED   # highest accepted failed/rows fraction (not part of the plan)
    # Set by rebuild: reuse this plan (a corruptor.build.planner.Plan) instead of scanning sources.
    plan_override: Any = Field(default=None, repr=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise BuildError(describe_validation_error(exc, "build settings")) from None

    @model_validator(mode="after")
    def _checked(self) -> "BuildConfig":
        self.check()
        return self

    def runner_settings(self) -> RunnerSettings:
        """What the runner (``distributor``) takes from this config."""
        return RunnerSettings(workers=self.workers, retries=self.retries, address=self.ray_address)

    def check(self) -> None:
        from corruptor.run.registry import runner_names

        if self.distributor not in runner_names():
            raise BuildError(f"distributor '{self.distributor}' not allowed; allowed: {', '.join(runner_names())}")
        if self.mode not in MODES:
            raise BuildError(f"mode '{self.mode}' not allowed; allowed: {', '.join(MODES)}")
        for name in ("target", "shard_size", "workers", "crops"):
            if int(getattr(self, name)) < 1:
                raise BuildError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.variants is not None and self.variants < 1:
            raise BuildError(f"variants must be >= 1, got {self.variants}")
        if self.retries < 0:
            raise BuildError(f"retries must be >= 0, got {self.retries}")
        if not (0.0 <= float(self.max_failed) <= 1.0):
            raise BuildError(f"max_failed must be a fraction in [0, 1], got {self.max_failed}")


@dataclass
class BuildReport:
    out: Path
    shards: int
    shards_run: int
    shards_resumed: int
    rows: int
    ok: int
    failed: int
    skipped: int
    seconds: float
    failed_shards: dict[str, str] = field(default_factory=dict)
    removed_partials: int = 0
    ok_run: int = 0          # pairs made by this run (resumed shards excluded)
    target: int = 0
    damaged_shards: list[str] = field(default_factory=list)   # done markers that lied: redone
    warnings: list[str] = field(default_factory=list)

    @property
    def shortfall(self) -> int:
        """Planned pairs that are not in the dataset (failed or skipped samples are not replaced)."""
        return max(0, self.target - self.ok)

    @property
    def failed_fraction(self) -> float:
        return self.failed / self.rows if self.rows else 0.0

    @property
    def pairs_per_s(self) -> float:
        # This run's work only: shards resumed from disk took no time now.
        return self.ok_run / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        d["pairs_per_s"] = round(self.pairs_per_s, 3)
        d["shortfall"] = self.shortfall
        d["failed_fraction"] = round(self.failed_fraction, 6)
        return d
