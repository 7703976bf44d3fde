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

The middle attention uses ``F.scaled_dot_product_attention`` (the reference uses xformers
when installed, else an explicit softmax), over at most `QUERY_CHUNK` query positions per
call. Its 512-wide heads have no fused kernel in torch, so each call materialises its
(queries x keys) matrix: a 256x256 latent (a 1024x1024 image) in one call asked for 16 GiB
per sample and ran out of memory on an 141 GB H200 at batch 8 (benchmark/gpu_timings.py).
Rows of softmax(QK^T)V are independent, so chunking the queries changes a value by float32
rounding at most (tests/measure/models/test_diffusion.py).
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
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


#: Query positions per attention call: a (QUERY_CHUNK x keys) float32 matrix per sample,
#: 1 GiB at a 256x256 latent.
QUERY_CHUNK = 4096


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v)`` computed ``chunk`` (default `QUERY_CHUNK`)
    query rows at a time, so memory grows with ``chunk x keys``, not ``queries x keys``."""
    chunk = chunk or QUERY_CHUNK
    if q.shape[-2] <= chunk:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[..., i:i + chunk, :], k, v)
                      for i in range(0, q.shape[-2], chunk)], dim=-2)


class _AttnBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(b, 1, c, h * w).transpose(-1, -2) for m in (self.q, self.k, self.v))
        out = chunked_attention(q, k, v)  # scale 1/sqrt(c), as the reference
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, h, w))


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
        return self.conv_out(F.silu(self.norm_out(h)))


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
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Each latent vector replaced by its nearest codebook entry (squared distance)."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        codes = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()
        return self.embedding(d.argmin(dim=1)).view(b, h, w, c).permute(0, 3, 1, 2)


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
