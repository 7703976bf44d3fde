"""The jobs behind ``idard-bench run`` and ``status``: plan, execute, reduce.

Kept apart from the CLI so that Python users (and the benchmarks) run a suite the same
way the command line does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import polars as pl
import yaml
from rich.console import Console

import idard
from idard.bench.store.lease import RunLease
from idard.bench.store.compact import compact_if_many
from idard.bench.run.plan import Plan, make_plan
from idard.bench.run.adaptive import read_sampling, run_rounds
from idard.bench.run.progress import RunProgress
from idard.bench.run.runner import RunOptions, RunResult, execute
from idard.bench.store.records import RecordStore, without_duplicates
from idard.bench.suite.scope import (
    SUITE_COPY,
    SUITE_COPY_HEADER,
    SuiteKeys,
    suite_copy_is_idards,
    write_suite_keys,
)
from idard.bench.suite.definition import Suite, SuiteError, suite_document

QUICKSTART = "benchmark/quickstart.yaml"
#: The copy of the quickstart suite inside the package: what an installed wheel runs.
PACKAGED_QUICKSTART = Path(idard.__file__).resolve().parent / "suites" / "quickstart.yaml"


def default_suite() -> Path:
    """``benchmark/quickstart.yaml`` of the working directory, else of this checkout, else
    the copy inside the package (a wheel installed anywhere runs it from any folder)."""
    for candidate in (Path(QUICKSTART), Path(idard.__file__).resolve().parents[1] / QUICKSTART, PACKAGED_QUICKSTART):
        if candidate.is_file():
            return candidate
    raise SuiteError(f"no suite given and no {QUICKSTART} here or beside the idard package: pass --suite FILE")


def suite_keys(suite: Suite, image_names: list[str]) -> pl.Expr:
    """True for records whose key belongs to ``suite`` (the filter ``report`` applies too)."""
    return SuiteKeys.of(suite, image_names).expr()


def suite_records(store: RecordStore, suite: Suite, image_names: list[str]) -> pl.LazyFrame:
    """The store's records that belong to ``suite`` (a run dir may hold several suites')."""
    return store.scan().filter(suite_keys(suite, image_names))


@dataclasses.dataclass
class RunSummary:
    plan: Plan
    result: RunResult | None  # None when there was nothing to compute
    records: pl.LazyFrame  # the suite's records, all of them, after the run
    failing: list[dict[str, object]] = dataclasses.field(default_factory=list)  # images with error records


def _prepare_store(suite: Suite, store: RecordStore, images: list, console: Console, *,
                   retry_errors: bool, recompute_changed: bool) -> dict[str, int]:
    """Before planning: notice old ids, refuse (or drop) records of changed files, drop
    error records to retry. Returns what was dropped, for run.json."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.store.migrate import legacy_notice
    from idard.bench.run.plan import ChangedInputError, changed_images, changed_input_message
    from idard.measure.records import is_error

    notice = legacy_notice(store)
    if notice:
        console.print(notice, highlight=False, markup=False)
    dropped = {"changed_images": 0, "changed_records": 0, "retried_errors": 0}
    changed = changed_images(store, images)
    fixed = [ref.name for ref, _, _, only_errors in changed if only_errors]
    changed = [c for c in changed if not c[3]]
    if changed and not recompute_changed:
        raise ChangedInputError(changed_input_message(store.run_dir, changed))
    if fixed:  # a broken file replaced: its error records are computed again, nothing else is at stake
        dropped["retried_errors"] += store.drop_records(pl.col("image").is_in(fixed) & is_error())
        console.print(f"{len(fixed)} image(s) with error records changed since: computed again", highlight=False)
    if changed:
        names = [ref.name for ref, _, _, _ in changed]
        dropped["changed_images"] = len(names)
        dropped["changed_records"] = store.drop_records(pl.col("image").is_in(names))
        console.print(f"{len(names)} changed image(s): their {dropped['changed_records']} records are recomputed",
                      highlight=False)
    if retry_errors:
        mine = suite_keys(suite, [ref.name for ref in images])
        dropped["retried_errors"] += store.drop_records(mine & is_error())
        console.print(f"--retry-errors: {dropped['retried_errors']} error record(s) are computed again", highlight=False)
    return dropped


