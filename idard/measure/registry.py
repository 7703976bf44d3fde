"""Plug-in registries: downscalers, SR model families and distortions by stable name.

A plug-in is a frozen dataclass whose fields are its typed parameters. Suites and the
command line name plug-ins with a *spec* string such as ``blur(sigma=2)`` or
``srflow(weights='x.pth', heat=1.1)``; the registry parses it without ``eval``,
checks names and types, and builds the instance. Every instance has a canonical id,
``name(k=v, ...)`` listing the parameters that differ from their defaults in declaration
order, so two specs that mean the same plug-in get the same id, and records keyed by that
id are reused exactly when the computation is the same.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from idard.measure.plugins import load_installed

T = TypeVar("T")

# Names may hold hyphens (``lpips-alex``), which Python would parse as subtraction, so
# the name is split off by a pattern and only the argument list goes through ``ast``.
_SPEC = re.compile(r"^\s*(?P<name>[A-Za-z_][\w.\-]*)\s*(?:\((?P<args>.*)\))?\s*$", re.S)


class SpecError(ValueError):
    """A plug-in spec that names an unknown plug-in or parameter, or has a bad value."""


_NON_FINITE_WORDS = ("inf", "infinity", "nan")


#: Unquoted values read as strings: any run of characters without whitespace, quotes,
#: commas, brackets or parentheses (``nearest``, ``dcgan-faces``, ``ckpt/srflow-tiny-4x.safetensors``,
#: ``/models/x.pth``, ``https://host/x.pth``). Decided by this pattern, not by whether
#: Python's tokenizer happens to read the word as an expression.
_BARE_WORD = re.compile(r"[^\s'\"(),\[\]{}=]+")
_KEY = re.compile(r"^\s*(?P<key>[A-Za-z_]\w*)\s*=(?P<value>.*)$", re.S)
_CLOSE = {"(": ")", "[": "]", "{": "}"}


def _split_arguments(spec: str, args: str) -> list[str]:
    """``args`` cut at the commas outside quotes and brackets (a trailing comma is allowed)."""
    pieces, current, stack, quote, escaped = [], [], [], "", False
    for char in args:
        if quote:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char in _CLOSE:
            stack.append(_CLOSE[char])
        elif char in ")]}":
            if not stack or stack.pop() != char:
                raise SpecError(f"plug-in spec {spec!r}: unbalanced {char!r}")
        elif char == "," and not stack:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote or stack:
        raise SpecError(f"plug-in spec {spec!r}: unclosed {'quote' if quote else repr(stack[-1])}")
    pieces.append("".join(current))
    if pieces and not pieces[-1].strip():
        pieces.pop()
    return pieces


def _literal(spec: str, key: str, text: str) -> Any:
    """One parameter value: a Python literal, or else a bare word read as a string."""
    text = text.strip()
    if not text:
        raise SpecError(f"plug-in spec {spec!r}: parameter {key!r} has no value")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if _BARE_WORD.fullmatch(text):
            return text
    raise SpecError(
        f"plug-in spec {spec!r}: value of {key!r} must be a literal "
        "(number, quoted string, True/False/None) or a bare word without spaces, quotes or brackets"
    )


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name(k=v, ...)`` into the name and literal keyword arguments.

    Only Python literals are accepted as values (numbers, strings, booleans, None,
    tuples and lists of them), so a suite file can never run code. A bare word or path
    is read as a string (``blur(base=nearest)``, ``pulse(generator=dcgan-faces)``,
    ``srflow(weights=ckpt/srflow-tiny-4x.safetensors)``), which is what a suite author
    means by it. The argument list is cut into ``key=value`` pieces by idard itself and
    each value is read alone, so what parses does not depend on Python's tokenizer.
    """
    match = _SPEC.match(spec)
    if match is None:
        raise SpecError(
            f"plug-in spec {spec!r} must look like name or name(key=value, ...); "
            "names are letters, digits, '_', '-' and '.'"
        )
    name, args = match.group("name"), match.group("args")
    if args is None or not args.strip():
        return name, {}
    params: dict[str, Any] = {}
    for piece in _split_arguments(spec, args):
        if piece.strip().startswith("**"):
            raise SpecError(f"plug-in spec {spec!r}: '**' is not allowed")
        named = _KEY.match(piece)
        if named is None:
            raise SpecError(f"plug-in spec {spec!r}: parameters must be named (key=value), got {piece.strip()!r}")
        key = named.group("key")
        if key in params:
            raise SpecError(f"plug-in spec {spec!r}: parameter {key!r} is given twice")
        params[key] = _literal(spec, key, named.group("value"))
    return name, params


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check one parameter value against its annotation, widening int to float."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except SpecError as exc:
                errors.append(str(exc))
        raise SpecError(f"{where}: {value!r} matches none of {annotation}")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise SpecError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            raise SpecError(f"{where}: expected a sequence, got {value!r}")
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, where) for v in value)
    if annotation is Any:
        return value
    if annotation is float:
        if isinstance(value, str) and value.strip().lower().lstrip("+-") in _NON_FINITE_WORDS:
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            # A non-finite parameter would make a degenerate plug-in (blur of infinite
            # sigma) and an id that no other process could be asked to build twice the
            # same way; refuse it here, where the suite is validated.
            raise SpecError(f"{where}: must be a finite number, got {value!r}")
        return number
    if annotation is int:
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{where}: must be a finite integer, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise SpecError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where}: expected True or False, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise SpecError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(_format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)  # floats are finite (`_coerce`), so repr reads back exactly


