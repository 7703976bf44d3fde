"""PULSE's latent prior for StyleGAN: the Gaussian fit is computed once per mapping file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from idard.measure.models.pulse.generators import GeneratorWeightsError
from idard.measure.models.pulse.stylegan import StyleGANConfig, StyleGANGenerator
from idard.measure.models.pulse.stylegan_inversion import (
    cached_gaussian_fit,
    gaussian_fit_cache,
    load_gaussian_fit,
)


@pytest.fixture
def small_stylegan() -> StyleGANGenerator:
    """A small StyleGAN whose fit counts its calls (and maps 2,000 z, not a million)."""
    torch.manual_seed(0)
    stylegan = StyleGANGenerator(StyleGANConfig(resolution=8, latent=16, fmap_base=64, fmap_max=16))
    fit = stylegan.gaussian_fit
    stylegan.fits = 0

    def counted() -> tuple[torch.Tensor, torch.Tensor]:
        stylegan.fits += 1
        return fit(n=2000, batch=1000)

    stylegan.gaussian_fit = counted
    return stylegan


@pytest.fixture
def mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IDARD_WEIGHTS_DIR", str(tmp_path / "cache"))
    path = tmp_path / "mapping.pt"
    path.write_bytes(b"stands for a mapping network's weights: only its hash matters here")
    return path


def test_the_fit_is_computed_once_then_read_from_the_weights_cache(small_stylegan, mapping) -> None:
    first = cached_gaussian_fit(small_stylegan, mapping)
    assert gaussian_fit_cache(mapping).is_file()
    second = cached_gaussian_fit(small_stylegan, mapping)
    assert small_stylegan.fits == 1
    for a, b in zip(first, second):
        assert torch.equal(a, b) and a.shape == (16,)


def test_the_cache_is_keyed_by_the_mapping_files_content(small_stylegan, mapping) -> None:
    cached_gaussian_fit(small_stylegan, mapping)
    before = gaussian_fit_cache(mapping)
    mapping.write_bytes(b"retrained mapping network")
    assert gaussian_fit_cache(mapping) != before
    cached_gaussian_fit(small_stylegan, mapping)
    assert small_stylegan.fits == 2


def test_an_unwritable_cache_costs_time_not_the_run(small_stylegan, mapping, tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("IDARD_WEIGHTS_DIR", str(blocker))
    with pytest.warns(UserWarning, match="could not cache the Gaussian fit"):
        mean, std = cached_gaussian_fit(small_stylegan, mapping)
    assert torch.isfinite(mean).all() and (std > 0).all()


def test_a_fit_file_without_mean_and_std_is_refused_by_name(tmp_path) -> None:
    path = tmp_path / "gaussian_fit.pt"
    torch.save({"mu": torch.zeros(3)}, path)
    with pytest.raises(GeneratorWeightsError, match="gaussian_fit.pt: expected a dict with 'mean' and 'std'"):
        load_gaussian_fit(path)
