"""A suite's checks: the paper's qualitative findings, written as data and evaluated on a run.

As lm-evaluation-harness keeps a task's metrics and filters in its YAML, a suite keeps the
finding it reproduces in a ``checks:`` list, one mapping per check with its kind as the
only key. The kinds are registered evaluators, so a new experiment needs a new YAML file,
not new code::

    checks:
      - spearman: {family: Gauss. blur, template: "blur(sigma={})", parameter: [1, 2, 3], sign: +1}
      - spearman: {family: Contrast dec., downscalers: [contrast(factor=0.75), ...], parameter: [...], sign: -1}
      - ranks_last: nearest                       # loses most among all downscalers of the table
      - ranks_last: {downscaler: nearest, among: [bicubic, bilinear, lanczos]}
      - ranks_above: {a: nearest, b: [bicubic, bilinear]}   # every a loses more than every b
      - spread_below: {model: srflow-tiny-4x(heat=0), max_std_over_seeds: 0.001}
      - spread_above: {model: srflow-tiny-4x, min_std_over_seeds: 0.005}

Common optional keys restrict a check to a part of the table: ``model``, ``metric`` (both
specs, compared by canonical id) and ``scale``; a check is evaluated once per remaining
(model, metric, scale) group and passes when it passes in every group. "Loses more" follows
the metric's direction: a higher LPIPS, a lower PSNR or SSIM.

`parse_checks` validates the list against the suite's downscalers and models when the suite
is loaded (errors name the file and the key, e.g. ``checks[2].ranks_above.b``);
`evaluate_checks` runs them on a reduced IDA-RD table (and, for the spread checks, the
records), and `render_checks` prints one line per check, with Spearman checks summarised
the way the paper's tables are read ("Spearman rho per family: +1 +1 +1 -1 -1, paper's
signs: yes").
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl

from idard.bench.suite.safe_yaml import MAX_YAML_BYTES, checked_text, clip, load_yaml, quote, read_bounded, yaml_error_line
from idard.measure.registry import SpecError


class CheckError(ValueError):
    """A check that cannot be evaluated as written; the message names the key, in a few
    hundred characters whatever the values it quotes."""

    def __init__(self, message: str) -> None:
        super().__init__(clip(message))


@dataclasses.dataclass(frozen=True)
class Check:
    """One validated check: its kind, its parameters, and where it was written."""

    kind: str
    params: Mapping[str, Any]
    where: str  # "checks[3]", for messages

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: dict(self.params)}


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one run: ``passed`` is None when it could not be decided
    (a downscaler with no finite sample, a group missing from the run)."""

    kind: str
    label: str
    passed: bool | None
    detail: str
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "yes", False: "NO", None: "undecided"}[self.passed]

    def line(self) -> str:
        return f"{self.label}: {self.detail} -> {self.verdict}"


# ------------------------------------------------------------------------ identifiers

