"""Benchmark suites: the YAML file that says what a run computes.

A suite is data, never code: plug-ins are named by registered specs
(``blur(sigma=2)``, ``srflow(weights=ckpt/SRFlow_DF2K_4X.pth, heat=0.9)``) or by mappings
with a ``name`` key, and values are literals. Every key is checked on load, and an error
names the file, the key and what is allowed, before any model is loaded::

    name: quickstart
    images: [bundled:held-out]        # folders, globs, s3://... URIs; relative to this file
    hr_policy: center-crop            # HR sides cropped to a multiple of the scale
    scales: [4]                       # optional: the scales the models must have
    downscalers: [bicubic, nearest, blur(sigma=2)]
    models: [srflow-tiny-4x]
    metrics: [lpips-alex]
    samples: 8                        # seeds 0..7; or seeds: [list], or seed_start: N
    max_batch: 64                     # SR samples per model call

Relative paths (image folders, ``weights=``, ``precomputed(folder=...)``) are resolved
against the suite file's folder, so a suite runs the same from any working directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any


from idard.bench.suite.reference import reference_models
from idard.bench.suite.safe_yaml import clip, load_yaml, quote, read_yaml_file
from idard.measure.distortions import DISTORTIONS
from idard.measure.downscalers import DOWNSCALERS
from idard.measure.models import MODELS
from idard.measure.registry import Registry, SpecError, parse_spec
from idard.measure.stopping import SamplingRule

HR_POLICIES = ("center-crop",)
_KEYS = {
    "name": "a short name for tables and run directories",
    "description": "free text",
    "images": "a list of image sources (bundled:held-out, a folder, a glob, a URI)",
    "hr_policy": f"one of {', '.join(HR_POLICIES)}",
    "scales": "a list of integer scale factors",
    "downscalers": "a list of downscaler specs",
    "models": "a list of SR model specs",
    "metrics": "a list of distortion names",
    "samples": "K, the number of SR samples per LR image, or adaptive: {min, max, ci_halfwidth | paired_halfwidth}",
    "seeds": "an explicit list of sample seeds (instead of samples)",
    "seed_start": "first seed when seeds are 0-based otherwise (seeds = seed_start .. seed_start+K-1)",
    "max_batch": "SR samples per model call (bounds device memory)",
    "checks": "the paper's findings as data: a list of {kind: parameters} (see idard.bench.suite.checks)",
    "reference": "image source(s) of reference images matched to the HR by name: metrics compare each "
                 "downscaled image with its reference (e.g. a camera LR photo) and no SR model runs",
    "requires": "free-text list of what the user must provide (checkpoints, datasets) before it runs",
}
_REQUIRED = ("images", "downscalers", "models")
#: Parameters that hold file paths, resolved against the suite's folder.
_PATH_PARAMS = ("weights", "folder")


class SuiteError(ValueError):
    """A suite that cannot run; the message names the file and the key, in a few hundred
    characters whatever the values it quotes."""

    def __init__(self, message: str) -> None:
        super().__init__("\n".join(clip(line) for line in message.splitlines()))  # one problem a line


@dataclasses.dataclass(frozen=True)
class Suite:
    """A validated suite; plug-ins are stored by their canonical ids."""

    name: str
    images: tuple[str, ...]
    downscalers: tuple[str, ...]
    models: tuple[str, ...]
    metrics: tuple[str, ...] = ("lpips-alex",)
    seeds: tuple[int, ...] = tuple(range(8))
    scales: tuple[int, ...] = ()
    hr_policy: str = "center-crop"
    max_batch: int = 64
    description: str = ""
    base_dir: str = "."  # where relative image sources are resolved
    path: str = ""  # the file it came from, for messages
    #: (id, spec) of every plug-in: the id is the record key (no paths), the spec what a
    #: worker builds the plug-in from on its machine (paths resolved against base_dir).
    specs: tuple[tuple[str, str], ...] = ()
    checks: tuple[dict[str, Any], ...] = ()  # normalised {kind: params}, see idard.bench.suite.checks
    reference: tuple[str, ...] = ()  # reference image sources: a full-reference suite, no SR model
    requires: tuple[str, ...] = ()
    #: Adaptive sampling (``samples: {min, max, ...}``): seeds are then the first ``max``,
    #: drawn in rounds until each group's target is met (`idard.bench.run.adaptive`).
    sampling: SamplingRule | None = None

    @property
    def samples(self) -> int:
        return len(self.seeds)

    def spec(self, plugin_id: str) -> str:
        """The spec to build plug-in ``plugin_id`` from (the id itself if none is known)."""
        return dict(self.specs).get(plugin_id, plugin_id)

    def digest(self) -> str:
        """Hash of what the suite computes (not its name, description or where it sits):
        its provenance. Plug-ins enter by id, which names files by name and content."""
        content = {k: getattr(self, k) for k in ("images", "downscalers", "models", "metrics",
                                                  "seeds", "hr_policy")}
        if self.sampling is not None:  # fixed-K suites keep their hash
            content["sampling"] = self.sampling.to_dict()
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k != "specs" and not (k == "sampling" and v is None)}  # fixed K: as before


def suite_document(suite: Suite) -> dict[str, Any]:
    """The suite as a YAML mapping that `load_suite` accepts from any folder.

    Local image sources become absolute and plug-ins are written as the specs they were
    built from (paths resolved), not as their ids (which name files by name and content):
    a run directory's copy is read from the run directory, not from the suite's folder.
    """
    base = Path(suite.base_dir)

    def absolute(sources: tuple[str, ...]) -> list[str]:
        return [s if s.startswith("bundled:") or "://" in s or Path(s).expanduser().is_absolute()
                else str(base / s) for s in sources]

    document: dict[str, Any] = {"name": suite.name}
    if suite.description:
        document["description"] = suite.description
    document.update(images=absolute(suite.images), hr_policy=suite.hr_policy, scales=list(suite.scales),
                    downscalers=[suite.spec(d) for d in suite.downscalers])
    if suite.reference:  # a full-reference suite runs no model and draws no samples
        document["reference"] = absolute(suite.reference)
    else:
        document.update(models=[suite.spec(m) for m in suite.models], seeds=list(suite.seeds))
        if suite.sampling is not None:
            del document["seeds"]
            document.update(samples=_sampling_document(suite.sampling, suite), seed_start=suite.seeds[0])
    document.update(metrics=[suite.spec(m) for m in suite.metrics], max_batch=suite.max_batch)
    if suite.checks:
        document["checks"] = [dict(check) for check in suite.checks]
    if suite.requires:
        document["requires"] = list(suite.requires)
    return document


def _fail(path: str, key: str, problem: str) -> SuiteError:
    return SuiteError(f"{path}: key {key!r}: {problem}")


class _Problems:
    """Every problem of a suite, so that one load reports them all: fixing a file one
    error per try is slow when each try validates the whole suite."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.messages: list[str] = []

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        """Record a `SuiteError` raised in the block and go on with the next check."""
        try:
            yield
        except SuiteError as exc:
            self.messages.extend(str(exc).splitlines())

    #: Problems shown at most: a generated suite with thousands of bad entries still gets a
    #: message a terminal can show.
    SHOWN = 50

    def raise_any(self) -> None:
        """One line per problem, each naming the file and the key."""
        if len(self.messages) > self.SHOWN:
            more = len(self.messages) - self.SHOWN
            raise SuiteError("\n".join([*self.messages[:self.SHOWN], f"{self.path}: ... and {more:,} more problems"]))
        if self.messages:
            raise SuiteError("\n".join(self.messages))


