"""Downscalers: the encoders whose information loss IDA-RD measures.

One module per family, each registering its plug-ins in `DOWNSCALERS` on import:

* `classic`: Pillow's filters (bicubic, bilinear, nearest, lanczos, box, hamming).
* `synthetic`: the paper's validation ladders (blur, noise, contrast, quantize).
* `bsrgan`: BSRGAN's degradation chain with fixed parameters (supplement Table 2).
* `precomputed`: LR images made elsewhere, read from a folder.
* `dpid`: detail-preserving downscaling (Weber et al. 2016).
* `perceptual`: SSIM-optimal downscaling (Öztireli & Gross 2015).
* `l0`: L0-regularised downscaling (after Liu et al. 2018).

`base` holds the contract (`Downscaler`), the registry and the resampling they share.
"""

from idard.measure.downscalers.base import DOWNSCALERS, Downscaler, Filter, image_seed, lr_size, resize
from idard.measure.downscalers import bsrgan, classic, dpid, l0, perceptual, precomputed, synthetic  # noqa: F401 - registers
from idard.measure.downscalers.bsrgan import BSRGAN
from idard.measure.downscalers.dpid import DPID
from idard.measure.downscalers.l0 import L0
from idard.measure.downscalers.perceptual import Perceptual
from idard.measure.downscalers.precomputed import Precomputed
from idard.measure.downscalers.synthetic import Blur, Contrast, Noise, Quantize

__all__ = ["DOWNSCALERS", "BSRGAN", "Blur", "Contrast", "DPID", "Downscaler", "Filter", "L0", "Noise", "Perceptual",
           "Precomputed", "Quantize", "image_seed", "lr_size", "resize"]
