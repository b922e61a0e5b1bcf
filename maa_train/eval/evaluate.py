"""The mechanism table: where do corrupted and corrected features sit relative to the clean ones?

One pass over held-out pairs extracts, per batch and on the same images:

    clean       the frozen encoder on the clean image (the reference set)
    base        the frozen encoder on the degraded image          -> row "base (corrupted)"
    <name>      each adapter checkpoint on the degraded image     -> one row per checkpoint

Token rows per image (`tokens`): mean-pooled by default, a fixed random sample of patches,
or all patches. The images are split once into halves A and B (fixed seed, over the images
sorted by key): the two-sample metrics (MMD^2, KID, energy distance) compare a row's
features of A with the clean features of B, so the samples are independent as these
estimators assume (maa_train/eval/split_metrics.py); the "clean reference" row compares the clean
features of A with the same clean features of B and reads ~0. The paired metrics, paired
MSE on all patch tokens and linear CKA, compare each image with itself over all images (not
defined for the reference). Every value carries a bootstrap interval (images resampled; for
the split metrics each replicate also draws a new split).

Rows are computed for all samples ("all") and per corruption family read from each sample's
provenance; a sample with several ops counts under each of its families.

Hook-based students (maa, mse_only, bottleneck) share one frozen backbone and take turns
hooking into it; LoRA and full-finetune checkpoints change the backbone itself and get their
own copy.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import zlib
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Mapping

import torch
from torch import nn

from maa_train.students.adapter import AdapterConfig
from maa_train.students.baselines import make_student
from maa_train.students.checkpoint import CheckpointMismatchError, load_adapters, read_config
from maa_train.train.distributed import pick_device
from maa_train.students.inject import AdaptedEncoder
from maa_train.encoders.load import ModelInfo, load_vision_model
from maa_train.data.loader import ValStream, make_loader
from maa_train.data.preprocess import ImageSizeError, ProcessorSettings, normalise_pairs
from maa_train.data.shards import ShardInfo, op_families, resolve_shards, split_holdout
from maa_train.eval.split_metrics import MIN_HALF_IMAGES, SplitSettings, group_rows

log = logging.getLogger(__name__)

BASE_ROW = "base (corrupted)"
CLEAN_ROW = "clean reference"
ALL = "all"
METRICS = ("paired_mse", "mmd2", "kid", "energy", "cka")
METRIC_LABELS = {"paired_mse": "paired MSE", "mmd2": "MMD^2", "kid": "KID", "energy": "energy", "cka": "CKA"}
LOWER_IS_BETTER = {"paired_mse": True, "mmd2": True, "kid": True, "energy": True, "cka": False}
PAIRED_METRICS = ("paired_mse", "cka")  # need the same images on both sides
# Images each half of the split needs (the unbiased sums pair distinct images).
MIN_ROWS = {"paired_mse": 1, "mmd2": MIN_HALF_IMAGES, "kid": MIN_HALF_IMAGES, "energy": MIN_HALF_IMAGES, "cka": 2}
SHARED_BACKBONE_KINDS = ("maa", "mse_only", "bottleneck")
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


def heldout_shards(data: str | Path, val_fraction: float = 0.05, all_shards: bool = False) -> list[ShardInfo]:
    """The shards the trainer held out of `data` at this `val_fraction` (the same hash-based
    choice), or every shard with `all_shards` (a separate test set)."""
    try:
        shards = resolve_shards(str(data))
    except FileNotFoundError as exc:
        raise EvaluationError(str(exc)) from None
    if all_shards:
        return shards
    if not 0.0 < val_fraction < 1.0:
        raise EvaluationError(f"val_fraction must be in (0, 1), got {val_fraction}")
    try:
        _, val = split_holdout(shards, val_fraction)
    except ValueError as exc:
        raise EvaluationError(f"{data}: no held-out shards: {exc}. Evaluate a separate test set with "
                              "all_shards (--all-shards)") from None
    return val


def families_of(meta: dict | None, families: Mapping[str, str]) -> list[str]:
    """Corruption families of a sample's provenance (global ops and ops inside local regions),
    looked up in the dataset's op -> family table (``op_families`` of dataset.json)."""
    if not meta:
        return []
    ops = list(meta.get("ops") or [])
    ops += [op for region in meta.get("regions") or [] for op in region.get("ops") or []]
    found = []
    for op in ops:
        name = op.get("op") if isinstance(op, dict) else None
        family = families.get(name, "unknown op")  # an op the dataset's table does not name
        if family not in found:
            found.append(family)
    return found


