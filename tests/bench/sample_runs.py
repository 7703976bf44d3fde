"""Run directories for the tests of the report's recomputation (explain, the sample grid):
records of the embedded model on tiny photo crops, a loadable ``suite.yaml`` as a run
writes it, and ways to damage one on purpose."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import yaml

from idard.bench.store import RecordStore
from idard.bench.suite import load_suite, suite_document
from idard.measure.evaluate import evaluate

from tests.bench.conftest import write_crops


def make_run(root: Path, downscalers: list[str], *, count: int = 2, samples: int = 2, size: int = 48,
             nudge: tuple[str, str, int] | None = None, broken: str | None = None) -> Path:
    """``root/run``: the records of ``count`` crops in ``root/images``. ``nudge`` = (image,
    downscaler, seed) stores that record's value 1e-4 higher (a record the computation no
    longer gives); ``broken`` adds an image file of that name that cannot be decoded."""
    images = write_crops(root / "images", count, size=size)
    if broken:
        (root / "images" / f"{broken}.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
        images.append(root / "images" / f"{broken}.png")
    source = root / "suite-src.yaml"
    source.write_text(yaml.safe_dump({"name": "recompute-test", "images": ["images"], "downscalers": downscalers,
                                      "models": ["srflow-tiny-4x"], "samples": samples}))
    suite = load_suite(source)
    out = root / "run"
    store = RecordStore(out)
    store.write_text("suite.yaml", yaml.safe_dump(suite_document(suite), sort_keys=False))
    records = evaluate(images, list(suite.downscalers), "srflow-tiny-4x", samples=samples)
    if nudge:
        image, downscaler, seed = nudge
        hit = (pl.col("image") == image) & (pl.col("downscaler") == downscaler) & (pl.col("seed") == seed)
        records = records.with_columns(value=pl.when(hit).then(pl.col("value") + 1e-4).otherwise(pl.col("value")))
    store.append(records)
    return out


def stored_value(run_dir: Path, image: str, downscaler: str, seed: int, metric: str = "lpips-alex") -> float:
    frame = pl.read_parquet(run_dir / "records" / "*.parquet")
    hit = frame.filter((pl.col("image") == image) & (pl.col("downscaler") == downscaler) & (pl.col("seed") == seed)
                       & (pl.col("metric") == metric))
    assert hit.height == 1
    return float(hit["value"][0])
