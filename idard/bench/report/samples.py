"""A run's records made visible again: recompute the samples of given record keys exactly
as the run's worker computed them, and say whether each equals its record.

Records hold no pixels (every sample is a function of image, downscaler, model and seed,
README "Seeds"), so whatever shows a record's pixels recomputes them: ``idard-bench
explain`` for one record, the report's sample grid for a few images. Both go through
`RunSamples.recompute`, which runs the worker's own code (`idard.bench.run.worker.Worker.run`:
the same decode of the file's bytes, centre crop, downscale, 8-bit LR, batched model call
with the seeds, the one 8-bit SR conversion, the metric) and keeps the pixels it scored.
A recomputed value must equal its record *exactly*; any difference is reported, never
rounded away.

Which HR file is shown is decided here too: only files from the image sources the user
named, or else from the run directory's ``suite.yaml``, and only a file whose SHA-256 is
the records' ``hr_sha256`` (a run directory received from elsewhere may point at local
files of the same name that are not the images it was computed from).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from idard.measure.records import KEY_COLUMNS

#: The record columns a recomputation is compared with.
_STORED = (*KEY_COLUMNS, "value", "error", "hr_sha256", "weights_hash")


@dataclasses.dataclass(frozen=True)
class SampleRecord:
    """One record key: its stored value and error, and the recomputed ones."""

    image: str
    downscaler: str
    model: str
    metric: str
    seed: int
    stored: float | None  # None: the run holds no record of this key
    stored_error: str | None
    value: float | None  # None: not recomputed
    error: str | None

    @property
    def equal(self) -> bool:
        """The recomputation is the record: the same value to the last bit (NaN equals NaN)
        and an error exactly where the record has one."""
        if self.stored is None or self.value is None or (self.error is None) != (self.stored_error is None):
            return False
        return self.value == self.stored or (math.isnan(self.value) and math.isnan(self.stored))


@dataclasses.dataclass
class ImageSamples:
    """The recomputed records of one image, with the pixels they were scored on."""

    image: str
    records: list[SampleRecord]
    hr: np.ndarray | None = None  # cropped HR, float32 (H, W, 3)
    lr: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # downscaler -> 8-bit LR
    sr: dict[tuple[str, int], np.ndarray] = dataclasses.field(default_factory=dict)  # (downscaler, seed) -> 8-bit SR
    location: str | None = None  # the HR file shown
    why: str | None = None  # why nothing was recomputed (file not found, not the records' file, ...)
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. other weights than the records'


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _suite_document(run_dir: str) -> dict[str, Any]:
    """The run directory's ``suite.yaml`` as a mapping (through the bounded loader: a
    received run directory is not trusted); empty when it has none or it is refused."""
    import yaml

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.checks import read_run_file
    from idard.bench.suite.safe_yaml import load_yaml

    try:
        document = load_yaml(read_run_file(run_dir, "suite.yaml"))
    except (FileNotFoundError, OSError, ValueError, yaml.YAMLError):
        return {}
    return document if isinstance(document, dict) else {}


def _specs(document: dict[str, Any], run_dir: str) -> tuple[tuple[str, str], ...]:
    """(id, spec) of the suite's plug-ins, so a ``precomputed(folder=...)`` or weights file
    is built from where the suite says; none when the suite does not validate here."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.definition import parse_suite

    try:
        return parse_suite(document, f"{run_dir}/suite.yaml", Path(str(document.get("base_dir", ".")))).specs
    except Exception:  # noqa: BLE001 - plug-ins are then built from their ids
        return ()