# -- models ------------------------------------------------------------------------------------
class _PassThrough(nn.Module):
    def forward(self, hidden: torch.Tensor, grid) -> torch.Tensor:
        return hidden


@dataclass
class _Model:
    name: str
    student: AdaptedEncoder
    shares_backbone: bool
    record: dict = field(default_factory=dict)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Only one student may hook into a shared backbone at a time."""
        if not self.shares_backbone:
            yield
            return
        self.student.install_hooks()
        try:
            yield
        finally:
            self.student.remove_hooks()


def _agreed(configs: dict[str, dict], key: str, given):
    if given is not None:
        return given
    values = {name: cfg.get(key) for name, cfg in configs.items() if cfg.get(key) is not None}
    if len(set(values.values())) > 1:
        raise EvaluationError(f"the adapter checkpoints disagree on {key}: {values}; choose one explicitly "
                              f"(--{key.replace('_', '-')})")
    return next(iter(values.values()), None)


def _check_encoder(spec: AdapterSpec, saved: dict, info: ModelInfo, model_path) -> None:
    wants = {"width": saved.get("hidden_size"), "blocks": saved.get("num_layers")}
    has = {"width": info.hidden_size, "blocks": info.num_layers}
    if any(v is not None and v != has[k] for k, v in wants.items()):
        raise CheckpointMismatchError(
            f"adapters {spec.name!r} ({spec.path}) were made for an encoder of width {wants['width']} with "
            f"{wants['blocks']} blocks ({saved.get('base_model') or 'unknown model'}); {model_path} has width "
            f"{has['width']} with {has['blocks']} blocks")


def input_settings(model_path, specs: list[AdapterSpec], image_size: int | None = None) -> ProcessorSettings:
    """The encoder's processor settings at the input size the adapters were trained at.

    ``image_size`` given: that size. Else the size the checkpoints record (``data.image_size``
    of their training run; they must agree), else the model folder's own.
    """
    configs = {}
    for spec in specs:
        try:
            configs[spec.name] = read_config(spec.path)
        except FileNotFoundError as exc:
            raise EvaluationError(f"adapters {spec.name!r}: {exc}") from None
    size = _agreed(configs, "image_size", image_size)
    try:
        return ProcessorSettings.from_model_dir(model_path, size)
    except ImageSizeError as exc:
        raise EvaluationError(f"--image-size: {exc}") from None


def _build_models(model_path, specs: list[AdapterSpec], opts: EvalOptions, device: torch.device):
    names = [s.name for s in specs]
    reserved = {BASE_ROW, CLEAN_ROW}
    if len(set(names)) != len(names) or reserved & set(names):
        raise EvaluationError(f"adapter names must be unique and not {sorted(reserved)}, got {names}")
    configs = {}
    for spec in specs:
        try:
            configs[spec.name] = read_config(spec.path)
        except FileNotFoundError as exc:
            raise EvaluationError(f"adapters {spec.name!r}: {exc}") from None
    feature_layer = _agreed(configs, "feature_layer", opts.feature_layer)
    use_projector = _agreed(configs, "use_projector", opts.use_projector)  # None: the model's default

    def backbone():
        model, info = load_vision_model(model_path)
        return model.to(device), info

    shared, info = backbone()
    view = {"feature_layer": feature_layer, "use_projector": use_projector, "info": info}
    base = AdaptedEncoder(shared, adapter_factory=lambda dim: _PassThrough(), **view).eval()
    base.remove_hooks()
    models = [_Model(BASE_ROW, base, True)]
    for spec in specs:
        saved = configs[spec.name]
        _check_encoder(spec, saved, info, model_path)
        kind = saved.get("kind", "maa")
        cfg = AdapterConfig.from_dict(saved.get("adapter") or {})
        kwargs = dict(view)
        if kind == "lora":
            lora = saved.get("lora") or {}
            kwargs |= {"rank": lora.get("rank", 16), "lora_alpha": lora.get("lora_alpha", 32),
                       "lora_dropout": lora.get("lora_dropout", 0.0), "lora_targets": lora.get("targets")}
        shares = kind in SHARED_BACKBONE_KINDS
        student = make_student(kind, shared if shares else backbone()[0], cfg, **kwargs).to(device)
        load_adapters(spec.path, student)
        student.eval()
        if shares:
            student.remove_hooks()
        record = {"path": str(spec.path), "kind": kind, "adapter": cfg.to_dict(),
                  **{k: saved[k] for k in ("step", "val_l2", "base_model") if k in saved}}
        models.append(_Model(spec.name, student, shares, record))
    return models, info, base.feature_layer, base.use_projector


# -- feature extraction -------------------------------------------------------------------------
def _autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16), "bf16"
    return nullcontext(), "fp32"


def _select(features: torch.Tensor, mode: str, positions: torch.Tensor | None) -> torch.Tensor:
    """[B, P, D] -> [B, r, D] token rows per image."""
    if mode == "pooled":
        return features.mean(dim=1, keepdim=True)
    if mode == "sampled":
        idx = positions.to(features.device)
        return torch.gather(features, 1, idx[..., None].expand(*idx.shape, features.shape[-1]))
    return features


@dataclass
class _Features:
    clean: torch.Tensor  # [N, r, D] token rows of the clean images
    rows: dict[str, torch.Tensor]  # model -> [N, r, D] rows on degraded images
    sq_err: dict[str, torch.Tensor]  # model -> [N] mean squared error over all patch tokens, vs clean
    metas: list[dict | None]
    keys: list[str]


def _positions(keys: list[str], patches: int, k: int, seed: int) -> torch.Tensor:
    """Sampled patch positions per image, from its key: the same whatever the read order."""
    rows = []
    for key in keys:
        g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode()))
        rows.append(torch.randperm(patches, generator=g)[:k])
    return torch.stack(rows)


@torch.no_grad()
def extract(models: list[_Model], shards: list[ShardInfo], settings: ProcessorSettings, opts: EvalOptions,
            device: torch.device) -> _Features:
    stream = ValStream(shards, settings, batch_size=opts.batch_size, with_meta=True)
    loader = make_loader(stream, min(opts.workers, len(shards)), pin_memory=device.type == "cuda")
    autocast, _ = _autocast(device, opts.precision)
    clean_rows, metas, keys = [], [], []
    rows = {m.name: [] for m in models}
    errs = {m.name: [] for m in models}
    seen = 0
    for batch in loader:
        take = batch["pairs"].shape[0]
        if opts.max_samples is not None:
            take = min(take, opts.max_samples - seen)
        clean_px, degraded_px = normalise_pairs(batch["pairs"][:take].to(device, non_blocking=True), settings)
        with models[0].active(), autocast:
            clean = models[0].student.features(clean_px, adapters=False).float()
        positions = None
        if opts.tokens == "sampled":
            k = min(opts.per_image, clean.shape[1])
            positions = _positions(batch["keys"][:take], clean.shape[1], k, opts.seed)
        clean_rows.append(_select(clean, opts.tokens, positions))
        rows_per_image = clean_rows[-1].shape[1]
        if (seen + take) * rows_per_image > opts.max_rows:  # before the feature sets grow any further
            raise EvaluationError(
                f"tokens={opts.tokens} gives {(seen + take) * rows_per_image} rows per feature set (or more), above "
                f"max_rows={opts.max_rows}: MMD^2 and energy distance take rows^2 time (and the feature sets "
                "rows x width memory on the device); use tokens=pooled or sampled with a smaller per_image, "
                "fewer samples, or raise max_rows")
        for m in models:
            with m.active(), autocast:
                feats = m.student.features(degraded_px, adapters=m.name != BASE_ROW).float()
            errs[m.name].append((feats.double() - clean.double()).pow(2).mean(dim=(1, 2)))
            rows[m.name].append(_select(feats, opts.tokens, positions))
        metas.extend(batch["meta"][:take])
        keys.extend(batch["keys"][:take])
        seen += take
        if opts.max_samples is not None and seen >= opts.max_samples:
            break
    if seen == 0:
        raise EvaluationError(f"the held-out shards gave no readable sample ({len(shards)} shard(s): "
                              f"{[s.url for s in shards][:3]})")
    return _Features(torch.cat(clean_rows), {k: torch.cat(v) for k, v in rows.items()},
                     {k: torch.cat(v) for k, v in errs.items()}, metas, keys)


# -- metrics ------------------------------------------------------------------------------------
def min_images(rows_per_image: int) -> int:
    """Images a group needs: two halves of MIN_HALF_IMAGES each (whatever the rows per image)."""
    return 2 * MIN_HALF_IMAGES


def group_table(feats: _Features, idx: torch.Tensor, opts: EvalOptions) -> dict[str, dict]:
    """Rows of the mechanism table for the samples `idx` (see maa_train/eval/split_metrics.py)."""
    idx_dev = idx.to(feats.clean.device)
    return group_rows(feats.clean[idx_dev], {name: rows[idx_dev] for name, rows in feats.rows.items()},
                      {name: err[idx_dev] for name, err in feats.sq_err.items()},
                      [feats.keys[i] for i in idx.tolist()], CLEAN_ROW,
                      SplitSettings(seed=opts.seed, reps=opts.bootstrap))


def _too_small(n: int, rows_per_image: int, what: str) -> str | None:
    need = min_images(rows_per_image)
    if n >= need:
        return None
    return (f"{what} has {n} image(s), fewer than {need}: MMD^2, KID and energy distance compare one half of the "
            f"images with the other, and each half needs at least {MIN_HALF_IMAGES} images")


@dataclass
class MechanismResult:
    meta: dict
    groups: dict[str, dict]  # family -> {"samples": n, "rows": {row: {metric: value}}, "skipped": reason}

    def to_dict(self) -> dict:
        return {"meta": self.meta, "groups": self.groups}

    def row_names(self) -> list[str]:
        return list(self.groups[ALL]["rows"])


def evaluate(model_path: str | Path, shards: list[ShardInfo], adapters: list[AdapterSpec] = (),
             opts: EvalOptions = EvalOptions(), *, data: str | None = None, command: str | None = None
             ) -> MechanismResult:
    """Build the mechanism table of the base encoder and each adapter checkpoint on `shards`."""
    if not shards:
        raise EvaluationError("no held-out shards to evaluate")
    try:
        device = pick_device(opts.device)
    except RuntimeError as exc:
        raise EvaluationError(str(exc).replace("train.device", "device")) from None
    models, info, feature_layer, use_projector = _build_models(model_path, list(adapters), opts, device)
    settings = input_settings(model_path, list(adapters), opts.image_size)
    feats = extract(models, shards, settings, opts, device)
    n, rows_per_image = feats.clean.shape[0], feats.clean.shape[1]
    reason = _too_small(n, rows_per_image, "the held-out set")
    if reason:
        raise EvaluationError(reason + "; evaluate more samples (--max-samples, more held-out shards)")

    table = op_families(shards)
    families: dict[str, list[int]] = {}
    missing = 0
    for i, meta in enumerate(feats.metas):
        fams = families_of(meta, table)
        if not fams:
            missing += 1
        for fam in fams:
            families.setdefault(fam, []).append(i)
    groups = {ALL: {"samples": n, "rows": group_table(feats, torch.arange(n), opts), "skipped": None}}
    for fam in sorted(families):
        idx = families[fam]
        reason = _too_small(len(idx), rows_per_image, f"family {fam!r}")
        groups[fam] = {"samples": len(idx), "skipped": reason,
                       "rows": None if reason else group_table(feats, torch.tensor(idx), opts)}

    _, precision = _autocast(device, opts.precision)
    meta = {
        "model": str(model_path), "encoder": info.to_dict(), "data": data, "shards": [s.url for s in shards],
        "samples": n, "samples_without_ops": missing, "tokens": opts.tokens, "input_size": settings.size,
        "rows_per_image": rows_per_image, "per_image": opts.per_image if opts.tokens == "sampled" else None,
        "feature_layer": feature_layer, "use_projector": use_projector, "device": str(device),
        "precision": precision, "seed": opts.seed, "bootstrap": opts.bootstrap,
        "split": "halves A/B of the images sorted by key, permuted with the seed; model rows: features of A vs "
                 "clean features of B; clean reference: clean A vs clean B; paired MSE and CKA over all images",
        "adapters": {m.name: m.record for m in models[1:]}, "options": asdict(opts),
        "machine": _machine(device), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    return MechanismResult(meta, groups)


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}"


# -- outputs ------------------------------------------------------------------------------------
def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def _fmt_ci(value, ci) -> str:
    return _fmt(value) + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if value is not None and ci else "")


TOKEN_TEXT = {
    "pooled": "mean over patch tokens, one row per image",
    "sampled": "{k} random patch tokens per image (the same positions for every model)",
    "all": "every patch token",
}


def table_markdown(rows: dict[str, dict]) -> list[str]:
    arrows = {m: "↓" if LOWER_IS_BETTER[m] else "↑" for m in METRICS}
    head = "| model | " + " | ".join(f"{METRIC_LABELS[m]} {arrows[m]}" for m in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt_ci(row.get(m), row.get(f"{m}_ci")) for m in METRICS) + " |")
    return lines


def to_markdown(result: MechanismResult) -> str:
    m = result.meta
    enc = m["encoder"]
    tokens = TOKEN_TEXT[m["tokens"]].format(k=m["per_image"])
    lines = [
        "# Mechanism table", "",
        f"- encoder: `{m['model']}` ({enc['vision_model_type']}, width {enc['hidden_size']}, "
        f"{enc['num_layers']} blocks), "
        f"feature layer {m['feature_layer']}, {'through the projector' if m['use_projector'] else 'patch tokens'}",
        f"- data: {m['samples']} held-out pairs from {len(m['shards'])} shard(s)"
        + (f" of `{m['data']}`" if m["data"] else "")
        + (f"; {m['samples_without_ops']} without corruption ops in their provenance (counted in 'all' only)"
           if m["samples_without_ops"] else ""),
        f"- tokens: **{m['tokens']}** ({tokens}) for MMD^2 (RBF, median bandwidth), KID (cubic kernel), "
        f"energy distance and linear CKA; paired MSE uses all patch tokens",
        f"- intervals: 95% percentile bootstrap, {m['bootstrap']} replicates (images resampled; the split "
        "metrics also draw a new split per replicate)",
        f"- {m['device']}, {m['precision']}, seed {m['seed']}; {m['machine']}; {m['date']}",
    ]
    if m.get("command"):
        lines.append(f"- command: `{m['command']}`")
    for name, rec in m["adapters"].items():
        extra = ", ".join(f"{k} {_fmt(rec[k]) if isinstance(rec[k], float) else rec[k]}" for k in ("step", "val_l2")
                          if k in rec)
        lines.append(f"- `{name}`: {rec['kind']} adapters from `{rec['path']}`" + (f" ({extra})" if extra else ""))
    lines += ["", "The images are split once into random halves A and B (fixed seed). MMD^2, KID and energy distance "
              "compare each row's features of the degraded images of A with the clean features of B, so the two "
              f"samples hold different images, as these unbiased estimators assume; '{CLEAN_ROW}' compares the "
              "clean features of A with the same clean features of B, i.e. what they read for one distribution "
              "(about 0). Paired MSE and CKA compare every image's degraded and clean features (all images); they "
              "are not defined for the reference."]
    skipped = {fam: g for fam, g in result.groups.items() if g["skipped"]}
    for fam, group in result.groups.items():
        if fam not in skipped:
            lines += ["", f"## {fam} ({group['samples']} samples)", ""] + table_markdown(group["rows"])
    if skipped:
        need = min_images(m["rows_per_image"])
        listed = ", ".join(f"{fam} ({g['samples']})" for fam, g in skipped.items())
        lines += ["", f"Families with fewer than {need} samples, not tabled: {listed}. "
                  f"The split metrics need at least {MIN_HALF_IMAGES} images in each half."]
    return "\n".join(lines) + "\n"


def plot(result: MechanismResult, path: str | Path) -> Path:
    """One panel per metric; bars grouped by corruption family, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    groups = [(fam, g) for fam, g in result.groups.items() if g["rows"]]
    names = result.row_names()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS) + 0.4 * len(groups), 4.0), squeeze=False)
    width = 0.8 / len(names)
    for ax, metric in zip(axes[0], METRICS):
        for j, name in enumerate(names):
            xs, ys, errs = [], [], [[], []]
            for i, (_, g) in enumerate(groups):
                value = g["rows"][name].get(metric)
                if value is not None:
                    xs.append(i + (j - (len(names) - 1) / 2) * width)
                    ys.append(value)
                    ci = g["rows"][name].get(f"{metric}_ci") or [value, value]
                    errs[0].append(max(0.0, value - ci[0]))
                    errs[1].append(max(0.0, ci[1] - value))
            ax.bar(xs, ys, width, label=name, color=f"C{j}", yerr=errs, error_kw={"elinewidth": 0.6, "capsize": 1})
        ax.set_xticks(range(len(groups)), [fam for fam, _ in groups], rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{METRIC_LABELS[metric]} ({'lower' if LOWER_IS_BETTER[metric] else 'higher'} is closer)",
                     fontsize=9)
        ax.axhline(0, color="black", linewidth=0.5)
    # Explicit handles: a model may have no bar in a panel (the clean reference in paired metrics).
    handles = [Patch(color=f"C{j}", label=name) for j, name in enumerate(names)]
    fig.legend(handles=handles, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.suptitle(f"mechanism metrics, tokens={result.meta['tokens']}, {result.meta['samples']} pairs", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(result: MechanismResult, out_dir: str | Path, stem: str = "mechanism") -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2))
    paths["md"].write_text(to_markdown(result))
    plot(result, paths["png"])
    return paths


__all__ = [
    "ALL", "BASE_ROW", "CLEAN_ROW", "METRICS", "MIN_ROWS", "AdapterSpec", "EvalOptions", "EvaluationError",
    "MechanismResult", "evaluate", "families_of", "heldout_shards", "min_images", "plot", "to_markdown",
    "write_outputs",
]