def failing_images(records: pl.LazyFrame) -> list[dict[str, object]]:
    """Every image with error records: how many, and its first error message."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.records import is_error

    frame = (records.filter(is_error()).group_by("image")
             .agg(records=pl.len(), error=pl.col("error").sort().first()).sort("image").collect())
    return frame.to_dicts()


def _history(store: RecordStore) -> list[dict[str, object]]:
    """The entries of earlier runs from ``run.json`` (an idard 0.1.0 file is one entry)."""
    text = store.read_text("run.json")
    if not text:
        return []
    try:
        old = json.loads(text)
    except json.JSONDecodeError:
        return []
    if isinstance(old, dict) and isinstance(old.get("runs"), list):
        return old["runs"]
    return [old] if isinstance(old, dict) else []


def run_suite(suite: Suite, out: str | Path, options: RunOptions, console: Console, *,
              lease: RunLease | None = None, retry_errors: bool = False,
              recompute_changed: bool = False) -> RunSummary:
    """Compute what ``out`` lacks of ``suite``; everything already there is kept as is.

    The run holds the run directory's lease from before it plans until its last write, so
    a second run on the same directory stops at once, naming this one. A caller that took
    the lease already (the CLI, before its slow imports) passes it as ``lease``.
    ``retry_errors`` computes error records again (a broken image replaced by a good one);
    ``recompute_changed`` replaces the records of images whose file changed, which are
    otherwise refused with `ChangedInputError`.
    """
    flags = {"retry_errors": retry_errors, "recompute_changed": recompute_changed}
    if lease is not None and lease.held:
        return _run_holding_lease(suite, lease.store, options, console, **flags)
    store = RecordStore(out)
    with RunLease(store).hold():
        return _run_holding_lease(suite, store, options, console, **flags)


def _run_holding_lease(suite: Suite, store: RecordStore, options: RunOptions, console: Console, *,
                       retry_errors: bool, recompute_changed: bool) -> RunSummary:
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.sources import scan_sources
    from idard.provenance import code_version, library_versions, lpips_trunks

    for path, why in store.quarantine():
        console.print(f"moved unreadable part to {path} ({why}); its keys are computed again", highlight=False)
    removed = store.remove_partials()
    if removed:
        console.print(f"removed {removed} partial file(s) left by an interrupted run", highlight=False)
    listing = scan_sources(list(suite.images), Path(suite.base_dir))
    images = listing.refs
    dropped = _prepare_store(suite, store, images, console, retry_errors=retry_errors,
                             recompute_changed=recompute_changed)
    plan = make_plan(suite, store, images, listing.skipped)
    for line in plan_notes(plan):
        console.print(line, highlight=False)
    write_suite_copy(store, suite, console)
    write_suite_keys(store, SuiteKeys.of(suite, [ref.name for ref in plan.images]))  # what `report` reduces
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result = None
    if suite.sampling is not None:  # seeds in rounds until each group's target is met
        result, plan = run_rounds(suite, store, plan, options, console)
    elif plan.units:
        result = execute(plan, store, options, RunProgress(console))
    if result is not None:
        compacted = compact_if_many(store)  # thousands of small parts slow every later plan and report
        if compacted is not None:
            console.print(f"compacted {compacted.parts_before} record parts into {compacted.parts_after}",
                          highlight=False)
    if not plan.todo_tasks:
        console.print(f"nothing to compute: all {plan.total_tasks} records of suite {suite.name!r} "
                      f"are in {store.run_dir}", highlight=False)
    records = suite_records(store, suite, [ref.name for ref in plan.images])
    failing = failing_images(records)
    entry = {
        "suite": suite.name, "suite_hash": suite.digest(), "code_version": code_version(),
        "started_at": started, "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "total_tasks": plan.total_tasks, "already_done": plan.done_tasks,
        "computed": result.computed_tasks if result else 0,
        "seconds": round(result.seconds, 2) if result else 0.0,
        "workers": result.workers if result else [],
        "options": {"retry_errors": retry_errors, "recompute_changed": recompute_changed, **dropped},
        "libraries": library_versions(), "lpips_trunks": lpips_trunks(list(suite.metrics)),
        "failing_images": failing,
    }
    record_run(store, entry)
    return RunSummary(plan, result, records, failing)


def _summary(store: RecordStore) -> dict[str, object] | None:
    """The top-level summary of ``run.json`` (its entry less the history), if any."""
    try:
        old = json.loads(store.read_text("run.json") or "null")
    except json.JSONDecodeError:
        return None
    return {k: v for k, v in old.items() if k != "runs"} if isinstance(old, dict) else None


def record_run(store: RecordStore, entry: dict[str, object]) -> None:
    """Append ``entry`` to ``run.json``'s history; it becomes the top-level summary unless
    it computed nothing and the summary there is of a run that did: the summary says
    what made the records, and a no-op re-run made none."""
    summary = _summary(store)
    keep = summary is not None and not entry.get("computed") and bool(summary.get("computed"))
    runs = [*_history(store), entry]
    store.write_text("run.json", json.dumps({**(summary if keep else entry), "runs": runs}, indent=2,
                                            default=str) + "\n")


def suite_copy_name(store: RecordStore, suite: Suite) -> str:
    """``suite.yaml``, unless a file of that name there is not idard's copy (e.g. ``--out``
    is the suite's own folder): the user's file is never overwritten."""
    if not store.remote and Path(suite.path).resolve() == Path(store._root) / SUITE_COPY:
        return "suite.run.yaml"
    return "suite.run.yaml" if suite_copy_is_idards(store) is False else SUITE_COPY


def write_suite_copy(store: RecordStore, suite: Suite, console: Console) -> str:
    """Write the run directory's loadable copy of ``suite`` (never over the user's file)."""
    copy = suite_copy_name(store, suite)
    store.write_text(copy, SUITE_COPY_HEADER + yaml.safe_dump(suite_document(suite), sort_keys=False))
    if copy != SUITE_COPY:
        console.print(f"{store.run_dir}/{SUITE_COPY} is not a copy written by idard (the suite itself?): "
                      f"left as is; the run's copy of the suite is {copy}", highlight=False)
    return copy


def plan_notes(plan: Plan) -> list[str]:
    """What the user should know about a plan's images: entries skipped, and why."""
    return [f"skipped {count} entr{'y' if count == 1 else 'ies'} of the image sources: {why} (e.g. {example})"
            for why, (count, example) in sorted(plan.skipped.items())]


