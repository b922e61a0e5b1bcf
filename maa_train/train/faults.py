"""Data faults of a training run: samples skipped (unreadable or corrupt) and broken shards.

Each loader stream reports its running count of skipped samples with every batch; a
count is per stream and per epoch, so the total is the earlier epochs' (and earlier
runs') tally plus the latest count of every live stream.
"""
from __future__ import annotations


class DataFaults:
    def __init__(self, skipped: int = 0, broken: set[str] | None = None):
        self.skipped = skipped  # earlier epochs and runs
        self.broken: set[str] = set(broken or ())
        self._streams: dict[int, int] = {}

    def total(self) -> int:
        return self.skipped + sum(self._streams.values())

    def count(self, batch: dict) -> None:
        self._streams[int(batch.get("stream", 0))] = int(batch["skipped"])
        self.broken.update(batch.get("broken_shards", ()))

    def end_epoch(self) -> None:
        self.skipped, self._streams = self.total(), {}
