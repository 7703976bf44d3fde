"""idard: Image Downscaling Assessment by Rate-Distortion (IDA-RD)."""

__version__ = "0.1.0"
