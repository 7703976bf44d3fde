"""Downscalers: the encoders whose information loss IDA-RD measures.

One module per family, each registering its plug-ins in `DOWNSCALERS` on import:

* `classic`: Pillow's filters (bicubic, bilinear, nearest, lanczos, box, hamming).
* `synthetic`: the paper's validation ladders (blur, noise, contrast, quantize).
* `bsrgan`: BSRGAN's degradation chain with fixed parameters (supplement Table 2).
* `precomputed`: LR images made elsewhere, read from a folder.

`base` holds the contract (`Downscaler`), the registry and the resampling they share.
"""

from idard.measure.downscalers.base import DOWNSCALERS, Downscaler, Filter, image_seed, lr_size, resize
from idard.measure.downscalers import bsrgan, classic, precomputed, synthetic  # noqa: F401 - registers
from idard.measure.downscalers.bsrgan import BSRGAN
from idard.measure.downscalers.precomputed import Precomputed
from idard.measure.downscalers.synthetic import Blur, Contrast, Noise, Quantize

__all__ = ["DOWNSCALERS", "BSRGAN", "Blur", "Contrast", "Downscaler", "Filter", "Noise", "Precomputed",
           "Quantize", "image_seed", "lr_size", "resize"]
