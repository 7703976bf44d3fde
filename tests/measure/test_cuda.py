"""On a CUDA device: a sample is the same in a batch as alone, and close to the CPU's.

Skipped, with the reason, where torch sees no CUDA device (tests/conftest.py). idard sets
no precision flags, so torch's defaults hold: cuDNN convolutions may use TF32 on Ampere
and later, hence the 2e-3 tolerances where convolutions are involved (one TF32 step is
about 1e-3 relative; SRFlow's unclamped samples reach values near 50 on random LR, so its
tolerance is relative too; on the CPU, batched and alone differ by 8e-5 relative there).
The PULSE generator here is matmul only, which stays float32. Checked on the CPU with
"cuda" replaced by "cpu": the PULSE, LPIPS and records tests pass, and the SRFlow one is
within these tolerances (3.6e-3 absolute, 8e-5 relative at most).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from idard.measure.distortions import DISTORTIONS
from idard.measure.evaluate import evaluate
from idard.measure.images import RGBImage
from idard.measure.models import MODELS
from idard.measure.models.pulse.optimize import PulseSettings, invert
from tests.measure.models.test_pulse_search import RecordingGenerator, _target

pytestmark = pytest.mark.gpu

SEEDS = [11, 12, 13]


def _lr(batch: int = 2, size: int = 12) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(3))


def test_srflow_batched_equals_alone_and_the_cpu_on_cuda() -> None:
    model = MODELS.create("srflow-tiny-4x").to("cuda")
    lr = _lr().cuda()
    with torch.inference_mode():
        batch = model.sample(lr, SEEDS)
        for b in range(lr.shape[0]):
            for k, seed in enumerate(SEEDS):
                alone = model.sample(lr[b : b + 1], [seed])[0, 0]
                torch.testing.assert_close(alone, batch[b, k], atol=2e-3, rtol=2e-3)
        cpu = MODELS.create("srflow-tiny-4x").to("cpu").sample(lr.cpu(), SEEDS)
    torch.testing.assert_close(batch.cpu(), cpu, atol=2e-3, rtol=2e-3)
    assert (batch[:, 0] - batch[:, 1]).abs().mean() > 1e-3  # the seeds still differ


def test_pulse_search_batched_equals_alone_and_the_cpu_on_cuda() -> None:
    settings = PulseSettings(steps=5, eps=0.0)
    target = _target()
    together = invert(RecordingGenerator().cuda(), target.cuda(), [4, 9], settings)
    alone = invert(RecordingGenerator().cuda(), target[1:].cuda(), [9], settings)
    on_cpu = invert(RecordingGenerator(), target, [4, 9], settings)
    torch.testing.assert_close(together.images[1:], alone.images, atol=1e-5, rtol=0)
    torch.testing.assert_close(together.images.cpu(), on_cpu.images, atol=1e-4, rtol=0)


def test_lpips_on_cuda_equals_the_cpu() -> None:
    gen = torch.Generator().manual_seed(5)
    ref = torch.rand(1, 3, 64, 64, generator=gen)
    dist = (ref + 0.1 * torch.randn(4, 3, 64, 64, generator=gen)).clamp(0, 1)
    cpu = DISTORTIONS.create("lpips-alex")(ref, dist)
    cuda = DISTORTIONS.create("lpips-alex").to("cuda")(ref, dist)
    assert cuda.device.type == "cpu" and cuda.dtype == torch.float64  # results always come back as float64
    torch.testing.assert_close(cuda, cpu, atol=2e-3, rtol=0)


def test_records_computed_on_cuda_match_the_cpus() -> None:
    rng = np.random.default_rng(0)
    image = RGBImage("photo", rng.random((48, 48, 3)).astype(np.float32))
    kwargs = dict(seeds=[9, 2], metrics=["lpips-alex", "psnr"])
    on_cuda = evaluate([image], ["bicubic", "box"], "srflow-tiny-4x", device="cuda", **kwargs)
    on_cpu = evaluate([image], ["bicubic", "box"], "srflow-tiny-4x", device="cpu", **kwargs)
    assert set(on_cuda["device"]) == {"cuda"} and on_cuda["finite"].all()
    joined = on_cuda.join(on_cpu, on=["image", "downscaler", "model", "metric", "seed"], suffix="_cpu")
    assert joined.height == on_cuda.height == 8
    lpips = joined.filter(pl.col("metric") == "lpips-alex")
    psnr = joined.filter(pl.col("metric") == "psnr")
    np.testing.assert_allclose(lpips["value"], lpips["value_cpu"], atol=2e-3)
    np.testing.assert_allclose(psnr["value"], psnr["value_cpu"], atol=0.05)  # an 8-bit step may flip
