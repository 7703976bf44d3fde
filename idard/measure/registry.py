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
import re
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Names may hold hyphens (``lpips-alex``), which Python would parse as subtraction, so
# the name is split off by a pattern and only the argument list goes through ``ast``.
_SPEC = re.compile(r"^\s*(?P<name>[A-Za-z_][\w.\-]*)\s*(?:\((?P<args>.*)\))?\s*$", re.S)


class SpecError(ValueError):
    """A plug-in spec that names an unknown plug-in or parameter, or has a bad value."""


#: Unquoted values read as strings: words with '-', '.' and relative paths.
_BARE_WORD = re.compile(r"[A-Za-z_~.][\w.~/-]*")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name(k=v, ...)`` into the name and literal keyword arguments.

    Only Python literals are accepted as values (numbers, strings, booleans, None,
    tuples and lists of them), so a suite file can never run code. A bare word or relative
    path is read as a string (``blur(base=nearest)``, ``pulse(generator=dcgan-faces)``,
    ``srflow(weights=ckpt/x.pth)``), which is what a suite author means by it.
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
    source = f"f({args})"
    try:
        node = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise SpecError(f"cannot parse plug-in spec {spec!r}: {exc.msg} (quote values such as "
                        "absolute paths: weights='/models/x.pth')") from None
    assert isinstance(node, ast.Call)
    if node.args:
        raise SpecError(f"plug-in spec {spec!r}: parameters must be named (key=value)")
    params: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise SpecError(f"plug-in spec {spec!r}: '**' is not allowed")
        try:
            if isinstance(kw.value, ast.Name) and kw.value.id not in ("True", "False", "None"):
                params[kw.arg] = kw.value.id
            else:
                params[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            word = ast.get_source_segment(source, kw.value) or ""
            if _BARE_WORD.fullmatch(word):  # stylegan-ffhq, ckpt/SRFlow_DF2K_4X.pth
                params[kw.arg] = word
                continue
            raise SpecError(
                f"plug-in spec {spec!r}: value of {kw.arg!r} must be a literal "
                "(number, quoted string, True/False/None)"
            ) from None
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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
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
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ",".join(_format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def canonical_id(name: str, instance: Any) -> str:
    """``name`` or ``name(k=v,...)`` with the non-default parameters in field order."""
    parts = []
    # Parameters a base class shares (``order=``) come after the plug-in's own ones.
    ordered = sorted(dataclasses.fields(instance), key=lambda f: f.metadata.get("rank", 0))
    for field in ordered:
        if not field.init or field.metadata.get("identity") is False:
            continue
        value = getattr(instance, field.name)
        default = field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        if default is not dataclasses.MISSING and value == default:
            continue
        parts.append(f"{field.name}={_format_value(value)}")
    return f"{name}({','.join(parts)})" if parts else name


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    cls: type[T]
    summary: str

    def parameters(self) -> list[tuple[str, str, Any]]:
        """(name, type, default) for each typed parameter, for ``idard-bench list``."""
        hints = typing.get_type_hints(self.cls)
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

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise SpecError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names()) or '(none)'}"
            ) from None

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
        hints = typing.get_type_hints(entry.cls)
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
        except TypeError as exc:
            raise SpecError(f"{self.kind} {name!r}: {exc}") from None


class Plugin:
    """Mixin for registered dataclasses: gives them their canonical ``id``."""

    registry_name: str = "?"

    @property
    def id(self) -> str:
        return canonical_id(self.registry_name, self)
