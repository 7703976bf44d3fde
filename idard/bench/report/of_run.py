"""A run directory's report, as one function: what ``idard-bench report``, the end of
``idard-bench run`` and the Python API (`idard.ida_rd_table("runs/x")`) all reduce.

Reducing a run directory is more than `build_report` over its records: the keys the run's
suite lists (not every record the folder holds), each key once, and an adaptive run's
decisions (K per group, why sampling stopped, the paired rule's alpha-spent level). Each
surface used to do these steps itself and they drifted (the API showed 95 % paired CIs for
an adaptive run that decided at 98.75 %); here they are done once.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import polars as pl

from idard.bench.report.reduce import Report, build_report, scan_records
from idard.bench.run.adaptive import read_adaptive
from idard.bench.store.records import RecordStore, skipped_part_notes, without_duplicates
from idard.bench.suite.scope import Scope, SuiteKeys, default_scope


@dataclasses.dataclass(frozen=True)
class RunRecords:
    """The records of one run directory that a report reduces, and where they came from."""

    store: RecordStore
    #: The scope's records (lazy): the run's suite keys by default.
    records: pl.LazyFrame
    scope: Scope
    #: Records of the directory outside the scope (deleted images, seeds no longer drawn...).
    left_out: int
    #: The suite the last run used (name and hash, from ``run.json``), empty if unknown.
    suite: dict[str, object]
    #: One line per part the store skipped (damaged, fenced...), for the user to read.
    notes: tuple[str, ...] = ()


def read_run(run_dir: str | Path | RecordStore, *, suite_path: str | Path | None = None,
             all_records: bool = False) -> RunRecords:
    """The records ``report`` reduces: the run's suite keys (as its last run recorded them),
    ``suite_path``'s keys, or every record (``all_records``). Raises `FileNotFoundError`
    naming the directory when it holds no records."""
    if all_records and suite_path is not None:  # before any read: a usage error, whatever the directory holds
        raise ValueError("--all-records and --suite exclude each other: one says which keys to reduce")
    store = run_dir if isinstance(run_dir, RecordStore) else RecordStore(str(run_dir))
    everything = scan_records(store)
    scope = _scope(store, suite_path, all_records)
    try:
        last = json.loads(store.read_text("run.json") or "{}")
    except json.JSONDecodeError:
        last = {}
    suite = {k: last[k] for k in ("suite", "suite_hash") if k in last} if isinstance(last, dict) else {}
    return RunRecords(store=store, records=scope.records(everything), scope=scope,
                      left_out=scope.left_out(everything), suite=suite, notes=tuple(skipped_part_notes(store)))


def _scope(store: RecordStore, suite_path: str | Path | None, all_records: bool) -> Scope:
    if all_records:
        return Scope(None, "--all-records")
    if suite_path is not None:
        # lazy: loading a suite imports the plug-in registry (torch-free, but not needed otherwise)
        from idard.bench.suite.definition import load_suite
        from idard.bench.suite.sources import list_images

        suite = load_suite(Path(suite_path))
        images = [ref.name for ref in list_images(list(suite.images), Path(suite.base_dir))]
        return Scope(SuiteKeys.of(suite, images), f"--suite {suite_path}")
    return default_scope(store)


def default_baseline(records: pl.LazyFrame) -> str | None:
    """Bicubic when the records hold it (the paper's reference downscaler), else none."""
    has_bicubic = records.filter(pl.col("downscaler") == "bicubic").head(1).collect().height > 0
    return "bicubic" if has_bicubic else None


@dataclasses.dataclass(frozen=True)
class RunReport:
    """`report_run`'s result: the reduced `Report` and how many duplicate copies of keys
    the records held (each key is counted once; the user should hear of the copies)."""

    report: Report
    duplicates: int = 0


def report_run(records: pl.LazyFrame, store: RecordStore, *, baseline: str | None, n_boot: int = 1000,
               seed: int = 0, include_unconverged: bool = False, scope: Scope | None = None, left_out: int = 0,
               suite: dict[str, object] | None = None) -> RunReport:
    """``records`` of ``store`` reduced as every surface shows them: each key once, and an
    adaptive run's K per group, stop reasons and paired level (``RUN/adaptive.json``)."""
    records, extra = without_duplicates(records, store)
    if scope is not None and scope.keys is not None:
        suite = {"suite": scope.keys.suite, "suite_hash": scope.keys.suite_hash}
    sampling, paired_ci = read_adaptive(store)
    report = build_report(records, baseline=baseline, n_boot=n_boot, seed=seed, include_unconverged=include_unconverged,
                          scope=scope.describe(left_out) if scope is not None else "the records given",
                          suite=suite, paired_ci=paired_ci)
    return RunReport(dataclasses.replace(report, sampling=sampling), extra)


def report_of_run(run_dir: str | Path | RecordStore, *, baseline: str | None = None, n_boot: int = 1000,
                  seed: int = 0, include_unconverged: bool = False, suite_path: str | Path | None = None,
                  all_records: bool = False) -> RunReport:
    """`read_run` then `report_run`: a run directory's report, as ``idard-bench report``
    computes it (``baseline``: the paired differences' baseline, none by default)."""
    run = read_run(run_dir, suite_path=suite_path, all_records=all_records)
    return report_run(run.records, run.store, baseline=baseline, n_boot=n_boot, seed=seed,
                      include_unconverged=include_unconverged, scope=run.scope, left_out=run.left_out,
                      suite=run.suite)
