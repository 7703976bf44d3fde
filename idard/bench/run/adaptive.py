"""Adaptive sampling on Ray: draw seeds in rounds until each group's target is met.

A suite with ``samples: {min: 4, max: 64, ci_halfwidth: 0.002}`` is run look by look
(`SamplingRule.looks`: K = 4, 8, 16, 32, 64). At each look the groups still sampling get
the seeds below K that the store lacks (the ordinary planner on a suite narrowed to them:
keys, records and resume are those of a fixed-K suite), then `idard.measure.stopping.decide`
says which of them stop. Seeds are always the suite's first K, so an adaptive run that
stops every group at K holds exactly the records of the same suite with ``samples: K``.

What is sampled is a (downscaler, model) pair: one SR sample is scored by every metric,
so a pair draws more seeds while any of its groups (metric [x scale]) continues. Under the
paired rule the baseline is drawn while any downscaler compared with it is. The worker
pool is started once and kept across rounds (models load once per actor).

Decisions are derived from the records (each look reads only seeds below its K), so an
interrupted run re-run computes nothing it holds and reaches the same decisions. They are
written to ``RUN/adaptive.json`` through the record store (so on ``s3://`` too) and read
by the report (`read_sampling`): K per group and why sampling stopped.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import polars as pl

from idard.bench.store import RecordStore
from idard.bench.suite.scope import SuiteKeys
from idard.measure import stopping

if TYPE_CHECKING:  # lazy: the planner imports the model registry; `report` reads decisions without it
    from rich.console import Console

    from idard.bench.run.plan import Plan
    from idard.bench.suite import Suite

#: Beside the records: the rule, every look and each group's decision.
ADAPTIVE_FILE = "adaptive.json"
#: The decision of a paired rule's baseline: it is sampled as long as what it is compared with.
BASELINE = "baseline"
Pair = tuple[str, str]  # (downscaler, model): what one SR sample is drawn for


def _round_plan(suite: Suite, store: RecordStore, plan: Plan, active: set[Pair], k: int) -> Plan:
    """The keys of the ``active`` pairs at seeds below the K-th that ``store`` lacks, as
    one plan of ``suite`` (records carry the suite's own hash)."""
    from idard.bench.run.plan import Plan, make_plan  # lazy: start-up time of `report`

    units, total, done = [], 0, 0
    for model in suite.models:
        downscalers = tuple(d for d in suite.downscalers if (d, model) in active)
        if not downscalers:
            continue
        narrowed = dataclasses.replace(suite, models=(model,), downscalers=downscalers, seeds=suite.seeds[:k])
        part = make_plan(narrowed, store, plan.images, plan.skipped)
        units += part.units
        total += part.total_tasks
        done += part.done_tasks
    return Plan(suite=suite, images=plan.images, units=units, total_tasks=total, done_tasks=done,
                skipped=plan.skipped)


def _look_records(store: RecordStore, suite: Suite, plan: Plan, active: set[Pair], k: int) -> pl.LazyFrame:
    """The suite's records of the ``active`` pairs with seeds below the look's K-th."""
    pairs = pl.DataFrame(sorted(active), schema=["downscaler", "model"], orient="row")
    return (store.scan().filter(SuiteKeys.of(suite, [ref.name for ref in plan.images]).expr())
            .filter(pl.col("seed").is_in(list(suite.seeds[:k])))
            .join(pairs.lazy(), on=["downscaler", "model"], how="semi"))


def _still_active(decisions: pl.DataFrame, rule: stopping.SamplingRule) -> set[Pair]:
    """Pairs with a group that continues, plus (paired rule) the baseline of their model."""
    going = {(d, m) for d, m in decisions.filter(~stopping.stopped(decisions)).select("downscaler", "model").rows()}
    if rule.paired:
        going |= {(rule.baseline, m) for _, m in going}
    return going


def _merge(results: list[Any]) -> Any:
    """One `RunResult` for all rounds (None when no round computed anything)."""
    from idard.bench.run.runner import RunResult  # lazy: start-up time of `report`

    if not results:
        return None
    return RunResult(computed_tasks=sum(r.computed_tasks for r in results),
                     written_records=sum(r.written_records for r in results),
                     failed_units=sum(r.failed_units for r in results),
                     seconds=sum(r.seconds for r in results), workers=results[-1].workers)


def run_rounds(suite: Suite, store: RecordStore, plan: Plan, options: Any, console: Console,
               n_boot: int = 1000) -> tuple[Any, Plan]:
    """Run ``suite`` (which has ``sampling``) look by look; returns the merged `RunResult`
    (None when nothing was computed) and a plan of the keys the looks asked for."""
    import ray

    from idard.bench.run.plan import Plan  # lazy: start-up time of `report`
    from idard.bench.run.progress import RunProgress
    from idard.bench.run.runner import execute, start_workers

    rule = suite.sampling
    assert rule is not None
    active: set[Pair] = {(d, m) for m in suite.models for d in suite.downscalers}
    final: dict[tuple, dict[str, Any]] = {}
    drawn: dict[Pair, int] = {}
    rounds, results, actors = [], [], None
    try:
        for look, k in enumerate(rule.looks(), start=1):
            todo = _round_plan(suite, store, plan, active, k)
            if todo.units:
                if actors is None:
                    actors = start_workers(todo, options)
                results.append(execute(todo, store, options, RunProgress(console), actors=actors))
            for pair in active:
                drawn[pair] = k
            decisions = stopping.decide(_look_records(store, suite, plan, active, k), rule, k, n_boot=n_boot)
            for row in decisions.iter_rows(named=True):
                if row["decision"] != stopping.CONTINUE:
                    final[_group(row)] = {**row, "look": look}
            rounds.append({"look": look, "k": k, "pairs": len(active), "computed": todo.todo_tasks,
                           "decisions": dict(decisions.group_by("decision").len().rows())})
            console.print(_look_line(look, k, decisions, todo.todo_tasks), highlight=False)
            active = _still_active(decisions, rule)
            if not active:
                break
    finally:
        if actors is not None:
            for actor in actors:
                ray.kill(actor, no_restart=True)
    write_sampling(store, rule, rounds, _groups(final, drawn, rule, suite.metrics))
    held = sum(k for k in drawn.values()) * len(plan.images) * len(suite.metrics)
    computed = sum(r["computed"] for r in rounds)
    return _merge(results), Plan(suite=suite, images=plan.images, units=[], total_tasks=held,
                                 done_tasks=held - computed, skipped=plan.skipped)


def _group(row: dict[str, Any]) -> tuple:
    return tuple(row.get(c) for c in stopping.GROUP_KEYS)


def _look_line(look: int, k: int, decisions: pl.DataFrame, computed: int) -> str:
    counts = dict(decisions.group_by("decision").len().rows())
    said = ", ".join(f"{counts[d]} {d}" for d in stopping.DECISIONS if d in counts)
    return f"adaptive sampling: look {look} at K={k}: {computed} records computed; groups: {said or 'none'}"


def _groups(final: dict[tuple, dict[str, Any]], drawn: dict[Pair, int], rule: stopping.SamplingRule,
            metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each group's decision with the seeds its pair ended with (``k_drawn``); under the
    paired rule the baseline's pairs too, as `BASELINE`."""
    out = [{**row, "k_drawn": drawn[(row["downscaler"], row["model"])]} for row in final.values()]
    if rule.paired:
        out += [{"downscaler": d, "model": m, "metric": metric, "decision": BASELINE, "k": k, "k_drawn": k}
                for (d, m), k in drawn.items() if d == rule.baseline for metric in metrics]
    return out


def write_sampling(store: RecordStore, rule: stopping.SamplingRule, rounds: list[dict], groups: list[dict]) -> None:
    """``RUN/adaptive.json``: the rule, its level, each look and each group's decision."""
    document = {"rule": rule.to_dict(), "level": rule.level, "looks": list(rule.looks()),
                "describe": stopping.describe(rule), "rounds": rounds, "groups": groups}
    store.write_text(ADAPTIVE_FILE, json.dumps(document, indent=1, default=str) + "\n")


def _document(store: RecordStore) -> dict[str, Any] | None:
    """``RUN/adaptive.json`` as written by `write_sampling`; None for a fixed-K run or a damaged file."""
    try:
        document = json.loads(store.read_text(ADAPTIVE_FILE) or "null")
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _rule(document: dict[str, Any] | None) -> stopping.SamplingRule | None:
    """The rule the run kept (None when unreadable): levels and wording derive from it."""
    try:
        return stopping.SamplingRule(**document["rule"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def read_adaptive(store: RecordStore, nominal: float = 0.95) -> tuple[tuple[pl.DataFrame, str] | None, float]:
    """`read_sampling` and `paired_level` of one read of ``RUN/adaptive.json`` (the report needs both)."""
    document = _document(store)
    return _sampling(document), _paired_level(document, nominal)


def paired_level(store: RecordStore, nominal: float = 0.95) -> float:
    """The level of the paired intervals a run's tables show: an adaptive paired rule's
    alpha-spent level (its decisions were taken at it), else ``nominal``."""
    return _paired_level(_document(store), nominal)


def _paired_level(document: dict[str, Any] | None, nominal: float) -> float:
    rule = _rule(document)
    return rule.level if rule is not None and rule.paired else nominal


def read_sampling(store: RecordStore) -> tuple[pl.DataFrame, str] | None:
    """The groups' decisions of ``RUN/adaptive.json`` (downscaler, model, [metric, scale,]
    k_drawn, sampling: the reason, with the K it was decided at when the pair drew more)
    and the rule's one-line description; None for a fixed-K run (or a damaged file)."""
    return _sampling(_document(store))


def _sampling(document: dict[str, Any] | None) -> tuple[pl.DataFrame, str] | None:
    if document is None or not document.get("groups"):
        return None
    rows = []
    for group in document["groups"]:
        reason = str(group["decision"])
        if group.get("k") is not None and group["k"] != group["k_drawn"]:
            reason += f" at K={group['k']}"
        rows.append({"downscaler": group["downscaler"], "model": group["model"], "metric": group.get("metric"),
                     "scale": group.get("scale"), "k_drawn": int(group["k_drawn"]), "sampling": reason})
    frame = pl.DataFrame(rows, schema={"downscaler": pl.String, "model": pl.String, "metric": pl.String,
                                       "scale": pl.Int64, "k_drawn": pl.Int64, "sampling": pl.String})
    rule = _rule(document)
    # worded from the rule the run kept, so every table says the same of it
    return frame, stopping.describe(rule) if rule is not None else str(document.get("describe", ""))