class RunSamples:
    """Recomputes records of one run directory; models stay loaded and every sample is
    computed once per instance (a cache by record key), whoever asks for it."""

    def __init__(self, run_dir: str, records: pl.LazyFrame, images: Sequence[str] = (), *,
                 device: str | None = None, cache: Path | None = None) -> None:
        self.run_dir = str(run_dir)
        self.disk = SampleCache(cache) if cache is not None else None
        self.records = records
        document = _suite_document(self.run_dir)
        self.specs = _specs(document, self.run_dir)
        self.max_batch = int(document.get("max_batch", 64) or 64)
        if images:
            self.sources, base = list(images), Path.cwd()
            self.origin = f"HR images read from the sources given on the command line ({', '.join(images)})"
        else:
            self.sources = [str(s) for s in document.get("images", [])]
            base = Path(str(document.get("base_dir", self.run_dir)))
            self.origin = (f"HR images read from the run's suite.yaml ({', '.join(self.sources)})" if self.sources
                           else "no image sources: the run directory has no suite.yaml (name some with --images)")
        self._base = base
        self._refs: dict[str, Any] | None = None
        self._listing_error: str | None = None
        self._device = device
        self._worker: Any = None
        self._cache: dict[tuple[str, str, str, int], tuple[np.ndarray, np.ndarray | None, dict[str, tuple]]] = {}
        self._hr: dict[tuple[str, str], np.ndarray] = {}
        self.computed = 0  # samples drawn by the model (not read from the cache)

    # ------------------------------------------------------------------ images

    def _ref(self, image: str) -> tuple[Any, str | None]:
        """The image source entry of ``image``, or why there is none."""
        # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
        from idard.bench.suite.sources import scan_sources

        if self._refs is None:
            self._refs = {}
            if not self.sources:
                self._listing_error = self.origin
            else:
                try:
                    self._refs = {ref.name: ref for ref in scan_sources(self.sources, self._base).refs}
                except Exception as exc:  # noqa: BLE001 - said per image, the report goes on
                    self._listing_error = f"image sources cannot be listed ({type(exc).__name__}: {exc})"
        if self._listing_error:
            return None, self._listing_error
        ref = self._refs.get(image)
        return ref, None if ref is not None else f"{image}: not among the {self.origin[len('HR '):]}"

    def _worker_for(self) -> Any:
        if self._worker is None:
            # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
            from idard.bench.run.worker import Worker

            self._worker = Worker(device=self._device, max_batch=self.max_batch, name="report")
        return self._worker

    # ------------------------------------------------------------------ the one recomputation

    def stored(self, image: str, model: str, downscalers: Sequence[str], metrics: Sequence[str],
               seeds: Sequence[int]) -> pl.DataFrame:
        """The records of these keys (only they are read, whatever the store's size)."""
        return self.records.filter(
            (pl.col("image") == image) & (pl.col("model") == model) & pl.col("downscaler").is_in(list(downscalers))
            & pl.col("metric").is_in(list(metrics)) & pl.col("seed").is_in([int(s) for s in seeds])
        ).select(_STORED).collect()

    def recompute(self, image: str, model: str, downscalers: Sequence[str], metrics: Sequence[str],
                  seeds: Sequence[int]) -> ImageSamples:
        """Every record (image, d, model, m, s) for d, m, s in the lists, recomputed on the
        worker's path in batched model calls, with the pixels scored; the HR file must be
        the one the records name by SHA-256, or nothing is recomputed (``why`` says so)."""
        stored = self.stored(image, model, downscalers, metrics, seeds)
        ref, why = self._ref(image)
        data: bytes | Exception | None = None
        if ref is not None:
            try:
                data = ref.read()
            except OSError as exc:
                why = f"{ref.location}: cannot read ({exc.strerror or exc})"
        if data is not None and why is None:
            why = self._hash_mismatch(ref.location, _sha256_hex(data), stored)
        if why is not None:
            return ImageSamples(image, self._pair(image, model, downscalers, metrics, seeds, stored), why=why)
        sha = _sha256_hex(data)
        if self.disk is not None:
            self._load_cached(ref, data, sha, model, downscalers, metrics, seeds)
        fresh = self._compute_missing(ref, data, model, downscalers, metrics, seeds)
        if self.disk is not None:
            for key in fresh:
                self.disk.save(sha, key, *self._cache[key])
        return self._collect(image, model, downscalers, metrics, seeds, stored, ref.location)

    @staticmethod
    def _hash_mismatch(location: str, sha: str, stored: pl.DataFrame) -> str | None:
        hashes = sorted(set(stored["hr_sha256"].drop_nulls().to_list()))
        if not hashes:
            return f"{location}: the records hold no hr_sha256, so this file cannot be shown as theirs"
        if sha not in hashes:
            return (f"{location} is not the file the records were computed from (SHA-256 {sha[:12]}…, "
                    f"records {', '.join(h[:12] + '…' for h in hashes)}): not shown")
        return None

    def _compute_missing(self, ref: Any, data: bytes, model: str, downscalers: Sequence[str],
                         metrics: Sequence[str], seeds: Sequence[int]) -> None:
        """One work unit of the keys not yet cached, run by the worker's own code."""
        # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
        from idard.bench.run.plan import Item, WorkUnit

        items = []
        for downscaler in downscalers:
            todo = tuple(int(s) for s in seeds if not self._cached(ref.name, model, downscaler, int(s), metrics))
            if todo:
                items.append(Item(downscaler, todo, tuple(metrics)))
        if not items:
            return []
        kept: list = []
        unit = WorkUnit(image=ref, model=model, items=tuple(items), specs=self.specs)
        frame = self._worker_for().run(unit, data, keep=kept)
        for drawn in kept:
            self._hr[(ref.name, model)] = drawn.hr
            for seed, pixels in drawn.sr.items():
                self._cache[(ref.name, model, drawn.downscaler, seed)] = (drawn.lr, pixels, {})
        fresh = []
        for row in frame.select(*KEY_COLUMNS, "value", "error", "weights_hash").iter_rows(named=True):
            key = (ref.name, model, row["downscaler"], int(row["seed"]))
            entry = self._cache.setdefault(key, (None, None, {}))
            entry[2][row["metric"]] = (row["value"], row["error"], row["weights_hash"])
            fresh.append(key)
        fresh = list(dict.fromkeys(fresh))
        self.computed += len(fresh)
        return fresh

    def _load_cached(self, ref: Any, data: bytes, sha: str, model: str, downscalers: Sequence[str],
                     metrics: Sequence[str], seeds: Sequence[int]) -> None:
        """Samples a previous report computed from this very file, model and code; the HR
        image is decoded and cropped as the worker does (the same two functions)."""
        # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
        from idard.measure.images import crop_to_multiple, decode_image

        for downscaler in downscalers:
            for seed in seeds:
                key = (ref.name, model, downscaler, int(seed))
                if self._cached(*key, metrics):
                    continue
                entry = self.disk.load(sha, key)
                if entry is None or not all(m in entry[2] for m in metrics):
                    continue
                self._cache[key] = entry
                if (ref.name, model) not in self._hr and entry[0] is not None and entry[1] is not None:
                    scale = entry[1].shape[0] // entry[0].shape[0]
                    hr = decode_image(data, name=ref.name, source=ref.location)
                    self._hr[(ref.name, model)] = crop_to_multiple(hr, scale).pixels

    def _cached(self, image: str, model: str, downscaler: str, seed: int, metrics: Sequence[str]) -> bool:
        entry = self._cache.get((image, model, downscaler, seed))
        return entry is not None and all(m in entry[2] for m in metrics)

    def _pair(self, image: str, model: str, downscalers: Sequence[str], metrics: Sequence[str],
              seeds: Sequence[int], stored: pl.DataFrame) -> list[SampleRecord]:
        held = {(r["downscaler"], r["metric"], int(r["seed"])): r for r in stored.iter_rows(named=True)}
        out = []
        for downscaler in downscalers:
            for metric in metrics:
                for seed in seeds:
                    record = held.get((downscaler, metric, int(seed)))
                    entry = self._cache.get((image, model, downscaler, int(seed)))
                    value, error, _ = entry[2].get(metric, (None, None, None)) if entry else (None, None, None)
                    out.append(SampleRecord(image, downscaler, model, metric, int(seed),
                                            None if record is None else record["value"],
                                            None if record is None else record["error"], value, error))
        return out

    def _collect(self, image: str, model: str, downscalers: Sequence[str], metrics: Sequence[str],
                 seeds: Sequence[int], stored: pl.DataFrame, location: str) -> ImageSamples:
        found = ImageSamples(image, self._pair(image, model, downscalers, metrics, seeds, stored),
                             hr=self._hr.get((image, model)), location=location)
        for downscaler in downscalers:
            for seed in seeds:
                lr, sr, values = self._cache.get((image, model, downscaler, int(seed)), (None, None, {}))
                if lr is not None:
                    found.lr[downscaler] = lr
                if sr is not None:
                    found.sr[(downscaler, int(seed))] = sr
        ours = {w for entry in self._cache.values() for *_, w in entry[2].values() if w}
        theirs = set(stored["weights_hash"].drop_nulls().to_list())
        if ours and theirs and not theirs <= ours:
            found.notes.append(f"the model's weights here (SHA-256 {', '.join(sorted(h[:12] for h in ours))}…) are "
                               f"not the records' ({', '.join(sorted(h[:12] for h in theirs))}…): values will differ")
        return found


