"""ResShift's VQGAN-f4 autoencoder (``autoencoder_vq_f4.pth``), the space its chain runs in.

Learned from github.com/zsyOAOA/ResShift (read, not copied): ``ldm/models/autoencoder.py``
(``VQModelTorch``, lines 12-50: encode = encoder + quant_conv, no quantisation; decode =
nearest-codebook quantisation + post_quant_conv + decoder), ``ldm/modules/vqvae/quantize.py``
(``VectorQuantizer2.forward``, about lines 271-312: nearest entry by squared distance) and
``ldm/modules/diffusionmodules/model.py`` (``Encoder``/``Decoder``/``ResnetBlock``/
``AttnBlock``/``Downsample``/``Upsample``, lines 41-200 and 452-660), configured as in
``configs/realsr_swinunet_realesrgan256_journal.yaml`` (embed_dim 3, 8192 codes, ch 128,
ch_mult 1-2-4, 2 residual blocks, no attention but the middle one). Module and parameter
names are the reference's, so the published file loads by its keys.

Equal to the authors' float32 forward pass, bit for bit on a CPU (measured against their
modules rebuilt from the fetched source, every tensor of the published layout perturbed:
encode and decode max difference 0; benchmark/results/resshift_reference_comparison.json).
Three forms are the reference's, because each changed values by float32 rounding that the
decoder amplified to 1.6e-5 (encode 3e-6) when written the idiomatic way:

* the activation is ``x * sigmoid(x)`` (``nonlinearity``, model.py lines 41-43), not
  ``F.silu``, which rounds differently;
* the middle attention is the explicit ``softmax(q k^T * c^-0.5)`` with the reference's
  ``bmm`` operand order (``AttnBlock.forward``, model.py lines 179-203), not
  ``F.scaled_dot_product_attention``, which scales before the product;
* quantisation returns ``z + (z_q - z)`` (``VectorQuantizer2.forward``, quantize.py line 298,
  the straight-through form that training needs), not ``z_q``: in float32 the two differ in
  the last bit, and that bit was most of the decode difference.

The reference switches to xformers' ``memory_efficient_attention`` when xformers is
installed (model.py lines 11-17 and 280-290) and its inference script runs under fp16
autocast (``sampler.py`` lines 185-216, ``inference_resshift.py`` line 176); idard runs
float32 unless the model's ``precision`` says otherwise.

Memory: the attention runs over at most `QUERY_CHUNK` query positions per call, since it
materialises a (queries x keys) matrix: a 256x256 latent (a 1024x1024 image) in one call
asked for 16 GiB per sample and ran out of memory on a 141 GB H200 at batch 8
(benchmark/gpu_timings.py). Rows of softmax(QK^T)V are independent, so a chunk's rows are
computed by the same products as unchunked (equal on a CPU; elsewhere a BLAS may pick
another kernel for another shape, a float32-rounding difference;
tests/measure/models/test_diffusion.py).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class VQGANConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 3
    embed_dim: int = 3
    n_embed: int = 8192
    in_channels: int = 3
    out_ch: int = 3


#: ``autoencoder_vq_f4.pth``: 4x spatial reduction, 3 latent channels.
VQ_F4 = VQGANConfig()


def _swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)`` as the reference writes it (``F.silu`` rounds differently). Without
    autograd the product is taken in place on the sigmoid, allocating no more than ``F.silu``."""
    if torch.is_grad_enabled() and x.requires_grad:
        return x * torch.sigmoid(x)
    return torch.sigmoid(x).mul_(x)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class _ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(_swish(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


#: Query positions per attention call: a (QUERY_CHUNK x keys) float32 matrix per sample,
#: 1 GiB at a 256x256 latent.
QUERY_CHUNK = 4096


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Single-head attention as the reference computes it, ``chunk`` (default `QUERY_CHUNK`)
    query positions at a time, so memory grows with ``chunk x keys``, not ``queries x keys``.

    ``q`` (B, N, C) with queries on rows; ``k`` and ``v`` (B, C, N) with positions on
    columns; returns (B, C, N): ``bmm(v, softmax(bmm(q, k) * C**-0.5)^T)``, the reference's
    products in the reference's order (model.py lines 188-198).
    """
    chunk = chunk or QUERY_CHUNK
    scale = int(q.shape[-1]) ** (-0.5)

    def rows(qc: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(torch.bmm(qc, k).mul_(scale), dim=2)
        return torch.bmm(v, weights.permute(0, 2, 1))

    if q.shape[1] <= chunk:
        return rows(q)
    return torch.cat([rows(q[:, i:i + chunk]) for i in range(0, q.shape[1], chunk)], dim=2)


class _AttnBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w).permute(0, 2, 1)
        k, v = (m(n).reshape(b, c, h * w) for m in (self.k, self.v))
        return x + self.proj_out(chunked_attention(q, k, v).reshape(b, c, h, w))


class _Down(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric padding, as the reference


class _Up(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = _ResnetBlock(channels, channels)
        self.attn_1 = _AttnBlock(channels)
        self.block_2 = _ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = cfg.ch
        for level, mult in enumerate(cfg.ch_mult):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                stage.block.append(_ResnetBlock(cin, cfg.ch * mult))
                cin = cfg.ch * mult
            if level != len(cfg.ch_mult) - 1:
                stage.downsample = _Down(cin)
            self.down.append(stage)
        self.mid = _Mid(cin)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(_swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        cin = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = _Mid(cin)
        stages: list[nn.Module] = []
        for level in reversed(range(len(cfg.ch_mult))):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(_ResnetBlock(cin, cfg.ch * cfg.ch_mult[level]))
                cin = cfg.ch * cfg.ch_mult[level]
            if level != 0:
                stage.upsample = _Up(cin)
            stages.insert(0, stage)  # self.up[0] is the finest level, as the reference
        self.up = nn.ModuleList(stages)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Each latent vector replaced by its nearest codebook entry (squared distance),
        returned as ``z + (z_q - z)``, the reference's float32 value of it."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        codes = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()
        nearest = self.embedding(d.argmin(dim=1)).view(b, h, w, c).permute(0, 3, 1, 2)
        return z + (nearest - z)


class VQGAN(nn.Module):
    """The autoencoder as a `Space` for the sampler: encode without, decode with quantisation."""

    def __init__(self, cfg: VQGANConfig = VQ_F4) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(images.to(self.quant_conv.weight.dtype)))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.to(self.quant_conv.weight.dtype)
        return self.decoder(self.post_quant_conv(self.quantize(z)))
