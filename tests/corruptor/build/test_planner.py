import pytest

from corruptor.build.planner import Plan, PlanError, plan, split_target
from maa_format.keys import sample_key
from corruptor.sources.sources import SourceItem, SourceSpec, ScannedSource, Locator


def scanned(name, n, weight=1.0, paired_versions=None):
    spec = SourceSpec(name, f"/data/{name}", weight=weight)
    if paired_versions:
        items = [SourceItem(name, f"ref/{i}.png", Locator("file", (f"/r/{i}.png",)), dis_ref=f"dis/{i}_v{v}.png",
                            dis_locator=Locator("file", (f"/d/{i}_v{v}.png",)), version=v)
                 for i in range(n) for v in paired_versions]
    else:
        items = [SourceItem(name, f"x/{i:04d}.jpg", Locator("file", (f"/data/{name}/x/{i:04d}.jpg",)))
                 for i in range(n)]
    return ScannedSource(spec, items, "folder")


def test_split_target_is_proportional_and_exact():
    q = split_target(10, {"a": 1.0, "b": 1.0, "c": 2.0})
    assert sum(q.values()) == 10
    assert q["c"] == 5 and sorted([q["a"], q["b"]]) == [2, 3]
    assert split_target(7, {"x": 3.0}) == {"x": 7}


def test_plan_is_deterministic_and_independent_of_source_order():
    srcs = [scanned("web", 5, 1.0), scanned("flickr", 3, 2.0)]
    a = plan(srcs, 30, seed=1, shard_size=7)
    b = plan(list(reversed(srcs)), 30, seed=1, shard_size=7)
    assert a.to_json() == b.to_json()
    assert plan(srcs, 30, seed=2, shard_size=7).to_json() != a.to_json()


def test_plan_counts_keys_and_shards():
    srcs = [scanned("web", 5, 1.0), scanned("flickr", 3, 2.0)]
    p = plan(srcs, 30, seed=0, shard_size=7)
    keys = [s.key for s in p.samples]
    assert len(keys) == 30 == len(set(keys))
    assert all("." not in k and "/" not in k for k in keys)
    assert [len(s) for s in p.shards] == [7, 7, 7, 7, 2]
    assert p.quotas == {"flickr": 20, "web": 10}
    per_source = {n: sum(1 for s in p.samples if s.key.startswith(n + "-")) for n in ("web", "flickr")}
    assert per_source == {"web": 10, "flickr": 20}
    # a small source is stretched with variants: 3 images x 7 rounds >= 20, no image used twice per variant
    flickr = [s for s in p.samples if s.key.startswith("flickr-")]
    assert max(s.variant for s in flickr) == 6
    assert len({(s.item, s.variant, s.crop) for s in flickr}) == 20


def test_crops_multiply_before_variants_and_limits_are_enforced():
    src = [scanned("a", 2)]
    p = plan(src, 8, seed=0, shard_size=10, variants=2, crops=2)
    assert sorted((s.variant, s.crop) for s in p.samples) == sorted([(v, c) for v in range(2) for c in range(2)] * 2)
    with pytest.raises(PlanError, match="source 'a'.*--variants/--crops"):
        plan(src, 9, seed=0, shard_size=10, variants=2, crops=2)


def test_target_smaller_than_source_takes_a_seeded_subset():
    src = [scanned("a", 10)]
    plans = [plan(src, 3, seed=s, shard_size=3) for s in range(6)]
    picks = {tuple(sorted(p.items[s.item].ref for s in p.samples)) for p in plans}
    assert len(picks) > 1
    assert all(len(set(p)) == 3 for p in picks)
    # The plan carries only the items it uses, so a small target over a huge list stays small.
    assert all(len(p.items) == 3 for p in plans)


def test_paired_sources_keep_given_versions_and_only_crop():
    src = [scanned("maa", 2, paired_versions=(1, 2))]
    p = plan(src, 4, seed=0, shard_size=4)
    assert sorted(s.variant for s in p.samples) == [1, 1, 2, 2]
    assert len({s.key for s in p.samples}) == 4
    # beyond the given pairs: each pair once (no --crops needed), with a warning, not an error
    assert len(plan(src, 5, seed=0, shard_size=4).samples) == 4
    assert len(plan(src, 8, seed=0, shard_size=4, crops=2).samples) == 8


def test_plan_round_trips_through_json():
    p = plan([scanned("a", 4), scanned("b", 5, paired_versions=(1,))], 9, seed=3, shard_size=4)
    back = Plan.from_dict(p.to_dict())
    assert back.to_json() == p.to_json() and back.hash == p.hash
    assert back.items[p.samples[0].item] == p.items[p.samples[0].item]


def test_sample_key_is_stable():
    assert sample_key("src", "a/b.jpg", 2, 1) == sample_key("src", "a/b.jpg", 2, 1)
    assert sample_key("src", "a/b.jpg", 2, 1).endswith("-v2-c1")
    assert sample_key("src", "a/b.jpg", 0, 0) != sample_key("src", "a/c.jpg", 0, 0)


def test_bad_arguments_name_the_field():
    with pytest.raises(PlanError, match="target"):
        plan([scanned("a", 2)], 0, seed=0, shard_size=1)
    with pytest.raises(PlanError, match="shard_size"):
        plan([scanned("a", 2)], 1, seed=0, shard_size=0)
