"""The downstream check: does a frozen consumer, calibrated on clean features, still work on
corrupted images, with and without adapters?

A linear probe and a k-NN classifier (maa_train.eval.classifiers) are fitted ONCE on the base
encoder's clean features of a labelled training split and never refitted: they play the
part of the paper's language model, which was trained on the clean encoder. Every row
(the base encoder, each adapter checkpoint) is then scored with them on the test split:

    Ref      the clean test images
    Dis sS   the same images corrupted by the recipe with every op pinned at severity S

Rules, stated in the outputs:
- Features: the CLS token of the encoder's feature layer (the layer the adapters were
  trained on; not projected), or for encoders without a CLS token the mean of its patch
  tokens (``features="auto"``; ``cls`` / ``mean`` force one).
- Pinned severity: the recipe's global stage with every node probability set to 1 (every
  image is corrupted), every op's severity replaced by S (its range in the recipe is
  ignored), ``one_of`` choices drawn with the recipe's weights from
  ``rng_for(seed, image ref, "global")``; so an image gets the same ops at every severity
  and only the strength changes. The local (mask-region) stage is not applied: it needs a
  segmentation of each test image. A recipe with no global stage is refused.
- Geometry: the image is brought to the recipe's output size and crop before corruption
  (as ``corruptor build`` does; a random crop becomes a centre crop), then both the clean
  and the corrupted image go through the encoder's own resize, crop and normalisation.
- Families: each test image counts under the families of the ops drawn for it.
- Intervals: 95% percentile bootstrap over test images (fixed seed); paired differences
  (adapter row minus base, same images, same condition) resample the same way.
- Skips: unreadable images (train or test) and images an op fails on are counted and
  listed; they leave only the conditions they failed in.

maa_train does not import corruptor: the images are read, brought to the corruption geometry
and corrupted by a ``Corruption`` (below) that the caller builds. ``pipelines/probe.py``
builds it from a corruptor recipe (pinned severities, geometry, decoding) and is what
``maa-eval probe`` runs.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from maa_train.eval.bootstrap import DEFAULT_REPS, LEVEL
from maa_train.eval.classifiers import KNNClassifier, LinearProbe
from maa_train.eval.labelled import LabelledImage, LabelledSetError, LabelledSplit, split
from maa_train.eval.probe_scores import (ALL, BASE, CLASSIFIERS, REF, TestRecord, condition_name, per_image_correct,
                                        scores)

FEATURE_MODES = ("auto", "cls", "mean")
CORRUPT_RECIPE, CORRUPT_NATIVE = -1, 0  # corrupt_size: the recipe's output size / the image as decoded


class ProbeError(ValueError):
    """The probe cannot run on these inputs; the message says which and why."""


@dataclass(frozen=True)
class ProbeOptions:
    severities: tuple[int, ...] = (3, 5)
    train_per_class: int | None = None
    test_per_class: int | None = None
    features: Literal["auto", "cls", "mean"] = "auto"
    knn_k: int = 10
    batch_size: int = 32
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    feature_layer: int | None = None
    image_size: int | None = None    # None: the adapters' training size (they must agree), else the model's
    versus: tuple[str, ...] = ()     # adapter rows to take paired differences against, besides the base
    seed: int = 0                    # corruption draws and bootstrap
    bootstrap: int = DEFAULT_REPS
    corrupt_size: int = CORRUPT_RECIPE
    max_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        sev = tuple(self.severities)
        if not sev or any(not isinstance(s, int) or not 1 <= s <= 5 for s in sev) or len(set(sev)) != len(sev):
            raise ProbeError(f"severities must be distinct integers in 1..5, got {list(sev)}")
        if self.features not in FEATURE_MODES:
            raise ProbeError(f"features must be one of {', '.join(FEATURE_MODES)}, got {self.features!r}")
        for name in ("knn_k", "batch_size"):
            if getattr(self, name) < 1:
                raise ProbeError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bootstrap < 0:
            raise ProbeError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if self.corrupt_size < CORRUPT_RECIPE:
            raise ProbeError(f"corrupt_size must be -1 (recipe), 0 (native) or a side in pixels, got {self.corrupt_size}")


# -- what the probe needs from a corruption library ------------------------------------------------
@dataclass(frozen=True)
class Corruption:
    """The test conditions, from outside maa_train (pipelines/probe.py builds one from a recipe).

    read(path)                  uint8 RGB [H, W, 3]; raises on a file that cannot be used
    prepare(image)              the image at the size and crop corruption happens at (clean too)
    corrupt(image, s, key)      (the image at pinned severity s, the families of the ops it got)
    skip_reason(exc)            one line for a read failure, listed in the outputs
    meta                        recorded in probe.json: "recipe" {name, hash}, "severity_rule",
                                "corruption" {size, crop, rule, ...}
    """
    read: Callable[[str], np.ndarray]
    prepare: Callable[[np.ndarray], np.ndarray]
    corrupt: Callable[[np.ndarray, int, str], tuple[np.ndarray, list[str]]]
    skip_reason: Callable[[Exception], str] = lambda exc: f"{type(exc).__name__}: {exc}"
    meta: dict = field(default_factory=dict)


def _skip_reason(corruption: Corruption, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"io: {exc.strerror or exc}"
    return corruption.skip_reason(exc)


# -- images -----------------------------------------------------------------------------------------
def _to_model_input(images: list[np.ndarray], settings) -> torch.Tensor:
    """uint8 [B, 3, S, S] through the encoder's resize and centre crop (as for training pairs)."""
    from maa_train.data.preprocess import pair_to_tensor

    return torch.stack([pair_to_tensor(im, im, settings, None)[0] for im in images])


