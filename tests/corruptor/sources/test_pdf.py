"""`pdf:` sources: parsing, scanning, rendering, bad files as status rows, deterministic builds."""
import io
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

pytest.importorskip("pypdfium2")

from corruptor.build.builder import BuildConfig, build  # noqa: E402
from corruptor.sources.pdf import PdfOptionError, parse_pdf_path, render_page  # noqa: E402
from corruptor.sources.sources import ItemReadError, SourceError, SourceSpec, parse_source_arg, scan_source  # noqa: E402

from tests.corruptor.build.build_fixtures import GLOBAL_RECIPE, dataset_bytes  # noqa: E402
from tests.corruptor.sources.pdfkit import BAD_PDFS, make_pdf_folder  # noqa: E402

GOOD_REFS = ["a.pdf#page=0001", "a.pdf#page=0002", "a.pdf#page=0003", "sub/b.pdf#page=0001", "sub/b.pdf#page=0002"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_pdf_folder(tmp_path_factory.mktemp("pdfs") / "docs")


@pytest.mark.parametrize("text, path, weight", [
    ("docs=pdf:/data/manuals", "pdf:/data/manuals", 1.0),
    ("docs=pdf:/data/manuals:0.5", "pdf:/data/manuals", 0.5),
    ("docs=pdf:/data/manuals?dpi=50&max_pages=2:3", "pdf:/data/manuals?dpi=50&max_pages=2", 3.0),
    ("docs=pdf:2", "pdf:2", 1.0),  # a folder named 2, not a weight
])
def test_parse_pdf_source_arg(text, path, weight):
    spec = parse_source_arg(text)
    assert (spec.path, spec.weight, spec.kind) == (path, weight, "ocr")  # documents are text-heavy pages
    assert parse_source_arg(text, {"docs": "photo"}).kind == "photo"


@pytest.mark.parametrize("text, says", [
    ("pdf:/d?zoom=2", "unknown option 'zoom'; allowed: dpi, max_pages, max_side"),
    ("pdf:/d?dpi=high", "dpi needs an integer"),
    ("pdf:/d?dpi", "dpi needs an integer"),
    ("pdf:/d?dpi=5000", r"dpi must be in \[18, 1200\]"),
    ("pdf:/d?max_pages=0", "max_pages must be >= 1"),
    ("pdf:", "empty PATH"),
])
def test_bad_options_name_the_option(text, says):
    with pytest.raises(PdfOptionError, match=says):
        parse_pdf_path(text)


def test_options_are_read():
    opts = parse_pdf_path("pdf:/d?dpi=150&max_pages=7&max_side=2000")
    assert (opts.path, opts.dpi, opts.max_pages, opts.max_side) == ("/d", 150, 7, 2000)


def test_scan_lists_pages_in_file_then_page_order_and_notes_bad_files(folder):
    src = scan_source(SourceSpec("docs", f"pdf:{folder}", kind="ocr"))
    refs = [it.ref for it in src.items]
    bad_refs = [f"{name}#page=0001" for name in BAD_PDFS]
    assert sorted(refs) == refs and set(refs) == set(GOOD_REFS) | set(bad_refs)
    assert src.source_type == "pdf"
    notes = src.to_dict()
    assert notes["pdf_files"] == 6 and notes["pdf_pages"] == 5 and notes["dpi"] == 100
    assert {u["file"]: u["reason"].split(":")[0] for u in notes["unusable_pdfs"]} == BAD_PDFS
    limited = scan_source(SourceSpec("docs", f"pdf:{folder}?max_pages=1", kind="ocr"))
    assert [it.ref for it in limited.items if it.ref not in bad_refs] == ["a.pdf#page=0001", "sub/b.pdf#page=0001"]
    one = scan_source(SourceSpec("docs", f"pdf:{folder / 'sub' / 'b.pdf'}", kind="ocr"))
    assert [it.ref for it in one.items] == ["b.pdf#page=0001", "b.pdf#page=0002"]


def test_missing_folder_bad_options_and_no_pdfs_fail_before_work(folder, tmp_path):
    with pytest.raises(SourceError, match="source 'docs': path .* does not exist"):
        scan_source(SourceSpec("docs", f"pdf:{tmp_path / 'nope'}"))
    with pytest.raises(SourceError, match="source 'docs': .*unknown option"):
        scan_source(SourceSpec("docs", f"pdf:{folder}?pages=3"))
    (tmp_path / "none").mkdir()
    with pytest.raises(SourceError, match="no images found .*pdf source"):
        scan_source(SourceSpec("docs", f"pdf:{tmp_path / 'none'}"))


def test_pages_render_at_the_given_dpi_and_fit_max_side(folder):
    path = str(folder / "a.pdf")  # 200 x 150 pt pages
    assert render_page(path, 0, dpi=72).shape == (150, 200, 3)
    assert render_page(path, 0, dpi=144).shape == (300, 400, 3)
    assert render_page(path, 0, dpi=144, max_side=100).shape == (75, 100, 3)
    first, second = render_page(path, 0, dpi=72), render_page(path, 1, dpi=72)
    assert first.dtype == np.uint8 and not np.array_equal(first, second)
    assert (first > 200).mean() > 0.5  # mostly white paper


def test_bad_files_raise_item_errors_with_their_reason(folder):
    src = scan_source(SourceSpec("docs", f"pdf:{folder}", kind="ocr"))
    by_ref = {it.ref: it for it in src.items}
    for name, reason in BAD_PDFS.items():
        with pytest.raises(ItemReadError, match=f"^{reason}: {name}"):
            by_ref[f"{name}#page=0001"].read()


def test_page_bytes_are_the_same_in_a_fresh_process(folder):
    src = scan_source(SourceSpec("docs", f"pdf:{folder}?dpi=90", kind="ocr"))
    item = next(it for it in src.items if it.ref == "sub/b.pdf#page=0002")
    here = item.read()
    assert item.read() == here
    code = ("import sys, hashlib; from corruptor.sources.sources import Locator; "
            f"sys.stdout.write(hashlib.sha256(Locator.from_list({json.dumps(item.locator.to_list())}).read()).hexdigest())")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    import hashlib

    assert there == hashlib.sha256(here).hexdigest()
    assert Image.open(io.BytesIO(here)).size == (375, 500)  # 300 x 400 pt at 90 dpi


def test_build_writes_pages_and_status_rows_and_is_deterministic(folder, tmp_path):
    n = len(GOOD_REFS) + len(BAD_PDFS)
    spec = parse_source_arg(f"docs=pdf:{folder}?dpi=60")

    def run(out):   # the bad PDFs are nearly half the rows: accepted here, refused by the default --max-failed
        return build(BuildConfig(recipe=GLOBAL_RECIPE, sources=[spec], out=out, target=n, shard_size=4,
                                 max_failed=1.0))

    report = run(tmp_path / "one")
    assert (report.rows, report.ok, report.failed) == (n, len(GOOD_REFS), len(BAD_PDFS))
    rows = {r["ref"]: r for p in sorted((tmp_path / "one" / "shards").glob("*.parquet"))
            for r in pq.read_table(p).to_pylist()}
    for name, reason in BAD_PDFS.items():
        row = rows[f"{name}#page=0001"]
        assert row["status"] == "failed" and row["error"].startswith(f"{reason}: {name}"), row["error"]
        assert row["error_kind"] == "permanent"
    assert all(rows[ref]["status"] == "ok" for ref in GOOD_REFS)
    dataset = json.loads((tmp_path / "one" / "dataset.json").read_text())
    (source,) = dataset["sources"]
    assert source["type"] == "pdf" and source["kind"] == "ocr" and len(source["unusable_pdfs"]) == len(BAD_PDFS)
    run(tmp_path / "two")
    assert dataset_bytes(tmp_path / "one") == dataset_bytes(tmp_path / "two")


def test_a_pdf_build_resumes_and_rebuilds_from_its_checked_plan(folder, tmp_path, monkeypatch):
    from corruptor.build.builder import BuildError, rebuild
    from tests.corruptor.build.build_fixtures import OTHER_RECIPE

    n = len(GOOD_REFS) + len(BAD_PDFS)
    monkeypatch.chdir(folder.parent)   # a relative pdf:FOLDER is stored with its folder made absolute
    spec = parse_source_arg(f"docs=pdf:{folder.name}?dpi=60")
    cfg = dict(recipe=GLOBAL_RECIPE, sources=[spec], out=tmp_path / "ds", target=n, shard_size=4, max_failed=1.0)
    build(BuildConfig(**cfg))
    plan = json.loads((tmp_path / "ds" / "plan.json").read_text())
    assert plan["plan"]["sources"][0]["path"] == f"pdf:{folder}?dpi=60"
    (tmp_path / "ds" / "shards" / "000001.stats.json").unlink()
    again = build(BuildConfig(**cfg))   # plan.json (pdf locators) passes the schema check
    assert again.shards_run == 1 and again.ok == len(GOOD_REFS)
    monkeypatch.chdir(tmp_path)
    restated = parse_source_arg(f"docs=pdf:{folder}?dpi=60")   # from elsewhere: the relative form no longer fits
    report = rebuild(tmp_path / "ds", OTHER_RECIPE, tmp_path / "new", max_failed=1.0, sources=[restated])
    assert (report.ok, report.failed) == (len(GOOD_REFS), len(BAD_PDFS))
    # a pdf locator that leads out of the source's folder is refused before anything is read
    (tmp_path / "elsewhere.pdf").write_bytes((folder / "a.pdf").read_bytes())
    doc = json.loads((tmp_path / "ds" / "plan.json").read_text())
    doc["plan"]["items"][0]["locator"][1] = str(tmp_path / "elsewhere.pdf")
    (tmp_path / "ds" / "plan.json").write_text(json.dumps(doc))
    with pytest.raises(BuildError, match=r"plan\.items\[0\]\.locator: pdf .* is not a \.pdf file inside"):
        rebuild(tmp_path / "ds", OTHER_RECIPE, tmp_path / "new2", max_failed=1.0)
