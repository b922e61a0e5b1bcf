"""Progress when stderr is a log file: periodic plain lines with done/total, pairs/s and ETA."""
import argparse
import io
import re

from corruptor.cli.build import progress_mode
from corruptor.run import progress as progress_mod
from corruptor.run.progress import Progress


def test_log_progress_prints_rate_and_eta_lines(monkeypatch):
    monkeypatch.setattr(progress_mod, "LOG_INTERVAL_S", 0.0)
    stream = io.StringIO()
    bar = Progress([4, 6], "log")
    bar.bar.stream = stream
    assert bar.enabled
    bar.update(0, 2)
    bar.update(0, 1)          # out of order: never counted backwards
    bar.finish(1, ok=False)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"build: 2/10 pairs \(20\.0%\), [0-9.]+ pairs/s, ETA \d+ s, \d+ s elapsed", lines[0])
    assert lines[-1].startswith("build: 8/10 pairs (80.0%)") and lines[-1].endswith("1 failed shard(s)")


def test_log_progress_is_quiet_between_intervals(monkeypatch):
    monkeypatch.setattr(progress_mod, "LOG_INTERVAL_S", 3600.0)
    stream = io.StringIO()
    bar = Progress([5], "log")
    bar.bar.stream = stream
    for n in range(1, 6):
        bar.update(0, n)
    assert stream.getvalue() == ""
    bar.close()               # the final line always comes
    assert stream.getvalue().count("\n") == 1 and "5/5 pairs" in stream.getvalue()


def test_cli_picks_a_bar_for_terminals_and_lines_for_logs(monkeypatch):
    class Err(io.StringIO):
        def __init__(self, tty):
            super().__init__()
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr("sys.stderr", Err(False))
    assert progress_mode(argparse.Namespace(no_progress=False)) == "log"
    assert progress_mode(argparse.Namespace(no_progress=True)) is False
    monkeypatch.setattr("sys.stderr", Err(True))
    assert progress_mode(argparse.Namespace(no_progress=False)) is True