# -- features ---------------------------------------------------------------------------------------
@dataclass
class _Encoders:
    models: list            # model_rows.Model, the first is the base
    info: Any
    feature_layer: int
    settings: Any
    device: torch.device
    autocast: Any
    precision: str
    pool: str               # cls | mean


def _load_encoders(model_path, adapters, opts: ProbeOptions) -> _Encoders:
    from maa_train.eval.features import autocast_for
    from maa_train.eval.model_rows import build_models, input_settings
    from maa_train.eval.options import EvalOptions, EvaluationError
    from maa_train.train.distributed import pick_device

    names = [a.name for a in adapters]
    if BASE in names:
        raise ProbeError(f"adapter name {BASE!r} is reserved for the encoder without adapters")
    unknown = [v for v in opts.versus if v not in names]
    if unknown:
        raise ProbeError(f"--versus {', '.join(unknown)}: not an --adapters name ({', '.join(names) or 'none given'})")
    try:
        device = pick_device(opts.device)
    except RuntimeError as exc:
        raise ProbeError(str(exc).replace("train.device", "device")) from None
    eval_opts = EvalOptions(batch_size=opts.batch_size, device=opts.device, precision=opts.precision,
                            feature_layer=opts.feature_layer, use_projector=False)
    try:
        models, info, feature_layer, _ = build_models(model_path, list(adapters), eval_opts, device)
    except EvaluationError as exc:
        raise ProbeError(str(exc)) from None
    models[0].name = BASE
    prefix = models[0].student.grid.prefix
    pool = opts.features if opts.features != "auto" else ("cls" if prefix >= 1 else "mean")
    if pool == "cls" and prefix < 1:
        raise ProbeError(f"features=cls but {info.vision_model_type} has no CLS token; use features=mean or auto")
    autocast, precision = autocast_for(device, opts.precision)
    try:
        settings = input_settings(model_path, list(adapters), opts.image_size)
    except EvaluationError as exc:
        raise ProbeError(str(exc)) from None
    return _Encoders(models, info, feature_layer, settings, device, autocast, precision, pool)


def _features(enc: _Encoders, model, pixels_u8: torch.Tensor) -> torch.Tensor:
    from maa_train.data.preprocess import normalise

    px = normalise(pixels_u8.to(enc.device), enc.settings)
    with model.active(), enc.autocast:
        tokens = model.student.tokens(px, adapters=model.name != BASE)
    prefix = model.student.grid.prefix
    pooled = tokens[:, 0] if enc.pool == "cls" else tokens[:, prefix:].mean(dim=1)
    return pooled.float().cpu()


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _train_features(enc: _Encoders, items: list[LabelledImage], corruption: Corruption, opts: ProbeOptions):
    feats, labels, skipped = [], [], []
    for batch in _batches(items, opts.batch_size):
        images, kept = [], []
        for it in batch:
            try:
                images.append(corruption.prepare(corruption.read(it.path)))
                kept.append(it)
            except Exception as exc:  # counted and reported: one bad file must not stop the probe
                skipped.append({"ref": it.ref, "reason": _skip_reason(corruption, exc)})
        if images:
            feats.append(_features(enc, enc.models[0], _to_model_input(images, enc.settings)))
            labels += [it.label for it in kept]
    x = torch.cat(feats) if feats else torch.empty(0)
    return x, torch.tensor(labels, dtype=torch.long), skipped


