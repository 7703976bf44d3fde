"""Stochastic SR models: the decoder of IDA-RD."""

from idard.measure.models.base import MODELS, SRModel, seeded_normal, sha256_file
from idard.measure.models import srflow  # noqa: F401,E402  (registers the srflow family)

__all__ = ["MODELS", "SRModel", "seeded_normal", "sha256_file"]
