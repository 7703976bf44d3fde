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
    # Paths read as bare words whatever Python's tokenizer makes of them ("4x" is no token).
    assert parse_spec("srflow(weights=/models/x.pth)") == ("srflow", {"weights": "/models/x.pth"})
    assert parse_spec("srflow(weights=ckpt/srflow-tiny-4x.safetensors, heat=0.7)") == (
        "srflow", {"weights": "ckpt/srflow-tiny-4x.safetensors", "heat": 0.7})
    assert parse_spec("x(s='a, b (c)', t=[1, (2, 3)],)") == ("x", {"s": "a, b (c)", "t": [1, (2, 3)]})
    with pytest.raises(SpecError, match="given twice"):
        parse_spec("blur(sigma=1, sigma=2)")
    with pytest.raises(SpecError, match="unclosed"):
        parse_spec("blur(base='nearest)")


def test_code_is_never_evaluated() -> None:
    with pytest.raises(SpecError, match="must be a literal"):
        parse_spec("blur(sigma=__import__('os').getpid())")
    with pytest.raises(SpecError, match="must be named"):
        parse_spec("blur(2)")


def test_canonical_ids_round_trip_through_the_registry() -> None:
    for spec in ("blur(sigma=2, base=nearest)", "noise(sigma=0.1, seed=3)", "bicubic", "quantize(levels=5)"):
        made = DOWNSCALERS.create(spec)
        assert DOWNSCALERS.create(made.id).id == made.id


def test_non_finite_parameters_are_refused_at_validation() -> None:
    """An id like blur(sigma=inf) could not be built again on a worker: refuse it up front."""
    for spec in ("blur(sigma=inf)", "blur(sigma=-inf)", "blur(sigma=nan)", "blur(sigma=1e999)",
                 {"name": "blur", "sigma": float("inf")}, {"name": "noise", "sigma": float("nan")}):
        with pytest.raises(SpecError, match="must be a finite number"):
            DOWNSCALERS.create(spec)


def test_any_spelling_maps_to_one_id_and_tables_label_what_differs() -> None:
    assert {DOWNSCALERS.create(s).id for s in ("blur", "blur(sigma=1)", "blur(sigma=1.0)", " blur( sigma = 1 ) ")} == {"blur"}
    known = ["bicubic", "blur", "blur(sigma=2.0)"]
    for spelling in ("blur", "blur(sigma=1)", "blur(sigma=1.0)"):
        assert DOWNSCALERS.match(spelling, known) == "blur"
    assert DOWNSCALERS.match("blur(sigma=2)", known) == "blur(sigma=2.0)"
    with pytest.raises(SpecError, match=r"unknown downscaler 'lanczos'; known: bicubic, blur, blur\(sigma=2.0\)"):
        DOWNSCALERS.match("lanczos", known)
    labels = DOWNSCALERS.labels(known)
    assert labels == {"bicubic": "bicubic", "blur": "blur(sigma=1.0)", "blur(sigma=2.0)": "blur(sigma=2.0)"}
    assert DOWNSCALERS.labels(["blur", "bicubic"]) == {"blur": "blur", "bicubic": "bicubic"}


def test_ids_never_hold_paths() -> None:
    from idard.measure.models import MODELS

    a = MODELS.create("srflow(weights='/data/a/SRFlow_DF2K_4X.pth', heat=0.9)")
    b = MODELS.create("srflow(weights=ckpt/SRFlow_DF2K_4X.pth, heat=0.9)")
    assert a.id == b.id == "srflow(weights='SRFlow_DF2K_4X.pth',heat=0.9)"
    assert a.spec == "srflow(weights='/data/a/SRFlow_DF2K_4X.pth',heat=0.9)"  # what a worker is sent
    url = MODELS.create("srflow(weights='https://host/m/SRFlow_DF2K_4X.pth?x=1')")
    assert url.id == "srflow(weights='SRFlow_DF2K_4X.pth')"
