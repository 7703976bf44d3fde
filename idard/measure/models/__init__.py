"""Stochastic SR models: the decoder of IDA-RD."""

from idard.measure.models.base import MODELS, Samples, SRModel, seeded_normal, sha256_file
from idard.measure.models import chain, diffusion, embedded, esrgan, latency, pulse, srflow  # noqa: F401,E402  (register the built-in models)

__all__ = ["MODELS", "Samples", "SRModel", "seeded_normal", "sha256_file"]