class SampleCache:
    """Recomputed samples on disk, one file per record key (image, downscaler, model, seed)
    and HR file (SHA-256) and code (version and source fingerprint, so an edit in a dirty
    checkout is a new key): a report built again (another crop, another downscaler)
    computes only what it has not shown before. The pixels are 8-bit, so PNG-
    free ``uint8`` arrays keep them exactly; ``explain`` never reads this cache."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, sha: str, key: tuple[str, str, str, int]) -> Path:
        import json

        # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
        from idard.provenance import process_code_version, source_fingerprint

        text = json.dumps([*key, sha, process_code_version(), source_fingerprint()])
        return self.folder / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.npz"

    def load(self, sha: str, key: tuple[str, str, str, int]) -> tuple | None:
        import json

        path = self._path(sha, key)
        try:
            with np.load(path) as held:
                values = {m: tuple(v) for m, v in json.loads(str(held["values"])).items()}
                lr = held["lr"].astype(np.float32) / np.float32(255) if held["lr"].size else None
                sr = held["sr"].astype(np.float32) / np.float32(255) if held["sr"].size else None
        except (OSError, KeyError, ValueError):
            return None
        return lr, sr, values

    def save(self, sha: str, key: tuple[str, str, str, int], lr: np.ndarray | None, sr: np.ndarray | None,
             values: dict[str, tuple]) -> None:
        import json
        import os

        # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
        from idard.measure.images import to_uint8

        path = self._path(sha, key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
            empty = np.zeros(0, np.uint8)
            np.savez(temporary, lr=to_uint8(lr) if lr is not None else empty,
                     sr=to_uint8(sr) if sr is not None else empty, values=json.dumps(values))
            os.replace(temporary, path)
        except OSError:
            pass  # a cache that cannot be written only costs time


def difference_map(hr: np.ndarray, sr: np.ndarray) -> np.ndarray:
    """|SR - HR| averaged over R, G, B: what the difference tiles and the crop choice show."""
    return np.abs(sr.astype(np.float32) - hr.astype(np.float32)).mean(axis=2)

