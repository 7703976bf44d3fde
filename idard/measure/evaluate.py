"""IDA-RD on one machine: images x downscalers x seeds -> per-sample distortion records.

`evaluate` is the documented entry point; `ImageEvaluator` does the work for one HR image
and is what a distributed worker calls, so a cluster run and a local run compute records
the same way. For one image it downscales with every downscaler, draws all K seeds of all
LR images in as few batched model calls as the batch limit allows (conditioning computed
once per LR image by the model), checks every sample for non-finite values, and scores
the K samples of an LR image against the HR image in one metric call.

Decisions that change the numbers (all documented in the README):
* HR images are centre-cropped to a multiple of the scale (`images.crop_to_multiple`).
* LR images are rounded to 8 bits (``quantize_lr``), because a downscaled image is an image
  file in practice and the paper's LR inputs were 8-bit PNGs.
* SR samples are clipped to [0, 1] and converted to 8 bits before scoring (``quantize_sr``),
  by truncation as in the authors' reference computation (``sr_to_8bit``; rounding is an
  option, `idard.measure.sr_8bit`), but only after a finiteness check: a sample with NaN
  or Inf is recorded as failed, never cast to pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from idard.provenance import process_code_version
from idard.measure.distortions import DISTORTIONS
from idard.measure.downscalers import DOWNSCALERS, Downscaler
from idard.measure.batching import model_calls
from idard.measure.images import RGBImage, crop_to_multiple, load_image, quantize_8bit, to_tensor
from idard.measure.models import MODELS, Samples, SRModel
from idard.measure.records import NONFINITE_SAMPLE, RECORD_SCHEMA
from idard.measure.sr_8bit import SRTo8Bit, to_8bit_grid


def _as_downscaler(spec: str | Downscaler) -> Downscaler:
    return spec if isinstance(spec, Downscaler) else DOWNSCALERS.create(spec)


def _as_model(spec: str | SRModel) -> SRModel:
    return MODELS.create(spec) if isinstance(spec, str) else spec


def _error_message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclasses.dataclass(frozen=True)
class Request:
    """What to compute for one LR image: its downscaler, the sample seeds, the metrics.

    A distributed run asks only for the keys its record store lacks, so requests for one
    HR image may differ in seeds and metrics; requests with the same seeds share batches.
    """

    downscaler: Downscaler
    seeds: tuple[int, ...]
    metrics: tuple[Any, ...]  # distortion plug-ins


@dataclasses.dataclass(frozen=True)
class DrawnSamples:
    """The pixels behind one request's records, exactly as they were scored: the cropped HR
    image, the LR image the model was given and each finite sample after its one 8-bit
    conversion. Records hold no pixels; a caller that wants to *see* a record (the report's
    sample grid, ``idard-bench explain``) asks the evaluator to keep these, so what it shows
    is what was scored, not a second computation that could drift from it."""

    downscaler: str
    hr: np.ndarray  # (H, W, 3) float32, cropped to a multiple of the scale
    lr: np.ndarray  # (h, w, 3) float32, as fed to the model (8-bit unless quantize_lr=False)
    sr: dict[int, np.ndarray]  # seed -> (H, W, 3) float32 sample as scored; finite samples only


@dataclasses.dataclass
class ImageEvaluator:
    """Computes the records of one HR image; holds the loaded model and metrics.

    Build it once per process (or Ray actor) and call it per image: the model and the
    metric networks are moved to the device on first use and kept. ``downscalers``,
    ``metrics`` and ``seeds`` are the defaults when a call does not pass `Request`s.
    """

    downscalers: Sequence[Downscaler]
    model: SRModel
    metrics: Sequence[Any]  # distortion plug-ins
    seeds: Sequence[int]
    scale: int
    device: str = "cpu"
    max_batch: int = 64  # SR samples per model call: bounds device memory
    quantize_lr: bool = True
    quantize_sr: bool = True
    sr_to_8bit: SRTo8Bit = "truncate"  # the reference's conversion; "round" to the nearest level

    def __post_init__(self) -> None:
        if self.scale != self.model.scale:
            raise ValueError(f"model {self.model.id} upscales x{self.model.scale}, but the scale asked for is x{self.scale}")
        self._model_ready = False
        self._metrics_ready: set[int] = set()

    def _prepare(self, metrics: Iterable[Any]) -> None:
        if not self._model_ready:
            self.model.to(self.device)
            self._model_ready = True
        for metric in metrics:
            if id(metric) not in self._metrics_ready:
                metric.to(self.device)
                self._metrics_ready.add(id(metric))

    def row(self, image: str, downscaler: str, metric: str, seed: int, **fields: Any) -> dict[str, Any]:
        """One record of this evaluator's model; ``fields`` fill the non-key columns."""
        row: dict[str, Any] = dict.fromkeys(RECORD_SCHEMA)
        row.update(
            image=image, downscaler=downscaler, model=self.model.id, metric=metric, seed=int(seed),
            scale=self.scale, finite=False, weights_hash=self.model.weights_hash,
            device=str(self.device), code_version=process_code_version(),
        )
        row.update(fields)
        return row

    def error_rows(self, image: str, error: str, requests: Iterable[Request]) -> list[dict[str, Any]]:
        """Records that say why a request produced no distortion values."""
        return [
            self.row(image, r.downscaler.id, m.id, s, value=float("nan"), error=error,
                     higher_is_better=getattr(m, "higher_is_better", None))
            for r in requests
            for m in r.metrics
            for s in r.seeds
        ]

    def default_requests(self) -> list[Request]:
        if not self.seeds:
            raise ValueError("at least one sample seed is needed")
        return [Request(d, tuple(self.seeds), tuple(self.metrics)) for d in self.downscalers]

    def __call__(
        self, image: RGBImage | str | Path, requests: Sequence[Request] | None = None,
        keep: list[DrawnSamples] | None = None,
    ) -> list[dict[str, Any]]:
        """Records of one image (all defaults, or ``requests``); failures become error
        records, never exceptions. With ``keep``, the pixels of every scored request are
        appended to it (`DrawnSamples`), from the very tensors the records were scored on."""
        requests = list(requests) if requests is not None else self.default_requests()
        name = image_key(image)
        rows = self._records(image, name, requests, keep)
        hr_hash = None if isinstance(image, RGBImage) else _file_sha256(image)
        lr_hashes = {r.downscaler.id: _lr_sha256(r.downscaler, name, self.scale) for r in requests}
        for row in rows:
            row["hr_sha256"] = row["hr_sha256"] or hr_hash
            row["lr_sha256"] = lr_hashes.get(row["downscaler"])
        return rows

    def _records(self, image: RGBImage | str | Path, name: str, requests: list[Request],
                 keep: list[DrawnSamples] | None = None) -> list[dict[str, Any]]:
        try:
            hr = image if isinstance(image, RGBImage) else load_image(image)
            hr = crop_to_multiple(hr, self.scale)
        except Exception as exc:  # noqa: BLE001 - an unusable image is a record, not a crash
            return self.error_rows(name, _error_message(exc), requests)
        self._prepare(m for r in requests for m in r.metrics)

        rows: list[dict[str, Any]] = []
        lrs: list[tuple[Request, np.ndarray]] = []
        for request in requests:
            try:
                lr = request.downscaler(hr, self.scale)
                lrs.append((request, quantize_8bit(lr) if self.quantize_lr else lr))
            except Exception as exc:  # noqa: BLE001
                rows += self.error_rows(name, _error_message(exc), [request])

        hr_tensor = to_tensor(hr.pixels, self.device)
        for call in model_calls(lrs, lambda pair: pair[0].seeds, self.max_batch):
            rows += self._score_chunk(name, hr_tensor, tuple(call[0][0].seeds), call, keep)
        return rows

    def _score_chunk(
        self, name: str, hr: torch.Tensor, seeds: tuple[int, ...], chunk: list[tuple[Request, np.ndarray]],
        keep: list[DrawnSamples] | None = None,
    ) -> list[dict[str, Any]]:
        lr = to_tensor([pixels for _, pixels in chunk], self.device)
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                out = self.model.sample(lr, list(seeds))
        except Exception as exc:  # noqa: BLE001
            return self.error_rows(name, _error_message(exc), [r for r, _ in chunk])
        sr, converged = (out.images, out.converged.tolist()) if isinstance(out, Samples) else (out, None)
        if sr.is_cuda:
            torch.cuda.synchronize()
        sample_seconds = (time.perf_counter() - started) / (len(chunk) * len(seeds))

        rows: list[dict[str, Any]] = []
        for b, ((request, lr_pixels), samples) in enumerate(zip(chunk, sr)):
            flags = converged[b] if converged is not None else [None] * len(seeds)
            rows += self._score_samples(name, request, hr, samples, flags, sample_seconds,
                                        _Keeper(keep, request, lr_pixels) if keep is not None else None)
        return rows

    def _score_samples(
        self, name: str, request: Request, hr: torch.Tensor, samples: torch.Tensor,
        converged: list[bool | None], sample_seconds: float, keeper: "_Keeper | None" = None,
    ) -> list[dict[str, Any]]:
        """Score the K samples of one LR image against its HR image. A sample that did not
        converge (PULSE) is scored and flagged; the statistics leave it out of means."""
        if samples.shape[-2:] != hr.shape[-2:]:
            error = f"model output {tuple(samples.shape[-2:])} does not match HR {tuple(hr.shape[-2:])}"
            return self.error_rows(name, error, [request])
        finite = torch.isfinite(samples).flatten(1).all(dim=1).cpu().tolist()
        good = [k for k, ok in enumerate(finite) if ok]
        scored = to_8bit_grid(samples[good], self.sr_to_8bit) if self.quantize_sr else samples[good].clamp(0.0, 1.0)
        if keeper is not None:
            keeper.keep(hr, {request.seeds[k]: scored[i] for i, k in enumerate(good)})

        downscaler = request.downscaler.id
        rows: list[dict[str, Any]] = []
        for metric in request.metrics:
            started = time.perf_counter()
            try:
                values = metric(hr, scored).tolist() if good else []
                error = None
            except Exception as exc:  # noqa: BLE001
                values, error = [float("nan")] * len(good), _error_message(exc)
            metric_seconds = (time.perf_counter() - started) / max(1, len(good))
            by_sample = dict(zip(good, values))
            for k, seed in enumerate(request.seeds):
                if k in by_sample:
                    ok = error is None and bool(np.isfinite(by_sample[k]))
                    rows.append(self.row(name, downscaler, metric.id, seed, value=float(by_sample[k]),
                                          finite=ok, converged=converged[k], error=error,
                                          higher_is_better=metric.higher_is_better,
                                          sample_seconds=sample_seconds, metric_seconds=metric_seconds))
                else:
                    bad = int((~torch.isfinite(samples[k])).sum())
                    rows.append(self.row(name, downscaler, metric.id, seed, value=float("nan"),
                                          converged=converged[k], sample_seconds=sample_seconds,
                                          higher_is_better=metric.higher_is_better,
                                          error=f"{NONFINITE_SAMPLE} ({bad} NaN/Inf values)"))
        return rows


