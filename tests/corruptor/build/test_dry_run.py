"""`corruptor build --dry-run` prints the plan and writes nothing; a far-off target warns."""
import json
import logging

from corruptor.build.builder import BuildConfig, build, dry_run
from corruptor.build.plan_summary import summarize
from corruptor.cli.main import main
from corruptor.sources.sources import SourceSpec

from .build_fixtures import GLOBAL_RECIPE, make_photos


def test_dry_run_prints_per_source_plan_and_writes_nothing(tmp_path, capsys):
    make_photos(tmp_path / "a", 4)
    make_photos(tmp_path / "b", 3, seed=2)
    out = tmp_path / "out" / "ds"
    code = main(["build", "--recipe", "maa-global", "--source", f"a={tmp_path / 'a'}", "--source",
                 f"b={tmp_path / 'b'}:0.5", "--target", "12", "--crops", "1", "--out", str(out), "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0 and not (tmp_path / "out").exists()
    lines = captured.out.splitlines()
    assert lines[0].split() == ["source", "images", "used", "variants", "crops", "pairs"]
    assert lines[1].split() == ["a", "4", "4", "2", "1", "8"]       # 8 of 12 by weight: 2 variants of 4 images
    assert lines[2].split() == ["b", "3", "3", "2", "1", "4"]
    assert lines[3].split() == ["total", "7", "7", "12"]
    assert "nothing written" in captured.out and captured.err == ""
    assert main(["build", "--recipe", "maa-global", "--source", f"a={tmp_path / 'a'}", "--target", "3",
                 "--out", str(out), "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sources"][0] == {"source": "a", "images": 4, "used": 3, "variants": 1, "crops": 1, "pairs": 3}
    assert not (tmp_path / "out").exists()


def test_dry_run_refuses_what_the_build_would_refuse(tmp_path, capsys):
    code = main(["build", "--recipe", "no-such-recipe", "--source", f"a={tmp_path}", "--target", "3",
                 "--out", str(tmp_path / "o"), "--dry-run"])
    assert code == 2 and "recipe" in capsys.readouterr().err


def test_a_target_far_beyond_the_sources_warns(tmp_path, caplog, capsys):
    make_photos(tmp_path / "a", 3)
    cfg = BuildConfig(recipe=GLOBAL_RECIPE, sources=[SourceSpec("a", str(tmp_path / "a"))], out=tmp_path / "ds",
                      target=60, shard_size=30)
    result = dry_run(cfg)
    assert len(result.warnings) == 1 and "60 pairs from 3 image(s): 20 variant(s)" in result.warnings[0]
    with caplog.at_level(logging.WARNING, logger="corruptor.build.builder"):
        report = build(cfg)
    assert report.warnings == result.warnings and result.warnings[0] in caplog.text
    ok = dry_run(BuildConfig(recipe=GLOBAL_RECIPE, sources=[SourceSpec("a", str(tmp_path / "a"))],
                             out=tmp_path / "ds2", target=48, shard_size=30))
    assert ok.warnings == [] and summarize(ok.plan)[0].variants == 16    # the limit itself is fine
    main(["build", "--recipe", "maa-global", "--source", f"a={tmp_path / 'a'}", "--target", "60",
          "--out", str(tmp_path / "o"), "--dry-run"])
    assert "warning: source 'a' gives 60 pairs" in capsys.readouterr().err
