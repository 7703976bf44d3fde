"""Loading ResShift's published checkpoints into idard's Swin-UNet and VQGAN-f4.

``resshift_realsrx4_s4_v3.pth``, ``resshift_realsrx4_s15_v1.pth`` and ``..._v2.pth`` share
one denoiser architecture (``model.params`` is the same in both real-SR configs); only the
chain differs (4 steps, min noise 0.2 for v3; 15 steps, 0.04 for v1/v2), which the
``resshift`` plug-in's fields carry. ``autoencoder_vq_f4.pth`` is the VQGAN all three run in.
Both files are read with ``weights_only=True`` and matched key by key.
"""

from __future__ import annotations

from pathlib import Path

import torch

from idard.measure.models.diffusion.checkpoint import load_into, read_tensors
from idard.measure.models.diffusion.swin_unet import REALSR_X4, SwinUNet, SwinUNetConfig
from idard.measure.models.diffusion.vqgan import VQ_F4, VQGAN, VQGANConfig


def load_published(
    denoiser_path: str | Path,
    autoencoder_path: str | Path,
    device: torch.device | str = "cpu",
    denoiser_config: SwinUNetConfig = REALSR_X4,
    autoencoder_config: VQGANConfig = VQ_F4,
) -> tuple[SwinUNet, VQGAN]:
    """(denoiser, autoencoder), eval mode, on ``device``; a file that does not hold the
    expected network raises `DiffusionWeightsError` naming it and the mismatching keys."""
    with torch.device("meta"):
        denoiser = SwinUNet(denoiser_config)
        autoencoder = VQGAN(autoencoder_config)
    load_into(denoiser, read_tensors(denoiser_path)[0], denoiser_path)
    # The autoencoder's file may also hold its training-time loss network; keep its own keys.
    ae_state, _ = read_tensors(autoencoder_path)
    own = set(autoencoder.state_dict())
    load_into(autoencoder, {k: v for k, v in ae_state.items() if k in own or not k.startswith("loss.")},
              autoencoder_path)
    return (denoiser.to(device).eval().requires_grad_(False),
            autoencoder.to(device).eval().requires_grad_(False))