def _canonical(spec: str, kind: str) -> str:
    """A downscaler or model spec as it appears in records; unregistered names stay as given
    (a report can then still be read on a machine that lacks a plug-in)."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.models import MODELS

    registry = DOWNSCALERS if kind == "downscaler" else MODELS
    try:
        return registry.create(str(spec)).id
    except Exception:  # noqa: BLE001 - e.g. a model whose weights are not on this machine
        return str(spec).strip()


def _names(value: Any, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise CheckError(f"{where}: must be a downscaler spec or a non-empty list of them, got {quote(value)}")
    return [v.strip() for v in items]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckError(f"{where}: must be a number, got {quote(value)}")
    return float(value)


# ------------------------------------------------------------------------ the kinds

@dataclasses.dataclass(frozen=True)
class Kind:
    """A check kind: how to validate its parameters and how to evaluate them on a run."""

    name: str
    summary: str
    normalise: Callable[[Any, str], dict[str, Any]]  # raw YAML value, where -> params
    downscalers: Callable[[Mapping[str, Any]], list[str]]  # specs it names (validated against the suite)
    evaluate: Callable[["Context", Mapping[str, Any]], tuple[bool | None, str, dict[str, Any]]]
    label: Callable[[Mapping[str, Any]], str]


KINDS: dict[str, Kind] = {}
_FILTERS = ("model", "metric", "scale")


def register(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


def _params(raw: Any, where: str, allowed: Sequence[str], required: Sequence[str]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise CheckError(f"{where}: must be a mapping with keys {', '.join(allowed)}, got {quote(raw)}")
    unknown = sorted(set(raw) - set(allowed) - set(_FILTERS))
    if unknown:
        raise CheckError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join([*allowed, *_FILTERS])}")
    for key in required:
        if key not in raw:
            raise CheckError(f"{where}.{key}: is required")
    params = dict(raw)
    if "scale" in params and (not isinstance(params["scale"], int) or isinstance(params["scale"], bool)):
        raise CheckError(f"{where}.scale: must be an integer, got {quote(params['scale'])}")
    for key in ("model", "metric"):
        if key in params and not (isinstance(params[key], str) and params[key].strip()):
            raise CheckError(f"{where}.{key}: must be a spec string, got {quote(params[key])}")
    return params


# spearman ---------------------------------------------------------------------------

def _spearman_params(raw: Any, where: str) -> dict[str, Any]:
    p = _params(raw, where, ("family", "template", "downscalers", "parameter", "sign", "min_abs"),
                ("parameter", "sign"))
    if ("template" in p) == ("downscalers" in p):
        raise CheckError(f"{where}: give either template (a spec with one {{}}) or downscalers, not both or neither")
    values = p["parameter"]
    if not isinstance(values, list) or len(values) < 2:
        raise CheckError(f"{where}.parameter: must be a list of at least two numbers, got {quote(values)}")
    p["parameter"] = [_number(v, f"{where}.parameter") for v in values]
    if "template" in p:
        template = p.pop("template")
        p["downscalers"] = [_fill(template, v, f"{where}.template") for v in values]
    p["downscalers"] = _names(p["downscalers"], f"{where}.downscalers")
    if len(p["downscalers"]) != len(p["parameter"]):
        raise CheckError(f"{where}: {len(p['downscalers'])} downscalers but {len(p['parameter'])} parameter values")
    if p["sign"] not in (1, -1) or isinstance(p["sign"], bool):
        raise CheckError(f"{where}.sign: must be +1 or -1, got {quote(p['sign'])}")
    p["min_abs"] = _number(p.get("min_abs", 1.0), f"{where}.min_abs")
    if not 0 < p["min_abs"] <= 1:
        raise CheckError(f"{where}.min_abs: must be in (0, 1], got {p['min_abs']}")
    p.setdefault("family", p["downscalers"][0].split("(")[0])
    return p


def _fill(template: Any, value: float, where: str) -> str:
    """``template`` with its one ``{}`` replaced by ``value``. Not ``str.format``: any other
    brace would be a field it reads (``{x}``, ``{0}``, ``{.__class__}``) and fails on
    with its own exception, or an attribute of the value it would write out."""
    rest = template.replace("{}", "", 1) if isinstance(template, str) else "{"
    if "{" in rest or "}" in rest or rest == template:
        raise CheckError(f"{where}: must be a spec with exactly one {{}} and no other braces, got {quote(template)}")
    return template.replace("{}", str(_plain(value)))


def _plain(value: float) -> Any:
    return int(value) if float(value).is_integer() and abs(value) >= 1 else value


def _spearman(ctx: "Context", p: Mapping[str, Any]) -> tuple[bool | None, str, dict[str, Any]]:
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.statistics import spearman_ladder

    ids = {ctx.downscaler(d): v for d, v in zip(p["downscalers"], p["parameter"])}
    rhos: dict[str, float] = {}
    for group, table in ctx.groups(p):
        present = table.filter(pl.col("downscaler").is_in(list(ids)) & pl.col("ida_rd").is_not_null())
        if present["downscaler"].n_unique() < len(ids):
            rhos[group] = math.nan  # a rung without a mean cannot pass a ladder
            continue
        rho = spearman_ladder(table, ids)
        rhos[group] = -rho if ctx.higher_is_better(table) else rho  # rho of information lost
    if not rhos or any(math.isnan(r) for r in rhos.values()):
        return None, _rho_text(rhos), {"rho": rhos}
    ok = all(r * p["sign"] >= p["min_abs"] - 1e-12 for r in rhos.values())
    return ok, _rho_text(rhos), {"rho": rhos}


def _rho_text(rhos: Mapping[str, float]) -> str:
    if not rhos:
        return "no rung in the run"
    return ", ".join(f"rho {'—' if math.isnan(r) else f'{r:+.3f}'}" + (f" ({g})" if len(rhos) > 1 else "")
                     for g, r in rhos.items())


register(Kind(
    "spearman", "IDA-RD rises along a degradation ladder (Spearman rho of parameter vs IDA-RD has the sign)",
    _spearman_params, lambda p: list(p["downscalers"]), _spearman,
    lambda p: f"Spearman {p['family']} ({', '.join(map(str, (_plain(v) for v in p['parameter'])))}), "
              f"paper's sign {p['sign']:+d}",
))


# ranks_last / ranks_above --------------------------------------------------------------

def _ranks_last_params(raw: Any, where: str) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = {"downscaler": raw}
    p = _params(raw, where, ("downscaler", "among"), ("downscaler",))
    p["downscaler"] = _names(p["downscaler"], f"{where}.downscaler")[0]
    if "among" in p:
        p["among"] = _names(p["among"], f"{where}.among")
    return p


def _ranks_last(ctx: "Context", p: Mapping[str, Any]) -> tuple[bool | None, str, dict[str, Any]]:
    target = ctx.downscaler(p["downscaler"])
    among = [ctx.downscaler(d) for d in p.get("among", [])]
    verdicts, texts, worst = [], [], {}
    for group, table in ctx.groups(p):
        rows = table if not among else table.filter(pl.col("downscaler").is_in([*among, target]))
        values = ctx.losses(rows)
        if target not in values or len(values) < 2:
            verdicts.append(None)
            continue
        last = max(values, key=values.get)
        worst[group] = last
        verdicts.append(last == target)
        texts.append(f"most lost: {last} ({ctx.sign(table) * values[last]:.4f})" + (f" in {group}" if ctx.many(p) else ""))
    return _all(verdicts), "; ".join(texts) or f"{target} has no finite mean", {"last": worst}


def _ranks_above_params(raw: Any, where: str) -> dict[str, Any]:
    p = _params(raw, where, ("a", "b"), ("a", "b"))
    p["a"], p["b"] = _names(p["a"], f"{where}.a"), _names(p["b"], f"{where}.b")
    return p


def _ranks_above(ctx: "Context", p: Mapping[str, Any]) -> tuple[bool | None, str, dict[str, Any]]:
    a_ids, b_ids = [ctx.downscaler(d) for d in p["a"]], [ctx.downscaler(d) for d in p["b"]]
    verdicts, texts = [], []
    for group, table in ctx.groups(p):
        values = ctx.losses(table)
        if not all(d in values for d in a_ids + b_ids):
            verdicts.append(None)
            texts.append("missing " + ", ".join(d for d in a_ids + b_ids if d not in values))
            continue
        lowest_a, highest_b = min(values[d] for d in a_ids), max(values[d] for d in b_ids)
        verdicts.append(lowest_a > highest_b)
        sign = ctx.sign(table)  # values as the metric reads them (PSNR in dB, not negated)
        texts.append(f"best of a {sign * lowest_a:.4f} vs worst of b {sign * highest_b:.4f}"
                     + (f" in {group}" if ctx.many(p) else ""))
    return _all(verdicts), "; ".join(texts), {}


register(Kind("ranks_last", "a downscaler loses the most information (among all, or among a list)",
              _ranks_last_params, lambda p: [p["downscaler"], *p.get("among", [])], _ranks_last,
              lambda p: f"{p['downscaler']} ranks last" + (f" among {', '.join(p['among'])}" if "among" in p else "")))
register(Kind("ranks_above", "every downscaler in a loses more information than every one in b",
              _ranks_above_params, lambda p: [*p["a"], *p["b"]], _ranks_above,
              lambda p: f"{', '.join(p['a'])} lose(s) more than {', '.join(p['b'])}"))


# spread over seeds -------------------------------------------------------------------------

def _spread_params(bound: str) -> Callable[[Any, str], dict[str, Any]]:
    def normalise(raw: Any, where: str) -> dict[str, Any]:
        p = _params(raw, where, ("model", bound), ("model", bound))
        p[bound] = _number(p[bound], f"{where}.{bound}")
        if p[bound] < 0:
            raise CheckError(f"{where}.{bound}: must be >= 0, got {p[bound]}")
        return p
    return normalise


def _spread(bound: str) -> Callable[["Context", Mapping[str, Any]], tuple[bool | None, str, dict[str, Any]]]:
    def evaluate(ctx: "Context", p: Mapping[str, Any]) -> tuple[bool | None, str, dict[str, Any]]:
        spread = ctx.seed_spread(ctx.model(p["model"]), p.get("metric"))
        if spread is None:
            return None, f"no (image, downscaler) of {p['model']} has two finite samples", {}
        ok = spread <= p[bound] if bound == "max_std_over_seeds" else spread >= p[bound]
        return ok, f"mean std over seeds {spread:.2e}", {"std_over_seeds": spread}
    return evaluate


register(Kind("spread_below", "a model's samples barely vary with the seed (a deterministic decoder)",
              _spread_params("max_std_over_seeds"), lambda p: [], _spread("max_std_over_seeds"),
              lambda p: f"{p['model']} spread over seeds <= {p['max_std_over_seeds']:g}"))
register(Kind("spread_above", "a model's samples vary with the seed (a stochastic decoder)",
              _spread_params("min_std_over_seeds"), lambda p: [], _spread("min_std_over_seeds"),
              lambda p: f"{p['model']} spread over seeds >= {p['min_std_over_seeds']:g}"))


def _all(verdicts: list[bool | None]) -> bool | None:
    if not verdicts or any(v is None for v in verdicts):
        return None if not any(v is False for v in verdicts) else False
    return all(verdicts)


# ------------------------------------------------------------------------ parsing

def parse_checks(raw: Any, path: str, downscalers: Sequence[str] = (), models: Sequence[str] = (),
                 canonical: Callable[[str, str], str] | None = None) -> tuple[Check, ...]:
    """Validate a suite's ``checks:`` list; every downscaler and model a check names must be
    in the suite (compared by canonical id). Errors name ``path`` and the key."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CheckError(f"{path}: key 'checks': must be a list of checks, each a mapping "
                         f"{{kind: parameters}}; kinds: {', '.join(KINDS)}")
    canonical = canonical or _canonical
    known_ds = set(downscalers)
    known_models = set(models)
    checks = []
    for i, item in enumerate(raw):
        where = f"checks[{i}]"
        if not isinstance(item, Mapping) or len(item) != 1:
            raise CheckError(f"{path}: key {where!r}: must be a mapping with one key, the check's kind "
                             f"({', '.join(KINDS)}), got {quote(item)}")
        (name, value), = item.items()
        if name not in KINDS:
            raise CheckError(f"{path}: key {where!r}: unknown check kind {quote(name)}; kinds: {', '.join(KINDS)}")
        kind = KINDS[name]
        try:
            params = kind.normalise(value, f"{where}.{name}")
        except CheckError as exc:  # "<key>: <problem>" from the kind -> "<file>: key '<key>': <problem>"
            key, _, problem = str(exc).partition(": ")
            raise CheckError(f"{path}: key {key!r}: {problem}") from None
        if known_ds:
            for spec in kind.downscalers(params):
                if canonical(spec, "downscaler") not in known_ds:
                    raise CheckError(f"{path}: key '{where}.{name}': downscaler {quote(spec)} is not in the suite's "
                                     f"downscalers ({', '.join(sorted(known_ds))})")
        if known_models and "model" in params:
            model = canonical(params["model"], "model")
            if model not in known_models:
                raise CheckError(f"{path}: key '{where}.{name}.model': {quote(params['model'])} is not one of the "
                                 f"suite's models ({', '.join(sorted(known_models))})")
            params["model"] = model  # as records name it (weights paths resolved against the suite)
        checks.append(Check(name, params, where))
    return tuple(checks)


