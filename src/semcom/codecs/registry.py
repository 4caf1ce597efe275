"""Registers the codec-based schemes (importing this module fills the scheme registry)."""

from __future__ import annotations

import torch

from ..link import AnalogLink
from ..schemes import SchemeSpec, register_scheme


def _vae(cbr: float | None, device: torch.device) -> AnalogLink:
    from .taef2 import load_taef2

    if cbr is not None and abs(cbr - 1 / 12) > 1e-3:
        raise ValueError(f"scheme 'vae' has a fixed CBR of 1/12 (got --cbr {cbr:.4g})")
    return AnalogLink(load_taef2(device))


register_scheme(
    SchemeSpec(
        name="vae",
        description="frozen pretrained TAEF2 autoencoder (paper A transmitter), LMMSE receiver",
        factory=_vae,
        cbrs=(1 / 12,),
        requires="taef2/taef2_{encoder,decoder}.pth under SEMCOM_WEIGHTS",
    )
)