@dataclasses.dataclass(frozen=True)
class _Keeper:
    """Where one request's scored pixels go when the caller asked to keep them."""

    into: list[DrawnSamples]
    request: Request
    lr: np.ndarray

    def keep(self, hr: torch.Tensor, scored: dict[int, torch.Tensor]) -> None:
        def pixels(tensor: torch.Tensor) -> np.ndarray:
            return tensor.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()

        self.into.append(DrawnSamples(self.request.downscaler.id, pixels(hr[0]), self.lr,
                                      {seed: pixels(sample) for seed, sample in scored.items()}))


def _file_sha256(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None  # the load error becomes the records' error


def _lr_sha256(downscaler: Downscaler, name: str, scale: int) -> str | None:
    """The LR file's hash for downscalers that read one (``precomputed``), else None."""
    reader = getattr(downscaler, "lr_sha256", None)
    if reader is None:
        return None
    try:
        return reader(name, scale)
    except Exception:  # noqa: BLE001 - a missing LR file is already an error record
        return None


def image_key(image: str | Path | RGBImage) -> str:
    """The ``image`` key of an image's records: an `RGBImage`'s name, a file's stem."""
    return image.name if isinstance(image, RGBImage) else Path(image).stem


def _check_image_keys(images: Sequence[str | Path | RGBImage]) -> None:
    """Refuse two images with one key before computing anything: their records would be
    averaged as one image's (a suite refuses the same clash when it lists its sources)."""
    seen: dict[str, str] = {}
    for image in images:
        key = image_key(image)
        where = str(image.source or image.name) if isinstance(image, RGBImage) else str(image)
        if key in seen:
            raise ValueError(f"two images have the key {key!r}: {seen[key]} and {where}; image keys must be "
                             "unique (rename one, or pass RGBImage objects with distinct names)")
        seen[key] = where


def records_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows -> a Polars frame with the record schema (column order and types fixed)."""
    return pl.DataFrame(rows, schema=RECORD_SCHEMA, orient="row") if rows else pl.DataFrame(schema=RECORD_SCHEMA)


def evaluate(
    images: Iterable[str | Path | RGBImage],
    downscalers: Sequence[str | Downscaler],
    model: str | SRModel,
    *,
    samples: int = 8,
    seeds: Sequence[int] | None = None,
    metrics: Sequence[str] = ("lpips-alex",),
    scale: int | None = None,
    device: str | None = None,
    max_batch: int = 64,
    quantize_lr: bool = True,
    quantize_sr: bool = True,
    sr_to_8bit: SRTo8Bit = "truncate",
    on_image: Callable[[str, list[dict[str, Any]]], None] | None = None,
    progress: bool | None = None,
) -> pl.DataFrame:
    """Per-sample IDA-RD records for every (image, downscaler, metric, seed).

    ``images`` are paths or decoded `RGBImage`s; ``downscalers``, ``model`` and
    ``metrics`` are registered specs (``"blur(sigma=2)"``, ``"srflow-tiny-4x"``,
    ``"lpips-alex"``) or plug-in instances. Seeds are ``range(samples)`` unless given.
    The sampling temperature is part of the model spec (``"srflow-tiny-4x(heat=0.9)"``),
    so it is part of the model id every record carries.
    Reduce the result with `idard.measure.statistics.ida_rd_table`.
    ``sr_to_8bit`` is how SR samples become 8-bit images before scoring: ``truncate``
    (the reference notebook's ``astype(uint8)``) or ``round``.
    ``on_image`` is called after each image with its records (for progress reporting);
    ``progress`` prints a line per image to stderr (default: when stderr is a terminal).
    Two images with the same key (file stem or `RGBImage.name`) are refused up front.
    """
    images = list(images)
    _check_image_keys(images)
    sr_model = _as_model(model)
    evaluator = ImageEvaluator(
        downscalers=[_as_downscaler(d) for d in downscalers],
        model=sr_model,
        metrics=[DISTORTIONS.create(m) for m in metrics],
        seeds=list(seeds) if seeds is not None else list(range(samples)),
        scale=scale or sr_model.scale,
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
        max_batch=max_batch,
        quantize_lr=quantize_lr,
        quantize_sr=quantize_sr,
        sr_to_8bit=sr_to_8bit,
    )
    show = sys.stderr.isatty() if progress is None else progress
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, image in enumerate(images, 1):
        image_rows = evaluator(image)
        rows += image_rows
        if show:
            failed = sum(r["error"] is not None for r in image_rows)
            print(f"evaluate: {index}/{len(images)} {image_key(image)}: {len(image_rows)} records"
                  + (f" ({failed} failed)" if failed else "") + f", {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
        if on_image is not None:
            on_image(image_rows[0]["image"] if image_rows else str(image), image_rows)
    return records_frame(rows)
