"""diffusers' SR pipelines behind the SRModel contract, on tiny randomly initialised
components of the real diffusers classes (saved and loaded as a user's local folder)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="the optional `diffusers` extra is not installed")
transformers = pytest.importorskip("transformers", reason="the optional `diffusers` extra is not installed")

from idard.measure.models import MODELS  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, LDMSuperResolutionPipeline,
                           StableDiffusionUpscalePipeline, UNet2DConditionModel, UNet2DModel, VQModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = tmp_path_factory.mktemp("pipelines")
    torch.manual_seed(0)
    blocks = {"layers_per_block": 1, "norm_num_groups": 8, "block_out_channels": (8, 8, 8),
              "down_block_types": ("DownEncoderBlock2D",) * 3, "up_block_types": ("UpDecoderBlock2D",) * 3}
    unet = UNet2DModel(sample_size=8, in_channels=6, out_channels=3, layers_per_block=1, block_out_channels=(16, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)
    vq = VQModel(in_channels=3, out_channels=3, latent_channels=3, num_vq_embeddings=16, **blocks)
    LDMSuperResolutionPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler()).save_pretrained(out / "ldm")

    (out / "tok").mkdir()
    (out / "tok" / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}))
    (out / "tok" / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(out / "tok" / "vocab.json"), str(out / "tok" / "merges.txt"), model_max_length=8)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
                                        vocab_size=8, max_position_embeddings=8, projection_dim=16,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet2 = UNet2DConditionModel(sample_size=8, in_channels=7, out_channels=4, layers_per_block=1,
                                 block_out_channels=(16, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                 attention_head_dim=4, norm_num_groups=8, num_class_embeds=351)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.08333, **blocks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        StableDiffusionUpscalePipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet2,
                                       low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(),
                                       safety_checker=None, feature_extractor=None, watermarker=None,
                                       max_noise_level=350).save_pretrained(out / "sdup")
    return {"ldm": out / "ldm", "sdup": out / "sdup"}


SPECS = {
    "ldm": "diffusers-ldm-sr(model='{folder}', steps=3, max_batch=3)",
    "sdup": "diffusers-sd-upscale(model='{folder}', steps=3, noise_level=30, guidance=2.0, max_batch=3)",
}


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_pipeline_samples_are_4x_in_range_per_seed_and_batch_independent(folders: dict[str, Path], kind: str) -> None:
    model = MODELS.create(SPECS[kind].format(folder=folders[kind]))
    assert model.scale == 4 and len(model.weights_hash) == 64
    lr = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))  # sides not a multiple of anything
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sr = model.sample(lr, [0, 1])  # 4 rows through calls of at most 3
        alone = model.sample(lr[1:], [1])
        again = model.sample(lr, [0, 1])
    assert sr.shape == (2, 2, 3, 24, 20)
    assert float(sr.min()) >= 0.0 and float(sr.max()) <= 1.0
    torch.testing.assert_close(sr[1, 1], alone[0, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(sr, again, atol=0, rtol=0)
    assert float((sr[0, 0] - sr[0, 1]).abs().mean()) > 1e-4  # seeds give different samples


def test_sampling_settings_are_in_the_id() -> None:
    a = MODELS.create("diffusers-sd-upscale(model=up, noise_level=50, guidance=4.0, max_batch=2)")
    assert "noise_level=50" in a.id and "guidance=4.0" in a.id and "max_batch" not in a.id
    assert MODELS.create("diffusers-ldm-sr(model=x, steps=50)").id == "diffusers-ldm-sr(model='x',steps=50)"