# ------------------------------------------------------------------------ evaluation

@dataclasses.dataclass
class Context:
    """What checks read: the reduced table, and the records for checks over seeds."""

    table: pl.DataFrame
    records: pl.LazyFrame | None = None

    def downscaler(self, spec: str) -> str:
        return _canonical(spec, "downscaler")

    def model(self, spec: str) -> str:
        return _canonical(spec, "model")

    def _filtered(self, p: Mapping[str, Any]) -> pl.DataFrame:
        table = self.table
        if "model" in p:
            table = table.filter(pl.col("model") == self.model(p["model"]))
        if "metric" in p:
            table = table.filter(pl.col("metric") == p["metric"])
        if "scale" in p and "scale" in table.columns:
            table = table.filter(pl.col("scale") == p["scale"])
        return table

    def many(self, p: Mapping[str, Any]) -> bool:
        return len(list(self.groups(p))) > 1

    def groups(self, p: Mapping[str, Any]):
        """(label, table) per (model, metric, scale) left after the check's filters."""
        table = self._filtered(p)
        keys = [k for k in ("model", "metric", "scale") if k in table.columns]
        for key, part in table.group_by(keys, maintain_order=True):
            yield " / ".join(f"x{v}" if k == "scale" else str(v) for k, v in zip(keys, key)), part

    @staticmethod
    def higher_is_better(table: pl.DataFrame) -> bool:
        # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
        from idard.measure.distortions import DISTORTIONS

        metric = table["metric"][0] if table.height else "lpips-alex"
        try:
            return bool(type(DISTORTIONS.create(metric)).higher_is_better)
        except SpecError:
            return False

    def sign(self, table: pl.DataFrame) -> float:
        """-1 for metrics where higher is better (their loss is the negated value), else 1."""
        return -1.0 if self.higher_is_better(table) else 1.0

    def losses(self, table: pl.DataFrame) -> dict[str, float]:
        """downscaler -> information lost in one group (IDA-RD, sign-flipped for metrics
        where higher is better), finite means only."""
        sign = self.sign(table)
        return {d: sign * v for d, v in table.select("downscaler", "ida_rd").drop_nulls().iter_rows()
                if math.isfinite(v)}

    def seed_spread(self, model: str, metric: str | None) -> float | None:
        """Mean over (image, downscaler, metric) of the std over seeds of finite values."""
        if self.records is None:
            return None
        lf = self.records.filter((pl.col("model") == model) & pl.col("finite") & pl.col("value").is_finite())
        if metric is not None:
            lf = lf.filter(pl.col("metric") == metric)
        spreads = (lf.group_by("image", "downscaler", "metric").agg(std=pl.col("value").std(), n=pl.len())
                   .filter(pl.col("n") >= 2).collect())
        return None if spreads.is_empty() else float(spreads["std"].mean())


