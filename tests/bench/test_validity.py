"""``idard-bench validate-model``: a decoder's validity card.

The criteria are tested on the probe's real samples of the embedded model and of decoders
made to fail one way each (fault injection around the real model: seeds ignored, a sample
that depends on its batch), and on records whose ladders are made to fail; the command is
tested end to end on a real local Ray with the embedded models (valid) and a deterministic
decoder (invalid, with the reason).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from idard.bench.suite.checks import evaluate_checks, parse_checks
from idard.bench.cli import app
from idard.bench.report.validity import card_html, read_card, render_markdown, validity_section
from idard.bench.store import RecordStore
from idard.bench.run.validity import (
    FAIL, INCONCLUSIVE, INVALID, PASS, UNDECIDED, VALID, Size, Thresholds, build_card, paper_validation,
    probe_image, run_probe, stability, stochasticity, validity_suite, verdict, Criterion,
)
from idard.measure.distortions import DISTORTIONS
from idard.measure.images import crop_to_multiple, load_image
from idard.measure.ladders import PAPER_LADDERS
from idard.measure.models import MODELS
from idard.measure.records import RECORD_SCHEMA
from idard.measure.statistics import ida_rd_table
from tests.bench.conftest import write_crops

ray = pytest.importorskip("ray")
runner = CliRunner()
SEEDS = [0, 1, 2]


# ------------------------------------------------------------------------ decoders made to fail

@dataclasses.dataclass
class FixedNoise:
    """A decoder made to collapse: every seed draws seed 0's noise (the sample looks random,
    and is the same for every seed)."""

    inner: Any

    @property
    def id(self) -> str:
        return f"fixed-noise({self.inner.id})"

    @property
    def scale(self) -> int:
        return self.inner.scale

    @property
    def weights_hash(self) -> str:
        return self.inner.weights_hash

    def to(self, device):
        self.inner.to(device)
        return self

    def sample(self, lr, seeds, temperature=None):
        return self.inner.sample(lr, [0] * len(seeds), temperature)


class BatchDependent(FixedNoise):
    """A decoder whose sample depends on what else is in its batch (e.g. batch statistics)."""

    @property
    def id(self) -> str:
        return f"batch-dependent({self.inner.id})"

    def sample(self, lr, seeds, temperature=None):
        return self.inner.sample(lr, seeds, temperature) + 0.01 * (lr.shape[0] * len(seeds) - 1)


class Counting(FixedNoise):
    """The real model, counting its calls (to see what a resumed probe recomputes)."""

    calls = 0

    @property
    def id(self) -> str:
        return self.inner.id

    def sample(self, lr, seeds, temperature=None):
        Counting.calls += 1
        return self.inner.sample(lr, seeds, temperature)


@pytest.fixture(scope="module")
def embedded():
    return MODELS.create("srflow-tiny-4x").to("cpu")


@pytest.fixture(scope="module")
def lpips():
    return DISTORTIONS.create("lpips-alex")


@pytest.fixture(scope="module")
def hr(tmp_path_factory):
    path = write_crops(tmp_path_factory.mktemp("hr"), 1, size=48)[0]
    return crop_to_multiple(load_image(path), 4)


# ------------------------------------------------------------------------ stochasticity

def test_the_embedded_model_passes_stochasticity_on_its_real_samples(embedded, lpips, hr) -> None:
    result = probe_image(embedded, lpips, hr, SEEDS, "cpu", alone=True)
    criterion = stochasticity({"a": result}, Thresholds())
    assert criterion.status == PASS, criterion.reason
    assert result["pixel_std"] > 1 / 255 and 0 < result["lpips_between"] < result["lpips_to_hr"]
    assert result["batch_max_diff"] < Thresholds().batch_tolerance


def test_a_decoder_made_to_collapse_fails_stochasticity_with_the_reason(embedded, lpips, hr) -> None:
    result = probe_image(FixedNoise(embedded), lpips, hr, SEEDS, "cpu", alone=False)
    assert result["lpips_to_hr"] > 0.01  # a real reconstruction, just the same one for every seed
    criterion = stochasticity({"a": result}, Thresholds())
    assert criterion.status == FAIL
    assert criterion.reason.startswith("samples collapse: per-pixel std 0.0000")
    assert {i.label: i.status for i in criterion.items} == {
        "per-pixel std over seeds": FAIL, "diversity: pairwise LPIPS / LPIPS to HR": FAIL}


def test_samples_that_vary_too_little_are_near_deterministic_not_valid() -> None:
    probe = {"a": {"pixel_std": 0.01, "lpips_between": 0.003, "lpips_to_hr": 0.1}}  # ratio 0.03
    criterion = stochasticity(probe, Thresholds())
    assert criterion.status == UNDECIDED and criterion.reason.startswith("near-deterministic")


def test_stochasticity_without_two_finite_samples_cannot_tell() -> None:
    assert stochasticity({"a": {"error": "ImageError: x"}}, Thresholds()).status == UNDECIDED


# ------------------------------------------------------------------------ stability

def test_a_sample_that_depends_on_its_batch_fails_stability(embedded, lpips, hr) -> None:
    result = probe_image(BatchDependent(embedded), lpips, hr, SEEDS, "cpu", alone=True)
    counts = {"records": 10, "errors": 0, "samples": 10, "nonfinite": 0, "flagged": 0, "unconverged": 0}
    criterion = stability(counts, {"a": result}, Thresholds())
    assert criterion.status == FAIL
    assert "batched equals alone per seed: max |batched - alone| 5.00e-02" in criterion.reason


@pytest.mark.parametrize(("counts", "status", "why"), [
    ({"nonfinite": 2, "samples": 100}, FAIL, "non-finite samples: 2 of 100 (2.0%"),
    ({"nonfinite": 1, "samples": 100}, PASS, ""),
    ({"flagged": 100, "unconverged": 6}, FAIL, "unconverged samples: 6 of 100 (6.0%"),
    ({"errors": 3}, UNDECIDED, "error records: 3"),
])
def test_stability_reads_the_rates_of_the_records(counts, status, why) -> None:
    base = {"records": 100, "errors": 0, "samples": 100, "nonfinite": 0, "flagged": 0, "unconverged": 0}
    criterion = stability({**base, **counts}, {"a": {"batch_max_diff": 0.0}}, Thresholds())
    assert criterion.status == status and why in criterion.reason


# ------------------------------------------------------------------------ the paper's validation

def _records(losses: dict[str, float], nonfinite: tuple[str, ...] = ()) -> pl.DataFrame:
    """Records of two images x two seeds with the given IDA-RD per downscaler id."""
    rows = []
    for downscaler, loss in losses.items():
        for image, shift in (("a", 0.0), ("b", 0.01)):
            for seed in (0, 1):
                bad = downscaler in nonfinite
                rows.append({"image": image, "downscaler": downscaler, "model": "m", "metric": "lpips-alex",
                             "seed": seed, "scale": 4, "value": math.nan if bad else loss + shift + seed * 1e-3,
                             "finite": not bad, "higher_is_better": False,
                             "error": "non-finite SR sample (3 NaN/Inf values)" if bad else None})
    return pl.DataFrame(rows, schema=RECORD_SCHEMA)


def _paper_losses() -> dict[str, float]:
    """IDA-RD that follows the paper: rising along every ladder, nearest above the others."""
    losses = {"bicubic": 0.10, "bilinear": 0.11, "nearest": 0.20}
    for ladder in PAPER_LADDERS:
        losses.update({d: 0.3 + 0.1 * rung for rung, d in enumerate(ladder.ids())})
    return losses


def _validation(records: pl.DataFrame):
    suite = validity_suite("srflow-tiny-4x", ["bundled:held-out"], Size())
    table = ida_rd_table(records, n_boot=100)
    return paper_validation(evaluate_checks(parse_checks(list(suite.checks), "s"), table, records.lazy()), table)


def test_a_decoder_that_follows_the_paper_passes_its_validation() -> None:
    criterion = _validation(_records(_paper_losses()))
    assert criterion.status == PASS, criterion.reason
    assert [i.values["rho"] for i in criterion.items[:5]] == [1, 1, 1, -1, -1]


def test_a_ladder_of_the_wrong_sign_or_nearest_below_bicubic_fails_naming_it() -> None:
    losses = _paper_losses()
    blur = PAPER_LADDERS[0].ids()
    losses.update({d: 0.6 - 0.1 * rung for rung, d in enumerate(blur)})  # IDA-RD falls as blur grows
    losses["nearest"] = 0.05
    criterion = _validation(_records(losses))
    assert criterion.status == FAIL
    assert "Gauss. blur: rho -1.00, paper's +1" in criterion.reason
    assert "nearest loses more than bicubic and bilinear: bicubic 0.1055" in criterion.reason


def test_a_ladder_with_a_rung_of_failed_samples_cannot_tell() -> None:
    rung = PAPER_LADDERS[1].ids()
    criterion = _validation(_records(_paper_losses(), nonfinite=(list(rung)[1],)))
    assert criterion.status == UNDECIDED and "Gauss. noise: a rung has no IDA-RD" in criterion.reason


# ------------------------------------------------------------------------ verdict and card

def test_the_verdict_is_invalid_on_any_failure_and_valid_only_when_all_pass() -> None:
    def c(name: str, status: str) -> Criterion:
        return Criterion(name, status, f"{name} because", ())

    assert verdict([c("a", PASS), c("b", PASS)]) == (VALID, "every criterion passes")
    assert verdict([c("a", PASS), c("b", UNDECIDED)]) == (INCONCLUSIVE, "b: b because")
    assert verdict([c("a", FAIL), c("b", UNDECIDED), c("c", FAIL)]) == (INVALID, "a: a because; c: c because")


def test_the_card_renders_as_markdown_and_as_an_escaped_html_fragment() -> None:
    suite = validity_suite("srflow-tiny-4x", ["bundled:held-out"], Size())
    records = _records(_paper_losses()).with_columns(model=pl.lit(suite.models[0]))
    probe = {"a": {"pixel_std": 0.0, "lpips_between": 0.0, "lpips_to_hr": 0.2, "batch_max_diff": 0.0}}
    card = json.loads(json.dumps(build_card(suite, records.lazy(), probe, Thresholds(), Size(), "abc")))
    assert card["verdict"] == INVALID and card["reason"].startswith("stochasticity: samples collapse")
    assert [c["status"] for c in card["criteria"]] == [FAIL, PASS, PASS]
    assert [row["downscaler"] for row in card["table"]][:5] == ["bicubic", "bilinear", "nearest", "blur(sigma=1.0)",
                                                                "blur(sigma=2.0)"]
    text = render_markdown(card)
    assert "**Verdict: invalid** — stochasticity: samples collapse" in text and "| Gauss. blur | rho +1.00" in text
    card["model"] = "<script>"
    fragment = card_html(card)
    assert fragment.startswith("<section id=validity-card>") and "&lt;script&gt;" in fragment
    assert "<script>" not in fragment


def test_a_run_without_a_card_has_no_html_section(tmp_path: Path) -> None:
    assert validity_section(str(tmp_path)) == "" and read_card(str(tmp_path)) is None


# ------------------------------------------------------------------------ the probe resumes

def test_the_probe_is_kept_and_only_a_changed_image_is_probed_again(tmp_path: Path, embedded) -> None:
    paths = write_crops(tmp_path / "images", 2, size=32)
    suite = validity_suite("srflow-tiny-4x", [str(tmp_path / "images")], Size(samples=2))
    store = RecordStore(tmp_path / "run")
    model, Counting.calls = Counting(embedded), 0
    first = run_probe(suite, store, 1, model=model, log=lambda _: None)
    assert Counting.calls == (1 + 2) + 1  # image 0: one batch and each seed alone; image 1: one batch
    again = run_probe(suite, store, 1, model=model, log=lambda _: None)
    assert again == first and Counting.calls == 4
    paths[1].write_bytes(paths[0].read_bytes())  # image 1 changed: probed again, alone
    run_probe(suite, store, 1, model=model, log=lambda _: None)
    assert Counting.calls == 5
    assert set(json.loads((tmp_path / "run" / "validity" / "probe.json").read_text())["images"]) == {"img000", "img001"}


def test_a_bad_spec_or_image_source_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate-model", "nosuch", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "unknown SR model 'nosuch'" in result.output
    result = runner.invoke(app, ["validate-model", "srflow-tiny-4x", "--images", str(tmp_path / "none"),
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and f"image source '{tmp_path / 'none'}'" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------ the command, on Ray

@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # ours alone
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("validity") / "images"
    write_crops(folder, 2, size=64)
    return folder


def _validate(spec: str, images: Path, out: Path, *extra: str):
    return runner.invoke(app, ["validate-model", spec, "--images", str(images), "--samples", "2",
                                  "--out", str(out), *extra])


def test_the_embedded_model_is_valid_and_a_second_run_computes_nothing(local_ray, images, tmp_path) -> None:
    result = _validate("srflow-tiny-4x", images, tmp_path / "run")
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["verdict"] == VALID and card["size"]["images"] == 2 and card["size"]["samples"] == 2
    assert "verdict: valid: every criterion passes" in result.output
    assert (tmp_path / "run" / "card.md").read_text().startswith("# Validity card: srflow-tiny-4x")
    records = RecordStore(tmp_path / "run").scan().collect()
    assert records.height == 2 * 18 * 2  # a normal run directory: images x downscalers x seeds
    again = _validate("srflow-tiny-4x", images, tmp_path / "run")
    assert again.exit_code == 0 and "nothing to compute: all 72 records" in again.output
    assert "probe:" not in again.output  # the probe's results were kept too
    assert json.loads((tmp_path / "run" / "card.json").read_text())["criteria"] == card["criteria"]
    page = runner.invoke(app, ["report", str(tmp_path / "run"), "--html", "--grid-images", "0",
                                    "--bootstrap", "100"])
    assert page.exit_code == 0, page.output
    assert "<section id=validity-card><h2>Validity card: srflow-tiny-4x" in (tmp_path / "run" / "report.html").read_text()


def test_a_deterministic_decoder_is_invalid_for_its_collapse(local_ray, images, tmp_path) -> None:
    result = _validate("srflow-tiny-4x(heat=0)", images, tmp_path / "run")
    assert result.exit_code == 1, result.output
    card = read_card(str(tmp_path / "run"))
    assert card["verdict"] == INVALID
    assert card["reason"].startswith("stochasticity: samples collapse: per-pixel std 0.0000")
    assert "verdict: invalid: stochasticity: samples collapse" in result.output


def test_the_embedded_diffusion_model_is_valid(local_ray, images, tmp_path) -> None:
    result = _validate("resshift-tiny-4x", images, tmp_path / "run")
    assert result.exit_code == 0, result.output


@pytest.mark.long  # 6-9 min each on 2 cores; the tiny-size runs above always run
@pytest.mark.parametrize("spec", ["srflow-tiny-4x", "resshift-tiny-4x"])
def test_the_embedded_models_are_valid_at_the_default_size(local_ray, tmp_path, spec) -> None:
    result = runner.invoke(app, ["validate-model", spec, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
