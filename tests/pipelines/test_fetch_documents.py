"""fetch_documents: once per cache, atomic, one-line errors. Downloads are faked (no network)."""
import io
import tarfile

import pytest

from pipelines import fetch_documents as fd


def fake_sdist(folder, version=fd.OCRMYPDF_VERSION):
    path = folder / f"ocrmypdf-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {"tests/resources/a.pdf": b"%PDF-1.4", "tests/resources/b.png": b"png",
                           "src/ocrmypdf/__init__.py": b""}.items():
            info = tarfile.TarInfo(f"ocrmypdf-{version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_pip(monkeypatch):
    calls = []

    def run(cmd, cwd, what):
        calls.append(cmd)
        fake_sdist(cwd)
        return ""

    monkeypatch.setattr(fd, "_run", run)
    monkeypatch.setattr(fd, "OCRMYPDF_SHA256", None)
    monkeypatch.setattr(fd, "sha256_of", lambda path: None)  # the fake sdist is not the pinned one
    return calls


def test_ocrmypdf_resources_are_fetched_once(tmp_path, fake_pip):
    first = fd.fetch_ocrmypdf(tmp_path)
    assert sorted(p.name for p in first.pdf_root.iterdir()) == ["a.pdf", "b.png"]
    assert first.record["pdfs"] == 1 and (first.pdf_root.parent / fd.MARKER).is_file()
    again = fd.fetch_ocrmypdf(tmp_path)
    assert len(fake_pip) == 1 and again.pdf_root == first.pdf_root
    assert [p.name for p in tmp_path.iterdir()] == [first.pdf_root.parent.name]  # no temp folders left


def test_wrong_hash_and_failed_download_leave_nothing_and_say_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fd, "_run", lambda cmd, cwd, what: fake_sdist(cwd))
    with pytest.raises(fd.FetchError, match="sha256 .* differs from the pinned"):
        fd.fetch_ocrmypdf(tmp_path)
    assert list(tmp_path.iterdir()) == []

    def offline(cmd, cwd, what):
        raise fd.FetchError(f"{what}: `{' '.join(cmd)}` failed: network is unreachable")

    monkeypatch.setattr(fd, "_run", offline)
    assert fd.main(["--cache", str(tmp_path), "--only", "texlive"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fetch_documents: error: apt-get download") and "--apt-update" in err
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_run_reports_the_last_line_of_a_failed_command(tmp_path):
    with pytest.raises(fd.FetchError, match="listing: `ls /nonexistent-folder` failed: .*No such file"):
        fd._run(["ls", "/nonexistent-folder"], tmp_path, "listing")
    with pytest.raises(fd.FetchError, match="not installed"):
        fd._run(["no-such-tool-here"], tmp_path, "tool")
