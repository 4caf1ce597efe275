"""Codecs: anything image <-> latent (frozen TAEF2 VAE, DeepJSCC, ADJSCC, ...)."""

from .base import Codec, crop_to, pad_to_multiple

__all__ = ["Codec", "crop_to", "pad_to_multiple"]
