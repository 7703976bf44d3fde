"""ResShift's denoiser: a UNet with Swin-Transformer layers, conditioned on the LR image.

Learned from github.com/zsyOAOA/ResShift (read, not copied): ``models/unet.py``
(``UNetModelSwin``, lines 603-895; ``ResBlock``, ``Downsample``, ``Upsample``, lines 53-206),
``models/swin_transformer.py`` (``WindowAttention``, ``SwinTransformerBlock``,
``BasicLayer``, ``PatchEmbed``, ``PatchUnEmbed``, lines 17-530) and ``models/basic_ops.py``
(GroupNorm with 32 groups, the sinusoidal step embedding). Module and parameter names are
the reference's, so published checkpoints load by their keys.

Three behaviours of the reference are reproduced on purpose, because the published weights
were trained with them:

* the shifted-window attention mask is always recomputed from the input size (the
  reference compares a list with a tuple, so its stored ``attn_mask`` buffer is never used),
  and that computation (``calculate_mask``, lines 211-234) indexes a (1, 1, H, W) tensor
  as if it were (1, H, W, 1) and flattens each window column-major: regions are labelled
  by row bands of the window *row*, read along the token *column* (`_reference_mask`);
* layers built for a resolution no larger than the window use one window of that size and
  no shift;
* the stored ``attn_mask`` and ``relative_position_index`` buffers exist (they are in the
  checkpoints) even though the mask is recomputed.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from idard.measure.models.diffusion.layers import timestep_embedding


@dataclasses.dataclass(frozen=True)
class SwinUNetConfig:
    """``model.params`` of ResShift's real-SR configs (all three 4x checkpoints share it)."""

    image_size: int = 64
    in_channels: int = 3
    model_channels: int = 160
    out_channels: int = 3
    attention_resolutions: tuple[int, ...] = (64, 32, 16, 8)
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: tuple[int, ...] = (2, 2, 2, 2)
    num_head_channels: int = 32
    swin_depth: int = 2
    swin_embed_dim: int = 192
    window_size: int = 8
    mlp_ratio: float = 4.0
    lq_size: int = 64


#: ``resshift_realsrx4_s4_v3.pth``, ``resshift_realsrx4_s15_v1.pth``, ``..._v2.pth``.
REALSR_X4 = SwinUNetConfig()


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels)


