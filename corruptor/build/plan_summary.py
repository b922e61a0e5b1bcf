"""What a plan asks of each source, as a table: images, variants, crops, pairs.

Shown by ``corruptor build --dry-run`` (nothing is written), and used to warn when a target
is far beyond what the sources hold: 75,000 pairs from 200 images are hundreds of degraded
versions of each image, which a trainer sees as near-duplicates.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from corruptor.build.planner import Plan

# More rounds per image than this (variants x crops) gets a warning; the paper's data is
# ~75K pairs from tens of thousands of images, a handful of versions each.
WARN_ROUNDS_PER_IMAGE = 16


@dataclass(frozen=True)
class SourceLine:
    source: str
    images: int          # items the source holds
    used: int            # distinct items the plan uses
    variants: int        # most variants of one image
    crops: int           # most crops of one variant
    pairs: int           # planned samples

    @property
    def rounds(self) -> float:
        return self.pairs / self.used if self.used else 0.0


def summarize(the_plan: Plan) -> list[SourceLine]:
    per: dict[str, dict] = {}
    for src in the_plan.sources:
        per[src["name"]] = {"images": int(src.get("items", 0)), "used": set(), "variants": 0, "crops": 0, "pairs": 0}
    for s in the_plan.samples:
        item = the_plan.items[s.item]
        line = per[item.source]
        line["used"].add(s.item)
        line["variants"] = max(line["variants"], s.variant + (0 if item.paired else 1))
        line["crops"] = max(line["crops"], s.crop + 1)
        line["pairs"] += 1
    return [SourceLine(name, v["images"], len(v["used"]), v["variants"], v["crops"], v["pairs"])
            for name, v in sorted(per.items())]


def plan_warnings(lines: list[SourceLine], limit: int = WARN_ROUNDS_PER_IMAGE) -> list[str]:
    out = []
    for line in lines:
        if line.used and line.pairs > limit * line.used:
            out.append(f"source '{line.source}' gives {line.pairs} pairs from {line.used} image(s): "
                       f"{line.variants} variant(s) x {line.crops} crop(s) of each, more than {limit} per image; "
                       "such near-duplicates add little; add images or lower --target (or cap with --variants)")
    return out


def format_table(lines: list[SourceLine]) -> str:
    rows = [("source", "images", "used", "variants", "crops", "pairs")]
    rows += [(ln.source, str(ln.images), str(ln.used), str(ln.variants), str(ln.crops), str(ln.pairs))
             for ln in lines]
    rows.append(("total", str(sum(ln.images for ln in lines)), str(sum(ln.used for ln in lines)), "", "",
                 str(sum(ln.pairs for ln in lines))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def to_dicts(lines: list[SourceLine]) -> list[dict]:
    return [asdict(ln) for ln in lines]
