"""ESRGAN-family (deterministic) SR models: Real-ESRGAN x4plus from packaged ncnn weights."""

from idard.measure.models.esrgan.model import RealESRGAN

__all__ = ["RealESRGAN"]
