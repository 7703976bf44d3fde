"""Every registered plug-in: a spec that validates builds the same plug-in again from its
spec and its id, for random valid parameters (huge, tiny and negative floats, strings with
quotes, commas and brackets), so no worker ever fails to parse what a suite accepted."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idard.measure.distortions import DISTORTIONS
from idard.measure.downscalers import DOWNSCALERS
from idard.measure.models import MODELS
from idard.measure.registry import SpecError

ENTRIES = [(registry, entry) for registry in (DOWNSCALERS, MODELS, DISTORTIONS) for entry in registry]

_FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 2.2250738585072014e-308, 1e-300, 0.1, 1.0 / 3.0]),
)
_STRINGS = st.one_of(st.text(max_size=12), st.sampled_from(["a, b", "it's", 'say "x"', "(x)", "x=y", "é/ü", "\\"]))


def _values(annotation: typing.Any) -> st.SearchStrategy:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        return st.one_of(*(_values(a) for a in typing.get_args(annotation)))
    if origin in (tuple, list):
        inner = (typing.get_args(annotation) or (int,))[0]
        return st.lists(_values(inner), max_size=3).map(tuple)
    return {float: _FLOATS, int: st.integers(-(2**70), 2**70), bool: st.booleans(), str: _STRINGS,
            type(None): st.none()}.get(annotation, st.none())


@pytest.mark.parametrize(("registry", "entry"), ENTRIES, ids=[f"{r.kind}:{e.name}" for r, e in ENTRIES])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=st.data())
def test_spec_and_id_round_trip(registry, entry, data) -> None:
    hints = typing.get_type_hints(entry.cls)
    fields = [f for f in dataclasses.fields(entry.cls) if f.init and f.metadata.get("path") != "folder"]
    chosen = data.draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields))) if fields else []
    params = {f.name: data.draw(_values(hints.get(f.name, str))) for f in chosen}
    if entry.name == "precomputed":
        params.update(folder="lr_x4", content=params.get("content") or "0123456789ab")
    try:
        made = registry.create({"name": entry.name, **params})
        made_id = made.id
    except SpecError:
        return  # invalid for this plug-in (e.g. sigma < 0): refused with a clear error
    again = registry.create(made.spec)
    assert again.spec == made.spec
    assert again.id == made_id
    assert registry.create(made_id).id == made_id
    assert registry.match(made.spec, [made_id]) == made_id