class ResBlock(nn.Module):
    """GN-SiLU-conv, scale-shift by the step embedding, GN-SiLU-conv, residual."""

    def __init__(self, cin: int, emb: int, cout: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(_gn(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout))
        self.out_layers = nn.Sequential(_gn(cout), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        return self.skip_connection(x) + self.out_layers[1:](h)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _relative_position_index(window: int) -> torch.Tensor:
    """(w*w, w*w) index into the (2w-1)^2 bias table, as Swin defines it."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # 2, N
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


def _reference_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """The reference's shifted-window mask (num_windows, N, N): 0 or -100 (module docstring).

    Rows of the image are labelled in three bands, [0, h-window), [h-window, h-shift) and
    [h-shift, h) (with shift 0 the whole image is one band); token (a, b) of the window in
    window-row i gets the label of image row i*window + b.
    """
    rows = torch.arange(h)
    if shift == 0:
        label = torch.zeros(h, dtype=torch.long)
    else:
        label = (rows >= h - window).long() + (rows >= h - shift).long()
    nh, nw = h // window, w // window
    per_token = label.view(nh, window)[:, None, None, :].expand(nh, nw, window, window).reshape(nh * nw, -1)
    diff = per_token[:, None, :] - per_token[:, :, None]
    return torch.zeros(diff.shape).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", _relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(b // nw, nw, self.heads, n, n) + mask[None, :, None]).view(b, self.heads, n, n)
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """(Shifted-)window attention and an MLP on (B, C, H, W) maps, GroupNorm before each."""

    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        if resolution <= window:  # one window covers the map: no shift
            window, shift = resolution, 0
        self.window, self.shift = window, shift
        self.norm1 = _gn(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = _gn(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        # In the checkpoints, never read (module docstring).
        self.register_buffer("attn_mask", _reference_mask(resolution, resolution, window, shift) if shift else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(2, 3))
        windows = y.view(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1).reshape(-1, ws * ws, c)
        mask = _reference_mask(h, w, ws, self.shift).to(x.device, x.dtype) if self.shift else None
        out = self.attn(windows, mask)
        y = out.view(b, h // ws, w // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(2, 3))
        x = x + y
        return x + self.mlp(self.norm2(x))


class _Conv1x1(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class BasicLayer(nn.Module):
    """1x1 embedding, ``depth`` Swin blocks (every second one shifted), 1x1 un-embedding."""

    def __init__(self, channels: int, cfg: SwinUNetConfig, resolution: int) -> None:
        super().__init__()
        heads = cfg.swin_embed_dim // cfg.num_head_channels
        self.patch_embed = _Conv1x1(channels, cfg.swin_embed_dim)
        self.patch_unembed = _Conv1x1(cfg.swin_embed_dim, channels)
        self.blocks = nn.ModuleList(
            SwinBlock(cfg.swin_embed_dim, resolution, heads, cfg.window_size,
                      0 if i % 2 == 0 else cfg.window_size // 2, cfg.mlp_ratio)
            for i in range(cfg.swin_depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for block in self.blocks:
            x = block(x)
        return self.patch_unembed(x)


class _Seq(nn.ModuleList):
    """The reference's ``TimestepEmbedSequential``: ResBlocks get the step embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class SwinUNet(nn.Module):
    """x0 prediction from (scaled latent x_t, step, LR image in [-1, 1])."""

    def __init__(self, cfg: SwinUNetConfig = REALSR_X4) -> None:
        super().__init__()
        if cfg.lq_size != cfg.image_size:
            raise ValueError("only configurations with lq_size == image_size (the published 4x SR ones) are built")
        self.config = cfg
        mc = cfg.model_channels
        emb = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.feature_extractor = nn.Identity()
        ch = int(cfg.channel_mult[0] * mc)
        input_ch = ch
        self.input_blocks = nn.ModuleList([_Seq([nn.Conv2d(cfg.in_channels + 3, ch, 3, padding=1)])])
        skips = [ch]
        ds = cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for j in range(cfg.num_res_blocks[level]):
                layers: list[nn.Module] = [ResBlock(ch, emb, int(mult * mc))]
                ch = int(mult * mc)
                if ds in cfg.attention_resolutions and j == 0:
                    layers.append(BasicLayer(ch, cfg, ds))
                self.input_blocks.append(_Seq(layers))
                skips.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(_Seq([Downsample(ch)]))
                skips.append(ch)
                ds //= 2
        self.middle_block = _Seq([ResBlock(ch, emb, ch), BasicLayer(ch, cfg, ds), ResBlock(ch, emb, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks[level] + 1):
                layers = [ResBlock(ch + skips.pop(), emb, int(mc * mult))]
                ch = int(mc * mult)
                if ds in cfg.attention_resolutions and i == 0:
                    layers.append(BasicLayer(ch, cfg, ds))
                if level and i == cfg.num_res_blocks[level]:
                    layers.append(Upsample(ch))
                    ds *= 2
                self.output_blocks.append(_Seq(layers))
        self.out = nn.Sequential(_gn(ch), nn.SiLU(), nn.Conv2d(input_ch, cfg.out_channels, 3, padding=1))

    @property
    def multiple(self) -> int:
        """LR sides must be multiples of this (the reference pads to ``lq_size``)."""
        return self.config.lq_size

    def forward(self, x: torch.Tensor, t: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels))
        h = torch.cat([x, self.feature_extractor(lq)], dim=1)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