def _path_params(registry: Registry, name: str) -> set[str]:
    """Parameters that hold file or folder paths: by name, or marked ``metadata={"path": ...}``."""
    try:
        fields = dataclasses.fields(registry.entry(name).cls)
    except SpecError:
        return set(_PATH_PARAMS)
    return set(_PATH_PARAMS) | {f.name for f in fields if f.metadata.get("path")}


def _resolve_paths(params: dict[str, Any], base: Path, keys: set[str] | tuple[str, ...] = _PATH_PARAMS) -> dict[str, Any]:
    out = dict(params)
    for key in keys:
        value = out.get(key)
        if isinstance(value, str) and value and "://" not in value and not Path(value).expanduser().is_absolute():
            out[key] = str((base / value).resolve())
    return out


def _spec_params(spec: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return parse_spec(spec.strip())
    if isinstance(spec, Mapping):
        params = dict(spec)
        if "name" not in params:
            raise SpecError(f"mapping {quote(dict(spec))} has no 'name' key")
        return str(params.pop("name")), params
    raise SpecError(f"{quote(spec)} is neither a spec string nor a mapping with a 'name' key")


def _plugins(raw: Any, registry: Registry, path: str, key: str, base: Path) -> tuple[list[Any], list[str]]:
    """Instances and canonical ids of a list of specs; errors name the list position."""
    if isinstance(raw, (str, Mapping)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise _fail(path, key, f"must be a non-empty list; allowed: {', '.join(registry.names())}")
    instances, ids, problems = [], [], _Problems(path)
    for i, spec in enumerate(raw):
        where = f"{key}[{i}]"
        with problems.collect():
            try:
                name, params = _spec_params(spec)
                instance = registry.create({"name": name, **_resolve_paths(params, base, _path_params(registry, name))})
                plugin_id = instance.id
            except (SpecError, ValueError) as exc:  # ValueError: a plug-in's own check of its values
                raise _fail(path, where, str(exc)) from None
            if plugin_id in ids:
                raise _fail(path, where, f"{plugin_id} is listed twice")
            instances.append(instance)
            ids.append(plugin_id)
    problems.raise_any()
    return instances, ids


def _int_list(raw: Any, path: str, key: str, minimum: int) -> list[int]:
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items):
        raise _fail(path, key, f"must be a list of integers >= {minimum}, got {quote(raw)}")
    if len(set(items)) != len(items):
        raise _fail(path, key, f"has repeated values: {quote(raw)}")
    return items


def _positive_int(raw: Any, path: str, key: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise _fail(path, key, f"must be a positive integer, got {quote(raw)}")
    return raw


#: Keys of an adaptive ``samples:`` mapping, and what each means.
_SAMPLING_KEYS = {
    "min": "seeds every group gets (the first look)",
    "max": "seeds no group goes past (the last look)",
    "ci_halfwidth": "stop a group when its IDA-RD CI's half-width is at most this",
    "paired_halfwidth": "stop a downscaler when its paired CI vs the baseline excludes 0 or is this narrow",
    "baseline": "the paired rule's baseline downscaler (default bicubic)",
}


def _sampling(raw: Any, path: str, downscalers: list[str], canonical: Callable[[str], str]) -> SamplingRule | None:
    """``samples:`` as a mapping: the adaptive rule; a plain K is None (fixed)."""
    if not isinstance(raw, Mapping):
        return None
    for key in sorted(set(raw) - set(_SAMPLING_KEYS), key=str):
        raise _fail(path, f"samples.{key}", f"unknown key; allowed keys: {', '.join(_SAMPLING_KEYS)}")
    for key in ("min", "max"):
        if key not in raw:
            raise _fail(path, f"samples.{key}", f"is required ({_SAMPLING_KEYS[key]})")
        _positive_int(raw[key], path, f"samples.{key}")
    if raw["min"] > raw["max"]:
        raise _fail(path, "samples.min", f"must be at most samples.max ({raw['max']}), got {raw['min']}")
    targets = [k for k in ("ci_halfwidth", "paired_halfwidth") if k in raw]
    if len(targets) != 1:
        raise _fail(path, "samples", "give exactly one target: ci_halfwidth or paired_halfwidth")
    value = raw[targets[0]]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _fail(path, f"samples.{targets[0]}", f"must be a number > 0, got {quote(value)}")
    baseline = None
    if targets[0] == "paired_halfwidth":
        given = raw.get("baseline", "bicubic")
        baseline = canonical(str(given)) if isinstance(given, str) else None
        if baseline not in downscalers:
            raise _fail(path, "samples.baseline", f"{quote(given)} is not among the suite's downscalers"
                        + ("" if "baseline" in raw else " (the default is bicubic)"))
    elif "baseline" in raw:
        raise _fail(path, "samples.baseline", "only the paired rule (paired_halfwidth) has a baseline")
    return SamplingRule(min=raw["min"], max=raw["max"], baseline=baseline, **{targets[0]: float(value)})


def _sampling_document(rule: SamplingRule, suite: Suite) -> dict[str, Any]:
    """The rule as the suite file says it (the baseline by its spec)."""
    out = rule.to_dict()
    out.pop("ci", None)
    if rule.baseline is not None:
        out["baseline"] = suite.spec(rule.baseline)
    return out


def _seeds(data: Mapping[str, Any], path: str) -> tuple[int, ...]:
    if "seeds" in data:
        if "samples" in data or "seed_start" in data:
            raise _fail(path, "seeds", "give either seeds or samples (with an optional seed_start), not both")
        return tuple(_int_list(data["seeds"], path, "seeds", 0))
    raw = data.get("samples", 8)
    if isinstance(raw, Mapping):  # adaptive: every seed it may draw; `_sampling` checks the mapping
        top = raw.get("max")
        samples = top if isinstance(top, int) and not isinstance(top, bool) and top >= 1 else 1
    else:
        samples = _positive_int(raw, path, "samples")
    start = data.get("seed_start", 0)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise _fail(path, "seed_start", f"must be an integer >= 0, got {quote(start)}")
    return tuple(range(start, start + samples))


def _check_scales(models: list[Any], ids: list[str], raw: Any, path: str) -> tuple[int, ...]:
    model_scales = []
    for i, model in enumerate(models):
        try:
            model_scales.append(int(model.scale))
        except Exception as exc:  # noqa: BLE001 - e.g. unreadable weights
            raise _fail(path, f"models[{i}]", f"{ids[i]}: {exc}") from None
    if raw is None:
        return tuple(sorted(set(model_scales)))
    scales = _int_list(raw, path, "scales", 2)
    for i, scale in enumerate(model_scales):
        if scale not in scales:
            raise _fail(path, f"models[{i}]", f"{ids[i]} upscales x{scale}, which is not among scales {scales}")
    unused = sorted(set(scales) - set(model_scales))
    if unused:
        raise _fail(path, "scales", f"no model upscales x{', x'.join(map(str, unused))}")
    return tuple(scales)


def parse_suite(data: Any, path: str = "<suite>", base: Path | None = None, *, check_scales: bool = True) -> Suite:
    """Validate a suite mapping (as read from YAML) into a `Suite`.

    Every problem is reported at once (one line each, `SuiteError`). ``check_scales``
    False skips asking each model its scale, which may need its weights file: for
    ``idard-bench weights``, whose job is to say which files are missing.
    """
    base = (base or Path.cwd()).resolve()
    if not isinstance(data, Mapping):
        raise SuiteError(f"{path}: a suite must be a mapping of keys to values, got {type(data).__name__}")
    problems = _Problems(path)
    for key in sorted(set(data) - set(_KEYS), key=str):
        problems.messages.append(str(_fail(path, key, f"unknown key; allowed keys: {', '.join(_KEYS)}")))
    reference: tuple[str, ...] = ()
    with problems.collect():
        reference = _reference(data, path)
    for key in _REQUIRED:
        if key not in data and not (reference and key == "models"):
            problems.messages.append(str(_fail(path, key, f"is required ({_KEYS[key]})")))

    images: list[Any] = []
    with problems.collect():
        images = data["images"] if isinstance(data.get("images"), list) else [data.get("images")]
        if "images" in data and (not images or not all(isinstance(s, str) and s.strip() for s in images)):
            raise _fail(path, "images", f"must be a list of image sources: {_KEYS['images']}")
    hr_policy = data.get("hr_policy", "center-crop")
    if hr_policy not in HR_POLICIES:
        problems.messages.append(str(_fail(path, "hr_policy", f"{quote(hr_policy)} is not supported; "
                                                                f"allowed: {', '.join(HR_POLICIES)}")))
    scalers: list[Any] = []
    downscalers: list[str] = []
    models: list[Any] = []
    model_ids: list[str] = []
    scales: Any = ()
    before_plugins = len(problems.messages)
    if "downscalers" in data:
        with problems.collect():
            scalers, downscalers = _plugins(data["downscalers"], DOWNSCALERS, path, "downscalers", base)
    if reference:
        with problems.collect():
            scales = _int_list(data.get("scales"), path, "scales", 2) if "scales" in data else None
            if not scales:
                raise _fail(path, "scales", "is required in a suite with reference: (the LR size to compare at)")
            model_ids = reference_models(scales)  # pseudo-models: their spec is their id
    elif "models" in data:
        with problems.collect():
            models, model_ids = _plugins(data["models"], MODELS, path, "models", base)
        if check_scales and models:
            with problems.collect():
                scales = _check_scales(models, model_ids, data.get("scales"), path)
        elif "scales" in data:
            with problems.collect():
                scales = _int_list(data["scales"], path, "scales", 2)
    plugins_ok = len(problems.messages) == before_plugins
    scorers: list[Any] = []
    metrics: list[str] = []
    with problems.collect():
        scorers, metrics = _plugins(data.get("metrics", ["lpips-alex"]), DISTORTIONS, path, "metrics", base)
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str) or not name.strip():
        problems.messages.append(str(_fail(path, "name", f"must be a non-empty string, got {quote(name)}")))
    description = ""
    with problems.collect():
        description = _description(data.get("description"), path)
    seeds: tuple[int, ...] = ()
    with problems.collect():
        seeds = _seeds(data, path) if not reference else _reference_seeds(data, path)
    sampling: SamplingRule | None = None
    if plugins_ok and not reference:  # a paired rule names one of the suite's downscalers
        with problems.collect():
            sampling = _sampling(data.get("samples"), path, downscalers,
                                 lambda spec: _canonical(spec, DOWNSCALERS, base))
    max_batch = 64
    with problems.collect():
        max_batch = _positive_int(data.get("max_batch", 64), path, "max_batch")
    checks: tuple[dict[str, Any], ...] = ()
    if plugins_ok:  # checks name the suite's plug-ins: against a broken list they would only echo it
        with problems.collect():
            checks = _checks(data.get("checks"), path, downscalers, model_ids, base)
    requires: tuple[str, ...] = ()
    with problems.collect():
        requires = _requires(data.get("requires"), path)
    problems.raise_any()

    plugins = [*zip(downscalers, scalers), *zip(model_ids, models), *zip(metrics, scorers)]
    specs = tuple((plugin_id, plugin.spec) for plugin_id, plugin in plugins)
    return Suite(
        name=name,
        description=description,
        images=tuple(s.strip() for s in images),
        hr_policy=hr_policy,
        scales=tuple(scales or ()),
        downscalers=tuple(downscalers),
        models=tuple(model_ids),
        metrics=tuple(metrics),
        seeds=seeds,
        max_batch=max_batch,
        base_dir=str(base),
        path=path,
        specs=specs,
        checks=checks,
        reference=reference,
        requires=requires,
        sampling=sampling,
    )


def _canonical(spec: str, registry: Registry, base: Path) -> str:
    """A plug-in spec as the suite's lists hold it (its id), paths resolved against the suite."""
    try:
        name, params = _spec_params(spec)
        return registry.create({"name": name, **_resolve_paths(params, base, _path_params(registry, name))}).id
    except Exception:  # noqa: BLE001 - an unregistered plug-in: compared as written
        return spec.strip()


def _description(raw: Any, path: str) -> str:
    if isinstance(raw, (list, dict)):
        raise _fail(path, "description", f"must be free text (a string), got a {type(raw).__name__}")
    return "" if raw is None else str(raw)


def _reference(data: Mapping[str, Any], path: str) -> tuple[str, ...]:
    if "reference" not in data:
        return ()
    raw = data["reference"] if isinstance(data["reference"], list) else [data["reference"]]
    if not raw or not all(isinstance(s, str) and s.strip() for s in raw):
        raise _fail(path, "reference", f"must be a list of image sources: {_KEYS['reference']}")
    if "models" in data:
        raise _fail(path, "models", "a suite with reference: compares downscaled images with their references "
                                    "and runs no SR model; remove models (or reference)")
    return tuple(s.strip() for s in raw)


def _reference_seeds(data: Mapping[str, Any], path: str) -> tuple[int, ...]:
    """A full-reference comparison is deterministic: one record per (image, downscaler, metric)."""
    for key in ("samples", "seeds", "seed_start"):
        if key in data:
            raise _fail(path, key, "a suite with reference: draws no SR samples; remove it")
    return (0,)


def _checks(raw: Any, path: str, downscalers: list[str], models: list[str], base: Path) -> tuple[dict[str, Any], ...]:
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.checks import CheckError, parse_checks

    def canonical(spec: str, kind: str) -> str:
        """A check's plug-in spec as the suite's lists hold it: paths resolved against the suite."""
        try:
            name, params = _spec_params(spec)
            registry = DOWNSCALERS if kind == "downscaler" else MODELS
            return registry.create({"name": name, **_resolve_paths(params, base, _path_params(registry, name))}).id
        except Exception:  # noqa: BLE001 - e.g. an unregistered plug-in: compared as written
            return spec.strip()

    try:
        return tuple(check.to_dict() for check in parse_checks(raw, path, downscalers, models, canonical))
    except CheckError as exc:
        raise SuiteError(str(exc)) from None


def _requires(raw: Any, path: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(s, str) and s.strip() for s in items):
        raise _fail(path, "requires", f"must be a list of strings: {_KEYS['requires']}")
    return tuple(s.strip() for s in items)


#: The loader of `read_suite_file` and `load_suite`: bounded in bytes, nodes and expanded
#: text, refusing duplicate keys (see `idard.bench.suite.safe_yaml`).
safe_load_suite = load_yaml


def read_suite_file(path: str | Path, loader: Callable[[str], Any] = safe_load_suite) -> Any:
    """The parsed, not yet validated content of a suite file; errors name the file."""
    return read_yaml_file(path, "suite file", SuiteError, loader)


def run_dir_name(name: str) -> str:
    """A suite name made safe as one folder name under ``runs/``: separators, ``..`` and
    other characters outside ``[A-Za-z0-9._-]`` cannot send the default run directory
    elsewhere (``../../x`` -> ``x``, ``/abs`` -> ``abs``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return safe or "suite"


def suite_name(path: str | Path) -> str:
    """A suite's name without validating it: its plug-ins may name files that exist only
    where the suite will run (a cluster's Docker image), which `load_suite` would refuse."""
    data = read_suite_file(path)
    name = data.get("name") if isinstance(data, Mapping) else None
    return name.strip() if isinstance(name, str) and name.strip() else Path(path).stem


def load_suite(path: str | Path, loader: Callable[[str], Any] = safe_load_suite, *, check_scales: bool = True) -> Suite:
    """Read and validate a suite file; its problems raise one `SuiteError` naming the file,
    one line each (``check_scales``: see `parse_suite`)."""
    path = Path(path)
    return parse_suite(read_suite_file(path, loader), str(path), path.resolve().parent, check_scales=check_scales)