def _test_predictions(enc: _Encoders, items: list[LabelledImage], corruption: Corruption, probes: dict,
                      opts: ProbeOptions) -> TestRecord:
    rec = TestRecord()
    conditions = [REF] + [condition_name(s) for s in opts.severities]
    for key in [(c, m.name, cond) for c in probes for m in enc.models for cond in conditions]:
        rec.preds[key] = []
    for batch in _batches(items, opts.batch_size):
        per_cond: dict[str, list] = {cond: [] for cond in conditions}
        for it in batch:
            try:
                clean = corruption.prepare(corruption.read(it.path))
            except Exception as exc:  # counted and reported
                rec.skipped.append({"ref": it.ref, "reason": _skip_reason(corruption, exc)})
                continue
            per_cond[REF].append(clean)
            fams: list[str] = []
            for s in opts.severities:
                try:
                    image, families = corruption.corrupt(clean, s, it.ref)
                    per_cond[condition_name(s)].append(image)
                    fams += [f for f in families if f not in fams]
                except Exception as exc:  # an op that fails on one image: that image leaves this condition
                    rec.op_failures.append({"ref": it.ref, "severity": s, "reason": f"{type(exc).__name__}: {exc}"})
                    per_cond[condition_name(s)].append(None)
            rec.refs.append(it.ref)
            rec.labels.append(it.label)
            rec.families.append(fams)
        for cond, images in per_cond.items():
            ok = [i for i, im in enumerate(images) if im is not None]
            if not ok:
                for c in probes:
                    for m in enc.models:
                        rec.preds[(c, m.name, cond)] += [-1] * len(images)
                continue
            pixels = _to_model_input([images[i] for i in ok], enc.settings)
            for m in enc.models:
                x = _features(enc, m, pixels)
                for c, probe in probes.items():
                    full = np.full(len(images), -1, dtype=np.int64)
                    full[ok] = probe.predict(x).numpy()
                    rec.preds[(c, m.name, cond)] += full.tolist()
    return rec

@dataclass
class ProbeResult:
    meta: dict
    results: dict   # classifier -> group -> {"images": n, "rows": {model: {condition: interval}}}
    paired: dict    # classifier -> group -> {model: {condition: interval of (model - base)}}

    paired_vs: dict = field(default_factory=dict)  # row named in --versus -> as `paired`, minus that row
    # {"images": [ref per test image], "correct": classifier -> model -> condition -> [1.0, 0.0 or None
    # (the condition failed for that image)]}: for analyses over several runs (pipelines/ablation_seeds.py);
    # not written to probe.json.
    per_image: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"meta": self.meta, "results": self.results, "paired": self.paired, "paired_vs": self.paired_vs}


def _feature_text(pool: str, layer: int, info) -> str:
    where = f"hidden state {layer} of the {info.vision_model_type} tower (the adapters' feature layer), not projected"
    if pool == "cls":
        return f"CLS token of {where}"
    return f"mean of the patch tokens of {where}"


def run_probe(model_path: str | Path, train: str | Path, test: str | Path | None, corruption: Corruption,
              adapters=(), opts: ProbeOptions = ProbeOptions(), *, command: str | None = None) -> ProbeResult:
    """Fit the probes on the base encoder's clean training features; score every row on the
    clean test images and on ``corruption`` at each of ``opts.severities``."""
    start = time.perf_counter()
    try:
        the_split: LabelledSplit = split(train, test, opts.train_per_class, opts.test_per_class)
    except LabelledSetError as exc:
        raise ProbeError(str(exc)) from None
    enc = _load_encoders(model_path, adapters, opts)
    with torch.inference_mode():
        fitted = _fit_probes(enc, the_split, corruption, opts)
        test_start = time.perf_counter()
        rec = _test_predictions(enc, the_split.test, corruption, fitted.probes, opts)
        fitted.seconds["test"] = round(time.perf_counter() - test_start, 2)
    if not rec.refs:
        raise ProbeError(f"no readable test image ({len(rec.skipped)} skipped, e.g. {rec.skipped[0]})")
    models = [m.name for m in enc.models]
    conditions = [REF] + [condition_name(s) for s in opts.severities]
    results, paired, paired_vs = scores(rec, models, conditions, opts.versus, opts.bootstrap, opts.seed)
    fitted.seconds["total"] = round(time.perf_counter() - start, 2)
    meta = _meta(model_path, enc, the_split, fitted, rec, corruption, conditions, opts, command)
    return ProbeResult(meta, results, paired, paired_vs,
                       per_image={"images": list(rec.refs), "correct": per_image_correct(rec, models, conditions)})


