"""Separation baselines: an image codec (Pillow JPEG/WebP/AVIF) + a channel code.

* :mod:`.source` -- codecs in memory, largest quality fitting a bit budget;
* :mod:`.capacity` -- ideal capacity-achieving channel code (``jpeg+capacity``);
* :mod:`.ldpc` -- Sionna 5G LDPC + QAM over our channels, fixed MCS or best-MCS envelope
  (``jpeg+ldpc``, ``jpeg+ldpc:16qam-3/4``);
* :mod:`.registry` -- registers the schemes (imported by :func:`semcom.schemes.list_schemes`).
"""

from .capacity import CapacityScheme
from .common import DEFAULT_CBR, budget_report
from .ldpc import MCS, MCS_TABLE, LDPCScheme, get_mcs
from .source import available_formats, encode_to_budget

__all__ = [
    "DEFAULT_CBR",
    "MCS",
    "MCS_TABLE",
    "CapacityScheme",
    "LDPCScheme",
    "available_formats",
    "budget_report",
    "encode_to_budget",
    "get_mcs",
]