def _label(check: Check) -> str:
    """The kind's label, plus the part of the table the check is restricted to."""
    label = KINDS[check.kind].label(check.params)
    where = [str(check.params[k]) if k != "scale" else f"x{check.params[k]}"
             for k in _FILTERS if k in check.params and not check.kind.startswith("spread")]
    return label + (f" [{', '.join(where)}]" if where else "")


def evaluate_checks(checks: Sequence[Check], table: pl.DataFrame,
                    records: pl.LazyFrame | pl.DataFrame | None = None) -> list[CheckResult]:
    """Each check's result on a reduced table; a check that fails to evaluate says why."""
    ctx = Context(table, records.lazy() if records is not None else None)
    results = []
    for check in checks:
        kind = KINDS[check.kind]
        try:
            passed, detail, values = kind.evaluate(ctx, check.params)
        except Exception as exc:  # noqa: BLE001 - one bad check must not hide the others
            passed, detail, values = None, f"could not evaluate ({type(exc).__name__}: {exc})", {}
        results.append(CheckResult(check.kind, _label(check), passed, detail, values))
    return results


def summary_lines(results: Sequence[CheckResult]) -> list[str]:
    """The paper-style summary: Spearman checks on one line, then one line per other check."""
    lines = []
    rho_checks = [r for r in results if r.kind == "spearman"]
    if rho_checks:
        rhos = []
        for r in rho_checks:
            values = list(r.values.get("rho", {}).values())
            rhos.append(" ".join("—" if math.isnan(v) else f"{v:+.2f}".replace(".00", "") for v in values) or "—")
        families = ", ".join(r.label.split(" (")[0].removeprefix("Spearman ") for r in rho_checks)
        verdict = _all([r.passed for r in rho_checks])
        lines.append(f"Spearman rho per family ({families}): {' '.join(rhos)}, paper's signs: "
                     f"{ {True: 'yes', False: 'no', None: 'undecided'}[verdict] }")
    lines += [r.line() for r in results]
    passed = sum(r.passed is True for r in results)
    lines.append(f"checks passed: {passed} of {len(results)}")
    return lines


