"""Plug-in specs: the strings suites and the command line name plug-ins with."""

from __future__ import annotations

import pytest

from idard.measure.downscalers import DOWNSCALERS
from idard.measure.registry import SpecError, parse_spec


def test_specs_parse_literals_and_bare_words() -> None:
    assert parse_spec("bicubic") == ("bicubic", {})
    assert parse_spec("blur(sigma=2, base=nearest, order='before')") == (
        "blur", {"sigma": 2, "base": "nearest", "order": "before"})
    assert parse_spec("x(flag=True, none=None, t=(1, 2))") == ("x", {"flag": True, "none": None, "t": (1, 2)})
    assert parse_spec("pulse(generator=dcgan-faces, weights=ckpt/G_v2.pt)") == (
        "pulse", {"generator": "dcgan-faces", "weights": "ckpt/G_v2.pt"})
    with pytest.raises(SpecError, match="quote values such as absolute paths"):
        parse_spec("srflow(weights=/models/x.pth)")


def test_code_is_never_evaluated() -> None:
    with pytest.raises(SpecError, match="must be a literal"):
        parse_spec("blur(sigma=__import__('os').getpid())")
    with pytest.raises(SpecError, match="must be named"):
        parse_spec("blur(2)")


def test_canonical_ids_round_trip_through_the_registry() -> None:
    for spec in ("blur(sigma=2, base=nearest)", "noise(sigma=0.1, seed=3)", "bicubic", "quantize(levels=5)"):
        made = DOWNSCALERS.create(spec)
        assert DOWNSCALERS.create(made.id).id == made.id
