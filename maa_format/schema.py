"""The Parquet manifest: one row per planned sample, including failures."""
from __future__ import annotations

import pyarrow as pa

MANIFEST_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("source", pa.string()),
    ("ref", pa.string()),
    ("dis_ref", pa.string()),
    ("variant", pa.int32()),
    ("crop", pa.int32()),
    ("sha256", pa.string()),
    ("status", pa.string()),            # ok | failed | skipped
    ("error", pa.string()),             # reason for failed/skipped, null when ok
    ("error_kind", pa.string()),        # permanent | transient, null when ok
    ("ops", pa.string()),               # "op:severity,..." summary
    ("ops_json", pa.string()),          # every op with its sampled parameters
    ("n_regions", pa.int32()),
    ("source_width", pa.int32()),
    ("source_height", pa.int32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("clean_bytes", pa.int64()),
    ("degraded_bytes", pa.int64()),
    ("mask_bytes", pa.int64()),
])
STATUSES: tuple[str, ...] = ("ok", "failed", "skipped")
