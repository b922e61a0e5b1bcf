"""Evaluators the ablation runs on every variant's checkpoint: a registry keyed by name.

An evaluator takes an `EvalContext` (the base model, one adapter folder per variant, the
held-out shards, options) and returns `EvaluatorResult.rows`: {row name: {metric: value}},
with one row per variant name and `BASE_ROW` for the frozen encoder (other rows, such as
the clean reference, are kept in the per-seed report but not aggregated). Adding one:

    @register_evaluator("my_eval")
    def my_eval(ctx: EvalContext) -> EvaluatorResult: ...

`mechanism` (feature-distribution metrics on held-out pairs) is built in. `probe` is the
slot for the downstream linear-probe evaluation (`maa-eval probe`, built separately): it
calls `maa_train.eval.probe.run_probe(model_path, adapters, train, test, recipe)` once that
module exists, with the folders from `--probe-train/--probe-test/--probe-recipe`.
"""
from __future__ import annotations

import importlib
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


def preflight(names: list[str], options: dict) -> None:
    """Fail before any training when a chosen evaluator cannot run."""
    get_evaluators(names)
    if "probe" in names:
        try:
            importlib.import_module(PROBE_MODULE)
        except ImportError:
            raise EvaluationError(f"the probe evaluator needs {PROBE_MODULE}.run_probe (maa-eval probe), which this "
                                  "installation does not have yet; use --evaluators mechanism") from None
        for k in ("train", "test"):
            if not options.get(f"probe_{k}"):
                raise EvaluationError(f"the probe evaluator needs --probe-{k} (a labelled image folder)")


PROBE_MODULE = "maa_train.eval.probe"


@register_evaluator("mechanism")
def mechanism(ctx: EvalContext) -> EvaluatorResult:
    """Paired MSE, MMD^2, KID, energy distance and CKA against the clean features (all families)."""
    specs = [AdapterSpec(name, path) for name, path in ctx.adapters.items()]
    result = evaluate(ctx.model_path, ctx.heldout, specs, ctx.opts, data=ctx.data, command=ctx.command)
    write_outputs(result, ctx.out)
    return EvaluatorResult(rows=result.groups["all"]["rows"], raw=result)


@register_evaluator("probe")
def probe(ctx: EvalContext) -> EvaluatorResult:
    """Slot for the downstream probe: linear probe accuracy (clean, corrupted per severity)."""
    try:
        module = importlib.import_module(PROBE_MODULE)
    except ImportError:
        raise EvaluationError(f"the probe evaluator needs {PROBE_MODULE}.run_probe (maa-eval probe), which this "
                              "installation does not have yet; use --evaluators mechanism") from None
    missing = [k for k in ("train", "test") if not ctx.options.get(f"probe_{k}")]
    if missing:
        raise EvaluationError(f"the probe evaluator needs --probe-{missing[0]} (a labelled image folder)")
    rows = module.run_probe(ctx.model_path, ctx.adapters, ctx.options["probe_train"], ctx.options["probe_test"],
                            ctx.options.get("probe_recipe"))
    # Contract: {BASE_ROW or variant name: {metric: value}}; the base model's row may come as "base".
    if "base" in rows and BASE_ROW not in rows:
        rows = {BASE_ROW if k == "base" else k: v for k, v in rows.items()}
    return EvaluatorResult(rows=rows)