@dataclass
class _Fitted:
    probes: dict
    dim: int
    n_train: int
    train_counts: dict
    train_skipped: list
    train_accuracy: dict
    seconds: dict


def _fit_probes(enc: _Encoders, the_split: LabelledSplit, corruption: Corruption, opts: ProbeOptions) -> _Fitted:
    """The linear probe and the k-NN on the base encoder's clean training features."""
    classes = len(the_split.classes)
    x, y, train_skipped = _train_features(enc, the_split.train, corruption, opts)
    have = torch.bincount(y, minlength=classes) if len(y) else torch.zeros(classes, dtype=torch.long)
    missing = [the_split.classes[i] for i in range(classes) if have[i] == 0]
    if missing:
        raise ProbeError(f"no readable training image for class(es) {', '.join(missing)} "
                         f"({len(train_skipped)} training image(s) skipped, e.g. "
                         f"{train_skipped[0] if train_skipped else '-'})")
    fit_start = time.perf_counter()
    probes = {"linear": LinearProbe(classes).fit(x, y), "knn": KNNClassifier(classes, opts.knn_k).fit(x, y)}
    fit_seconds = time.perf_counter() - fit_start
    train_acc = {c: float((p.predict(x) == y).double().mean()) for c, p in probes.items()}
    return _Fitted(probes, int(x.shape[1]), len(y), {c: int(have[i]) for i, c in enumerate(the_split.classes)},
                   train_skipped, train_acc, {"fit": round(fit_seconds, 2)})


def _meta(model_path, enc: _Encoders, the_split: LabelledSplit, fitted: _Fitted, rec: TestRecord,
          corruption: Corruption, conditions: list[str], opts: ProbeOptions, command: str | None) -> dict:
    from maa_train.eval.features import machine_text

    test_counts = {c: 0 for c in the_split.classes}
    for label in rec.labels:
        test_counts[the_split.classes[label]] += 1
    return {
        "model": str(model_path), "encoder": enc.info.to_dict(),
        "features": {"pool": enc.pool, "feature_layer": enc.feature_layer,
                     "text": _feature_text(enc.pool, enc.feature_layer, enc.info), "dim": fitted.dim},
        "train": the_split.train_root, "test": the_split.test_root, "split": the_split.rule,
        "classes": the_split.classes, "train_per_class": fitted.train_counts, "test_per_class": test_counts,
        "n_train": fitted.n_train, "n_test": len(rec.refs),
        "skipped": {"train": fitted.train_skipped, "test": rec.skipped, "op_failures": rec.op_failures},
        "split_notes": the_split.notes,
        "recipe": corruption.meta.get("recipe"),
        "severities": list(opts.severities), "conditions": conditions,
        "severity_rule": corruption.meta.get("severity_rule"),
        "corruption": {"seed": opts.seed, "key": "the image's ref (class/relative path)",
                       **(corruption.meta.get("corruption") or {})},
        "probes": {c: p.describe() for c, p in fitted.probes.items()}, "train_accuracy": fitted.train_accuracy,
        "bootstrap": {"reps": opts.bootstrap, "level": LEVEL, "seed": opts.seed, "over": "test images",
                      "method": "percentile"},
        "device": str(enc.device), "precision": enc.precision, "input_size": enc.settings.size,
        "adapters": {m.name: m.record for m in enc.models[1:]}, "options": asdict(opts),
        "seconds": fitted.seconds,
        "machine": machine_text(enc.device), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


__all__ = ["ALL", "BASE", "CLASSIFIERS", "CORRUPT_NATIVE", "CORRUPT_RECIPE", "DEFAULT_REPS", "FEATURE_MODES", "REF",
           "Corruption", "ProbeError", "ProbeOptions", "ProbeResult", "condition_name", "run_probe"]
