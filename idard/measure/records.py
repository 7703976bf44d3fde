"""The per-sample record: its columns, its key and their types.

Kept apart from `idard.measure.evaluate` (which needs torch) so that everything that only
reads or reduces records (the record store, ``idard-bench report``, the planner) can
import the schema without loading torch: a report process is then a few hundred
megabytes lighter.
"""

from __future__ import annotations

import polars as pl

#: The columns of a per-sample record, in order. The first five are the record's key.
KEY_COLUMNS = ("image", "downscaler", "model", "metric", "seed")
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "image": pl.String,
    "downscaler": pl.String,
    "model": pl.String,
    "metric": pl.String,
    "seed": pl.Int64,
    "scale": pl.Int64,
    "value": pl.Float64,
    "finite": pl.Boolean,
    "converged": pl.Boolean,  # PULSE: L2 reached eps; null for models without that notion
    "error": pl.String,
    "weights_hash": pl.String,
    "sample_seconds": pl.Float64,
    "metric_seconds": pl.Float64,
    "device": pl.String,
    "code_version": pl.String,
}
