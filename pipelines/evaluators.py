"""Evaluators the ablation runs on every variant's checkpoint: a registry keyed by name.

An evaluator takes an `EvalContext` (the base model, one adapter folder per variant, the
held-out shards, options) and returns `EvaluatorResult.rows`: {row name: {metric: value}},
with one row per variant name and `BASE_ROW` for the frozen encoder (other rows, such as
the clean reference, are kept in the per-seed report but not aggregated). Adding one:

    @register_evaluator("my_eval")
    def my_eval(ctx: EvalContext) -> EvaluatorResult: ...

`mechanism` (feature-distribution metrics on held-out pairs) is built in. `probe` is the
downstream check (`maa-eval probe`, pipelines/probe.py): a linear probe and a k-NN fitted on
the base encoder's clean features of `--probe-train`, scored on `--probe-test` (or the rest
of `--probe-train` after `--probe-train-per-class` images per class) clean and corrupted by
`--probe-recipe` (default maa-global) at each of `--probe-severities`. Its rows hold the
test accuracy in percent as `<classifier>_<condition>` (`linear_ref`, `linear_sev3`,
`knn_sev5`, ...), all images; it writes probe.json and probe.md next to the mechanism table.

Both also return their values per test image (`per_image`: paired MSE; probe correctness in
percent) and `mechanism` its bootstrap replicates of MMD^2, KID and energy (`replicates`), from
which the ablation over seeds builds intervals over seeds and test images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from maa_train.data.shards import ShardInfo
from maa_train.eval.evaluate import (BASE_ROW, AdapterSpec, EvalOptions, EvaluationError, evaluate, write_outputs)


@dataclass
class EvalContext:
    model_path: str
    adapters: dict[str, Path]  # variant name -> adapter checkpoint folder
    heldout: list[ShardInfo]
    opts: EvalOptions
    out: Path  # this seed's folder: an evaluator may write its own files here
    data: str = ""
    command: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # evaluator settings, e.g. probe folders


@dataclass
class EvaluatorResult:
    rows: dict[str, dict[str, float | None]]
    raw: Any = None  # the evaluator's own result object (the mechanism table for `mechanism`)
    # Values per test image behind `rows`' means, for intervals over seeds and images
    # (pipelines/ablation_intervals.py): {"images": [key], "rows": {row: {metric: [value or None]}}}.
    per_image: dict | None = None
    # Bootstrap replicates (drawn alike in every run on the same images) of metrics that are not
    # means over images: {row: {metric: [value per replicate]}}.
    replicates: dict | None = None


Evaluator = Callable[[EvalContext], EvaluatorResult]
EVALUATORS: dict[str, Evaluator] = {}


def register_evaluator(name: str) -> Callable[[Evaluator], Evaluator]:
    def deco(fn: Evaluator) -> Evaluator:
        if name in EVALUATORS:
            raise ValueError(f"evaluator '{name}' registered twice")
        EVALUATORS[name] = fn
        return fn

    return deco


def get_evaluators(names: list[str]) -> dict[str, Evaluator]:
    unknown = [n for n in names if n not in EVALUATORS]
    if unknown:
        raise EvaluationError(f"--evaluators: unknown {', '.join(unknown)}; allowed: {', '.join(EVALUATORS)}")
    return {n: EVALUATORS[n] for n in names}


PROBE_RECIPE = "maa-global"
PROBE_SEVERITIES = (3, 5)


def preflight(names: list[str], options: dict) -> None:
    """Fail before any training when a chosen evaluator cannot run."""
    get_evaluators(names)
    if "probe" in names:
        if not options.get("probe_train"):
            raise EvaluationError("the probe evaluator needs --probe-train (a labelled image folder)")
        if not options.get("probe_test") and not options.get("probe_train_per_class"):
            raise EvaluationError("the probe evaluator needs --probe-test (a labelled image folder) or "
                                  "--probe-train-per-class N (the rest of --probe-train tests)")
        from pipelines.probe import recipe_corruption

        try:  # a bad recipe or severity fails now, not after training
            recipe_corruption(options.get("probe_recipe") or PROBE_RECIPE, _probe_options(options, EvalOptions()))
        except ValueError as exc:
            raise EvaluationError(f"the probe evaluator: {exc}") from None


def _probe_options(options: dict, opts: EvalOptions):
    from maa_train.eval.probe import DEFAULT_REPS, ProbeOptions

    return ProbeOptions(severities=tuple(options.get("probe_severities") or PROBE_SEVERITIES),
                        train_per_class=options.get("probe_train_per_class"),
                        test_per_class=options.get("probe_test_per_class"),
                        batch_size=opts.batch_size, device=opts.device, precision=opts.precision,
                        feature_layer=opts.feature_layer, seed=opts.seed,
                        bootstrap=options.get("probe_bootstrap", DEFAULT_REPS))


@register_evaluator("mechanism")
def mechanism(ctx: EvalContext) -> EvaluatorResult:
    """Paired MSE, MMD^2, KID, energy distance and CKA against the clean features (all families)."""
    specs = [AdapterSpec(name, path) for name, path in ctx.adapters.items()]
    result = evaluate(ctx.model_path, ctx.heldout, specs, ctx.opts, data=ctx.data, command=ctx.command)
    write_outputs(result, ctx.out)
    per_image = {"images": result.per_image["images"],
                 "rows": {row: {"paired_mse": errs} for row, errs in result.per_image["paired_mse"].items()}}
    return EvaluatorResult(rows=result.groups["all"]["rows"], raw=result, per_image=per_image,
                           replicates=result.replicates)


@register_evaluator("probe")
def probe(ctx: EvalContext) -> EvaluatorResult:
    """Downstream probe accuracy (%), clean and corrupted per severity, every variant and the base."""
    from maa_train.eval.probe import ALL, BASE, CLASSIFIERS, ProbeError
    from maa_train.eval.probe_report import write_outputs as write_probe
    from pipelines.probe import run_probe

    if not ctx.options.get("probe_train"):
        raise EvaluationError("the probe evaluator needs --probe-train (a labelled image folder)")
    specs = [AdapterSpec(name, Path(path)) for name, path in ctx.adapters.items()]
    try:
        result = run_probe(ctx.model_path, ctx.options["probe_train"], ctx.options.get("probe_test"),
                           ctx.options.get("probe_recipe") or PROBE_RECIPE, specs,
                           _probe_options(ctx.options, ctx.opts), command=ctx.command)
    except ProbeError as exc:
        raise EvaluationError(f"the probe evaluator: {exc}") from None
    write_probe(result, ctx.out)
    rows: dict[str, dict[str, float | None]] = {}
    per_image: dict[str, dict[str, list]] = {}
    for classifier in CLASSIFIERS:
        for model, by_condition in result.results[classifier][ALL]["rows"].items():
            name = BASE_ROW if model == BASE else model
            row = rows.setdefault(name, {})
            for condition, interval in by_condition.items():
                value = interval.get("value")
                row[f"{classifier}_{condition}"] = None if value is None else 100.0 * value
                correct = result.per_image["correct"][classifier][model][condition]
                per_image.setdefault(name, {})[f"{classifier}_{condition}"] = [
                    None if c is None else 100.0 * c for c in correct]
    return EvaluatorResult(rows=rows, raw=result, per_image={"images": result.per_image["images"], "rows": per_image})