def suite_status(suite: Suite, out: str | Path) -> tuple[Plan, pl.DataFrame]:
    """Done and missing records per (model, downscaler) for a suite and a run dir: errors
    (the image or unit failed) and non-finite samples (the model's) counted apart."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.records import is_error

    store = RecordStore(out)
    plan = make_plan(suite, store)
    records, _ = without_duplicates(suite_records(store, suite, [ref.name for ref in plan.images]))
    held = (
        records
        .group_by("model", "downscaler")
        .agg(done=pl.len(), errors=is_error().sum(),
             nonfinite=(~pl.col("finite").fill_null(False) & ~is_error()).sum())
        .collect()
    )
    grid = pl.DataFrame(
        [(m, d) for m in suite.models for d in suite.downscalers], schema=["model", "downscaler"], orient="row"
    )
    seeds = _seeds_per_pair(suite, store, grid)
    per_seed = len(plan.images) * len(suite.metrics)
    table = (
        grid.join(held, on=["model", "downscaler"], how="left")
        .join(seeds, on=["model", "downscaler"], how="left")
        .with_columns(pl.col("done", "errors", "nonfinite").fill_null(0).cast(pl.Int64))
        .with_columns(missing=(pl.col("seeds") * per_seed - pl.col("done")).clip(lower_bound=0))
    )
    return plan, table


def _seeds_per_pair(suite: Suite, store: RecordStore, grid: pl.DataFrame) -> pl.DataFrame:
    """The seeds each (model, downscaler) is to hold, and (adaptive suites) its ``sampling``
    state: a pair whose sampling stopped holds the K it stopped at, one still sampling (or
    not started) at most the rule's max, so ``missing`` is never seeds no look will draw."""
    if suite.sampling is None:
        return grid.with_columns(seeds=pl.lit(len(suite.seeds), dtype=pl.Int64))
    decided = read_sampling(store)
    pending = grid.with_columns(seeds=pl.lit(suite.sampling.max, dtype=pl.Int64),
                                sampling=pl.lit(f"sampling (at most K={suite.sampling.max})"))
    if decided is None:
        return pending
    frame, _ = decided
    stopped = (frame.group_by("model", "downscaler")
               .agg(seeds=pl.col("k_drawn").max(), sampling=pl.col("sampling").unique().sort().str.join("; ")))
    return pending.join(stopped, on=["model", "downscaler"], how="left").select(
        "model", "downscaler", pl.coalesce("seeds_right", "seeds").alias("seeds"),
        pl.coalesce("sampling_right", "sampling").alias("sampling"))