def render_markdown(results: Sequence[CheckResult], suite_name: str = "") -> str:
    """``checks.md``: the summary, then a table of every check."""
    lines = [f"# Checks of suite {suite_name}" if suite_name else "# Checks", ""]
    if any(r.kind == "spearman" for r in results):
        lines += [summary_lines(results)[0], ""]
    lines += ["| check | result | holds |", "|---|---|---|"]
    lines += [f"| {r.label} | {r.detail} | {r.verdict} |" for r in results]
    return "\n".join(lines) + "\n"


def render_json(results: Sequence[CheckResult]) -> str:
    return json.dumps([{"kind": r.kind, "label": r.label, "passed": r.passed, "detail": r.detail,
                        "values": r.values} for r in results], indent=2, default=str) + "\n"


def read_run_file(run_dir: str, name: str, limit: int = MAX_YAML_BYTES) -> str:
    """A small text file beside a run's records (``suite.yaml``), on a disk or an object
    store, read no further than ``limit`` bytes (`YAMLRefused` past it)."""
    import pyarrow.fs

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.store.records import is_uri

    location = f"{str(run_dir).rstrip('/')}/{name}"
    if is_uri(location):
        fs, path = pyarrow.fs.FileSystem.from_uri(location)
        with fs.open_input_stream(path) as stream:
            return checked_text(stream.read(limit + 1), limit)
    return read_bounded(location.removeprefix("file://"), limit)


