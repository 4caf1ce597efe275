"""Fingerprints of network weights, one definition for every place that ties files to weights.

Latent caches, denoiser / SNR-estimator cards, zoo lineage and results (``weights``) all name
the weights they were made with by :func:`codec_fingerprint`, so a file made for one set of
weights is never served for, or credited to, another.
"""

from __future__ import annotations

import hashlib

import torch


def codec_fingerprint(codec: torch.nn.Module) -> str:
    """12 hex digits of the SHA-256 of a network's weights (names, dtypes, shapes, values in
    standard layout; independent of device placement and memory format). A network without
    any is named by its class (``module.QualName``), so two such codecs do not share one."""
    h = hashlib.sha256()
    state = codec.state_dict()
    if not state:
        cls = type(codec)
        h.update(f"class:{cls.__module__}.{cls.__qualname__}".encode())
    for name, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


__all__ = ["codec_fingerprint"]