_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _is_absolute(value: str) -> bool:
    return value.startswith(("/", "~", "\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", value))


def location_name(value: str) -> str:
    """A file or folder named by what it is called, not where it sits: ``/m/x.pth`` -> ``x.pth``.

    URLs and paths alike keep their last part; the content (a weights SHA-256, an LR
    folder's hash) identifies the file, so a record key survives moving the files.
    """
    text = value.split("?", 1)[0].rstrip("/\\") if _URL.match(value) else value.rstrip("/\\")
    name = re.split(r"[/\\]", text)[-1]
    return name or value


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


@functools.lru_cache(maxsize=None)
def parameter_types(cls: type) -> dict[str, Any]:
    """The annotation of each parameter (``init`` field) of a plug-in dataclass, evaluated.

    Unlike ``typing.get_type_hints(cls)`` it leaves the other annotations alone: run-time
    state such as ``_device: torch.device`` would import torch just to list or validate a
    plug-in (plug-in modules import torch lazily, `idard.measure.lazy`).
    """
    wanted = {f.name for f in dataclasses.fields(cls) if f.init}
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):  # a subclass's annotation wins
        module = sys.modules.get(klass.__module__)
        namespace = dict(vars(module)) if module is not None else {}
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if name not in wanted:
                continue
            if isinstance(annotation, str):
                annotation = eval(annotation, namespace, dict(vars(klass)))  # noqa: S307 - idard's own source
            out[name] = annotation
    return out


def _ordered_fields(cls_or_instance: Any) -> list[dataclasses.Field]:
    # Parameters a base class shares (``order=``) come after the plug-in's own ones.
    fields = [f for f in dataclasses.fields(cls_or_instance) if f.init]
    return sorted(fields, key=lambda f: f.metadata.get("rank", 0))


def canonical_id(name: str, instance: Any) -> str:
    """``name`` or ``name(k=v,...)``: the identity parameters that differ from their
    defaults, in field order. Files and folders appear by name (``location_name``), never
    by where they sit; a plug-in may supply derived identity values (a content hash)
    through ``identity_values()``."""
    derived = instance.identity_values() if hasattr(instance, "identity_values") else {}
    parts = []
    for field in _ordered_fields(instance):
        if field.metadata.get("identity") is False:
            continue
        value = derived.get(field.name, getattr(instance, field.name))
        if value == _default(field):
            continue
        if isinstance(value, str) and (field.metadata.get("path") or _is_absolute(value)):
            value = location_name(value)
        parts.append(f"{field.name}={_format_value(value)}")
    return f"{name}({','.join(parts)})" if parts else name