def checks_of_run(run_dir: str) -> tuple[tuple[Check, ...], str]:
    """The checks and the name of the suite a run directory ran (its ``suite.yaml`` copy),
    read with the bounded loader of every YAML file idard reads; none when the copy is
    missing or has no checks. A copy that is not a suite raises `CheckError` naming it."""
    import yaml

    # suite.run.yaml is the run's copy when --out was the suite's own folder (whose
    # suite.yaml is the user's file, left as is: see idard.bench.run.jobs.suite_copy_name)
    for name in ("suite.run.yaml", "suite.yaml"):
        try:
            data = load_yaml(read_run_file(run_dir, name))
        except (FileNotFoundError, OSError):
            continue
        except yaml.YAMLError as exc:
            raise CheckError(f"{run_dir}/{name}: not valid YAML: {yaml_error_line(exc)}") from None
        except (ValueError, RecursionError) as exc:  # YAMLRefused, UnicodeDecodeError
            raise CheckError(f"{run_dir}/{name}: refused: {exc}") from None
        if not isinstance(data, Mapping):
            return (), ""
        raw = data.get("checks")
        raw = [dict(c) if isinstance(c, Mapping) else c for c in raw] if isinstance(raw, (list, tuple)) else raw
        return parse_checks(raw, f"{run_dir}/{name}"), str(data.get("name", ""))
    return (), ""


def report_checks(checks: Sequence[Check], table: pl.DataFrame, records: pl.LazyFrame | None, out: str,
                  suite_name: str = "") -> tuple[list[CheckResult], list[str], list[str]]:
    """Evaluate ``checks`` and write ``checks.md`` and ``checks.json`` into ``out``, the
    folder (or URI) the tables went to: beside the tables, wherever ``report --out`` put them.

    Returns the results, the lines to print and the paths written (none without checks).
    """
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.store.records import RecordStore

    if not checks:
        return [], [], []
    results = evaluate_checks(checks, table, records)
    store = RecordStore(out)
    written = [store.write_text("checks.md", render_markdown(results, suite_name)),
               store.write_text("checks.json", render_json(results))]
    return results, summary_lines(results), written
