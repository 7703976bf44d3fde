"""The worker: what a Ray actor holds and does, written as a plain class.

One worker owns one device (a GPU, or a share of a node's CPU cores). It loads every SR
model and metric network once, on first use, and keeps them for the whole run, then turns
work units into records: decode the HR bytes, downscale, sample, score, all next to the
model, so only compressed image bytes go in and small records come out.

The class has no Ray in it; `idard.bench.run.runner` wraps it with ``ray.remote``. Tests and
the in-process baseline of the overhead benchmark use it directly.
"""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Any

import polars as pl
import torch

from idard.bench.run.plan import WorkUnit
from idard.measure.distortions import DISTORTIONS
from idard.measure.downscalers import DOWNSCALERS
from idard.measure.evaluate import DrawnSamples, ImageEvaluator, Request, records_frame
from idard.measure.images import ImageError, decode_image
from idard.measure.models import MODELS


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Worker:
    """Computes work units; keeps models and metrics loaded between them."""

    def __init__(self, device: str | None = None, threads: int | None = None, max_batch: int = 64,
                 name: str | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = device or default_device()
        self.max_batch = max_batch
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._evaluators: dict[str, ImageEvaluator] = {}
        self._metrics: dict[str, Any] = {}
        self._downscalers: dict[str, Any] = {}
        self.units_done = 0

    def info(self) -> dict[str, Any]:
        """Who this worker is: answers once the actor is up (and again after a restart)."""
        return {"worker": self.name, "device": self.device, "threads": torch.get_num_threads(),
                "models": sorted(self._evaluators)}

    def _evaluator(self, model_id: str, spec: str | None = None) -> ImageEvaluator:
        if model_id not in self._evaluators:
            model = MODELS.create(spec or model_id)
            self._evaluators[model_id] = ImageEvaluator(
                downscalers=(), model=model, metrics=(), seeds=(), scale=model.scale,
                device=self.device, max_batch=self.max_batch,
            )
        return self._evaluators[model_id]

    def _metric(self, metric_id: str, spec: str | None = None) -> Any:
        if metric_id not in self._metrics:
            self._metrics[metric_id] = DISTORTIONS.create(spec or metric_id)
        return self._metrics[metric_id]

    def _downscaler(self, downscaler_id: str, spec: str | None = None) -> Any:
        if downscaler_id not in self._downscalers:
            made = DOWNSCALERS.create(spec or downscaler_id)
            if made.id != downscaler_id:  # the spec must still mean the planned key
                raise ValueError(f"{spec or downscaler_id} is now {made.id}, not the planned {downscaler_id}")
            self._downscalers[downscaler_id] = made
        return self._downscalers[downscaler_id]

    def _requests(self, unit: WorkUnit, evaluator: ImageEvaluator) -> tuple[list[Request], list[dict[str, Any]]]:
        """The unit's requests, and error rows for items whose plug-ins cannot be built:
        one bad downscaler (or metric) fails its own records, never the image's others."""
        requests, rows = [], []
        for item in unit.items:
            try:
                downscaler = self._downscaler(item.downscaler, unit.spec(item.downscaler))
                metrics = tuple(self._metric(m, unit.spec(m)) for m in item.metrics)
            except Exception as exc:  # noqa: BLE001 - becomes this item's error records
                error = f"{type(exc).__name__}: {exc}"
                rows += [evaluator.row(unit.image.name, item.downscaler, m, s, value=float("nan"), error=error)
                         for m in item.metrics for s in item.seeds]
                continue
            requests.append(Request(downscaler, item.seeds, metrics))
        return requests, rows

    def run(self, unit: WorkUnit, data: bytes | Exception, keep: list[DrawnSamples] | None = None) -> pl.DataFrame:
        """All records of one unit. ``data`` is the HR file's bytes, or why reading failed.
        ``keep`` receives the scored pixels (`DrawnSamples`): a report that shows a record
        recomputes it on this very path, so it shows what a run computed."""
        evaluator = self._evaluator(unit.model, unit.spec(unit.model))
        requests, rows = self._requests(unit, evaluator)
        try:
            if isinstance(data, Exception):
                raise ImageError(f"{unit.image.location}: cannot read ({type(data).__name__}: {data})")
            image = decode_image(data, name=unit.image.name, source=unit.image.location)
        except ImageError as exc:
            rows += evaluator.error_rows(unit.image.name, f"ImageError: {exc}", requests)
        else:
            rows += evaluator(image, requests, keep) if requests else []
        self.units_done += 1
        hr_hash = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else None
        return records_frame(rows).with_columns(
            worker=pl.lit(self.name, dtype=pl.String),
            hr_sha256=pl.lit(hr_hash, dtype=pl.String),
        )