def canonical_spec(name: str, instance: Any) -> str:
    """Everything needed to build ``instance`` again in another process: every parameter
    that differs from its default (identity or not), paths as given, derived identity
    values pinned (so the other process checks it sees the same content). Unlike the id
    it may hold a machine's paths, so it is never a record key."""
    derived = instance.identity_values() if hasattr(instance, "identity_values") else {}
    values = {f.name: derived.get(f.name, getattr(instance, f.name)) for f in _ordered_fields(instance)}
    parts = [f"{f.name}={_format_value(values[f.name])}"
             for f in _ordered_fields(instance) if values[f.name] != _default(f)]
    return f"{name}({','.join(parts)})" if parts else name


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    cls: type[T]
    summary: str

    def parameters(self) -> list[tuple[str, str, Any]]:
        """(name, type, default) for each typed parameter, for ``idard-bench list``."""
        hints = parameter_types(self.cls)
        out = []
        for f in dataclasses.fields(self.cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            out.append((f.name, _type_name(hints.get(f.name, Any)), default))
        return out


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


class Registry(Generic[T]):
    """Name -> plug-in class, with spec parsing, validation and canonical ids."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"{self.kind} plug-in {name!r} must be a dataclass")
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            self._entries[name] = Entry(name, cls, summary)
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return decorate

    def _all(self) -> dict[str, Entry[T]]:
        """Every entry, other packages' plug-ins (`idard.measure.plugins`) loaded on first use."""
        load_installed()
        return self._entries

    def __contains__(self, name: str) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._all().values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._all())

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._all()[name]
        except KeyError:
            raise SpecError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or '(none)'}"
            ) from None

    def normalised(self, spec: str) -> tuple[str, dict[str, Any]]:
        """(name, every identity parameter with defaults filled in) of a spec or an id,
        without building the plug-in (no file is read): how two spellings are compared."""
        name, params = parse_spec(spec)
        entry = self.entry(name)
        hints = parameter_types(entry.cls)
        fields = {f.name: f for f in _ordered_fields(entry.cls)}
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise SpecError(f"{self.kind} {name!r} has no parameter {', '.join(map(repr, unknown))}")
        full: dict[str, Any] = {}
        for key, field in fields.items():
            if field.metadata.get("identity") is False:
                continue
            value = _coerce(params[key], hints.get(key, Any), f"{self.kind} {name!r} parameter {key!r}") \
                if key in params else _default(field)
            if isinstance(value, str) and (field.metadata.get("path") or _is_absolute(value)):
                value = location_name(value)
            full[key] = value
        return name, full

    def match(self, spec: str, known: Sequence[str]) -> str:
        """The id among ``known`` that ``spec`` means, however it is spelled
        (``blur``, ``blur(sigma=1)``, ``blur(sigma=1.0)``); a parameter derived from content
        (``content=``) may be left out. Raises `SpecError` "unknown <kind>" listing ``known``."""
        def unknown(reason: str = "") -> SpecError:
            return SpecError(f"unknown {self.kind} {spec!r}{reason}; known: {', '.join(sorted(known)) or '(none)'}")

        try:
            name, wanted = self.normalised(spec.strip())
        except SpecError as exc:
            if spec.strip() in known:
                return spec.strip()
            name = _SPEC.match(spec.strip())
            registered = name is not None and name.group("name") in self
            raise unknown(f" ({exc})" if registered else "") from None
        given = set(parse_spec(spec.strip())[1])
        found = []
        for candidate in known:
            try:
                other_name, other = self.normalised(candidate)
            except SpecError:
                continue
            derived = {k for k, f in {f.name: f for f in _ordered_fields(self.entry(name).cls)}.items()
                       if f.metadata.get("derived")}
            ignore = derived - given
            if other_name == name and all(other[k] == v for k, v in wanted.items() if k not in ignore):
                found.append(candidate)
        if not found:
            family = sorted(k for k in known if _SPEC.match(k) and _SPEC.match(k).group("name") == name)
            if family:  # ``blur`` is blur(sigma=1.0): say so, and which blur the records hold
                shown = set(given).union(*(parse_spec(k)[1] for k in family))
                meant = self._spelled(name, {k: v for k, v in wanted.items() if k in shown})
                raise SpecError(f"{self.kind} {spec!r} means {meant}, which is not among the known ids; "
                                f"the known {name} ids: {', '.join(family)}")
            raise unknown()
        if len(found) > 1:
            raise SpecError(f"{self.kind} {spec!r} is ambiguous: it matches {', '.join(found)}")
        return found[0]

    def _spelled(self, name: str, params: dict[str, Any]) -> str:
        """``name(k=v, ...)`` with the given parameters, defaults filled in."""
        parts = [f"{k}={_format_value(v)}" for k, v in params.items()]
        return f"{name}({','.join(parts)})" if parts else name

    def labels(self, ids: Sequence[str]) -> dict[str, str]:
        """A table label for each id that never hides what tells two rows apart.

        Ids drop parameters at their defaults (``blur`` is ``blur(sigma=1.0)``). When a
        table holds several ids of one family, each of their labels lists every parameter
        any of them lists, defaults filled in: ``blur(sigma=1.0)`` next to
        ``blur(sigma=2.0)``, never ``blur`` next to ``blur(sigma=2.0)``. Ids that do not
        parse (records of an older idard) are shown as they are.
        """
        parsed: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
        for i in dict.fromkeys(ids):
            try:
                name, params = parse_spec(i)
                _, full = self.normalised(i)
            except SpecError:
                continue
            parsed[i] = (name, params, full)
        families: dict[str, list[str]] = {}
        for i, (name, _, _) in parsed.items():
            families.setdefault(name, []).append(i)
        out = {i: i for i in ids}
        for name, members in families.items():
            if len(members) < 2:
                continue
            shown = set().union(*(parsed[i][1] for i in members))
            order = [f.name for f in _ordered_fields(self.entry(name).cls) if f.name in shown]
            for i in members:
                full = parsed[i][2]
                parts = [f"{k}={_format_value(full[k])}" for k in order if k in full]
                out[i] = f"{name}({','.join(parts)})" if parts else name
        return out

    def create(self, spec: str | Mapping[str, Any], **overrides: Any) -> T:
        """Build a plug-in from ``'name(k=v)'`` or ``{'name': ..., k: v}``."""
        if isinstance(spec, str):
            name, params = parse_spec(spec)
        else:
            params = dict(spec)
            if "name" not in params:
                raise SpecError(f"{self.kind} mapping {dict(spec)!r} has no 'name' key")
            name = params.pop("name")
        params.update(overrides)
        entry = self.entry(name)
        fields = {f.name: f for f in dataclasses.fields(entry.cls) if f.init}
        hints = parameter_types(entry.cls)
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise SpecError(
                f"{self.kind} {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(fields) or '(none)'}"
            )
        kwargs = {k: _coerce(v, hints.get(k, Any), f"{self.kind} {name!r} parameter {k!r}")
                  for k, v in params.items()}
        try:
            return entry.cls(**kwargs)
        except SpecError:
            raise
        except (TypeError, ValueError) as exc:  # a plug-in's own check of its values
            raise SpecError(f"{self.kind} {name!r}: {exc}") from None


class Plugin:
    """Mixin for registered dataclasses: gives them their canonical ``id`` and ``spec``."""

    registry_name: str = "?"

    @property
    def id(self) -> str:
        """The record key: what the plug-in is, independent of the machine it runs on."""
        return canonical_id(self.registry_name, self)

    @property
    def spec(self) -> str:
        """How to build this very instance again (paths included): what workers are sent."""
        return canonical_spec(self.registry_name, self)

    def identity_values(self) -> dict[str, Any]:
        """Identity values derived from more than the parameters (e.g. a content hash)."""
        return {}
