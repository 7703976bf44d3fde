"""PULSE: super-resolution by GAN inversion (Menon et al., CVPR 2020)."""

from idard.measure.models.pulse import model  # noqa: F401  (registers ``pulse``)
