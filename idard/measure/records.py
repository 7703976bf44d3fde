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
    "higher_is_better": pl.Boolean,  # the metric's direction (PSNR, SSIM: True; LPIPS: False)
    "hr_sha256": pl.String,  # the HR file's bytes: a changed file under the same key is detected
    "lr_sha256": pl.String,  # precomputed LR file's bytes; null for downscalers computed here
}

#: How the error message of a non-finite SR sample starts: such a record is a sample the
#: model made (and failed), not an error of the image or unit, and is counted apart.
NONFINITE_SAMPLE = "non-finite SR sample"


def is_error(error: pl.Expr | None = None) -> pl.Expr:
    """True for records of an image or unit that failed (unreadable, too small, a worker
    lost, a plug-in that could not be built): an error, not a sample."""
    error = pl.col("error") if error is None else error
    return (error.is_not_null() & ~error.str.starts_with(NONFINITE_SAMPLE)).fill_null(False)
