"""Stochastic SR models: the decoder of IDA-RD."""

from idard.measure.models.base import MODELS, SRModel, seeded_normal, sha256_file

__all__ = ["MODELS", "SRModel", "seeded_normal", "sha256_file"]
